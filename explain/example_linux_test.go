//go:build linux

package explain_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/explain"
	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/node"
	"github.com/tabbynet/tabby/node/nodetest"
	"github.com/tabbynet/tabby/veth"
	"github.com/vishvananda/netlink"
)

// One pod on a node of the fake kernel, explained. Without ProbeARP and
// before the pod sent anything, 169.254.1.1 is not resolved yet: that step
// fails and says so (give ProbeARP, or look again after traffic).
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := netlinktest.New()
	k, _ := m.NewNamespace("/worker1")
	k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}})
	eth0, _ := k.LinkByName("eth0")
	k.LinkSetUp(eth0)
	k.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 4, 7, 61), Mask: net.CIDRMask(24, 32)}})
	store := memory.New(nil)
	defer store.Close()
	n, _ := node.New(node.Config{Name: "worker1", NodeIP: netip.MustParsePrefix("10.4.7.61/24"), Uplink: "eth0",
		Store: store, Kernel: nodetest.NewKernel(k).Kernel})
	go n.Run(ctx)
	<-n.Started()
	pod, _ := m.NewNamespace("/pod-a")
	res, _ := n.AddPod(ctx, node.Pod{Key: veth.WorkloadKey("default", "pod-a"), NetNS: "/pod-a"})

	r := explain.Pod(ctx, explain.Input{Host: k, Pod: pod, PodAddr: res.Addrs[0]})
	for _, c := range r.Checks {
		fmt.Println(c.Pass, c.Step)
	}
	// Output:
	// true host route to pod
	// true host veth
	// true veth peer index
	// true pod address
	// true pod default route
	// true pod gateway route
	// false 169.254.1.1 answer
}
