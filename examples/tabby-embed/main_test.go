//go:build linux

package main

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/node"
	"github.com/tabbynet/tabby/node/nodetest"
	"github.com/vishvananda/netlink"
)

// What an embedder's unit test of a three-node cluster looks like: no root,
// the fake kernel, one memory store. Each node routes the others' blocks
// through vxlan.calico.
func TestThreeNodesWithoutRoot(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	machine, store := netlinktest.New(), memory.New(nil)
	defer store.Close()
	var nodes []*node.Node
	var kernels []*netlinktest.Kernel
	for i, name := range []string{"master", "worker1", "worker2"} {
		k, _ := machine.NewNamespace("/" + name)
		k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}})
		eth0, _ := k.LinkByName("eth0")
		k.LinkSetUp(eth0)
		k.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 4, 7, byte(60+i)), Mask: net.CIDRMask(24, 32)}})
		n, err := node.New(node.Config{Name: name, NodeIP: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 4, 7, byte(60 + i)}), 24),
			Uplink: "eth0", Store: store, Kernel: nodetest.NewKernel(k).Kernel})
		if err != nil {
			t.Fatal(err)
		}
		go n.Run(ctx)
		<-n.Started()
		nodes, kernels = append(nodes, n), append(kernels, k)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		routed := 0
		for _, k := range kernels {
			vx, _ := k.LinkByName("vxlan.calico")
			rs, _ := k.RouteList(vx, netlinktest.FamilyV4)
			for _, r := range rs {
				if r.Gw != nil {
					routed++
				}
			}
		}
		if routed == 6 { // every node routes the two other blocks
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%d of 6 block routes:\n%s", routed, machine.Dump())
		}
	}
}

// The embedding uses only tabby's public packages: an outside module can
// write it.
func TestOnlyPublicPackages(t *testing.T) {
	direct, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}{{"\n"}}{{join .TestImports "\n"}}`, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, direct)
	}
	for _, p := range strings.Fields(string(direct)) {
		if strings.Contains(p, "/internal/") {
			t.Errorf("the embedding imports %s, which an outside module cannot", p)
		}
	}
}
