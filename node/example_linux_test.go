//go:build linux

package node_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/node"
	"github.com/tabbynet/tabby/node/nodetest"
	"github.com/tabbynet/tabby/veth"
	"github.com/vishvananda/netlink"
)

// A node on the fake kernel: no root needed. On a real node replace
// nodetest.NewKernel(...) with node.OpenKernel("", "").
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	machine := netlinktest.New()
	k, _ := machine.NewNamespace("/worker1")
	k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}})
	eth0, _ := k.LinkByName("eth0")
	k.LinkSetUp(eth0)
	k.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 4, 7, 61), Mask: net.CIDRMask(24, 32)}})
	store := memory.New(nil)
	defer store.Close()

	n, err := node.New(node.Config{
		Name: "worker1", NodeIP: netip.MustParsePrefix("10.4.7.61/24"), Uplink: "eth0",
		Store: store, Kernel: nodetest.NewKernel(k).Kernel, NATOutgoing: true,
	})
	if err != nil {
		panic(err)
	}
	go n.Run(ctx)
	<-n.Started()

	machine.NewNamespace("/pod-a")
	res, err := n.AddPod(ctx, node.Pod{Key: veth.WorkloadKey("default", "pod-a"), NetNS: "/pod-a"})
	if err != nil {
		panic(err)
	}
	s := n.Stats()
	block := s.Blocks[0] // a random free /26 of 10.244.0.0/16
	fmt.Println("block /", block.Bits(), "tunnel is its first address:", s.TunnelAddr == block.Addr())
	fmt.Println("pod-a in the block:", block.Contains(res.Addrs[0]), "host side:", res.HostIfName)
	// Output:
	// block / 26 tunnel is its first address: true
	// pod-a in the block: true host side: cali5e1c4d6c68c
}
