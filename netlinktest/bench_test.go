//go:build linux

package netlinktest_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/netlinktest"
)

// BenchmarkPodPlumbing is one pod's plumbing and teardown on the fake: a
// veth pair into a pod namespace, addresses, routes, sysctl, delete.
func BenchmarkPodPlumbing(b *testing.B) {
	host := netlinktest.New()
	pod, _ := host.NewNamespace("/var/run/netns/bench")
	b.ReportAllocs()
	for b.Loop() {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "calibench", MTU: 1450}, PeerName: "eth0", PeerNamespace: netlink.NsFd(pod.Fd())}
		if err := host.LinkAdd(v); err != nil {
			b.Fatal(err)
		}
		eth0, _ := pod.LinkByName("eth0")
		_ = pod.LinkSetUp(eth0)
		_ = pod.AddrAdd(eth0, addr("10.244.1.5/32"))
		_ = pod.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: ipnet("169.254.1.1/32"), Scope: netlink.SCOPE_LINK})
		_ = pod.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.IPv4(169, 254, 1, 1)})
		_ = host.LinkSetUp(v)
		_ = host.RouteAdd(&netlink.Route{LinkIndex: v.Index, Dst: ipnet("10.244.1.5/32"), Scope: netlink.SCOPE_LINK, Protocol: 80})
		_ = host.SetSysctl("net/ipv4/conf/calibench/forwarding", "1")
		if err := host.LinkDel(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRouteReplace is an idempotent RouteReplace of a gateway route
// among n routes (what a reconciler's Sync does per peer).
func BenchmarkRouteReplace(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			k := netlinktest.New()
			_ = k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ens33"}, PeerName: "peer"})
			l, _ := k.LinkByName("ens33")
			_ = k.LinkSetUp(l)
			_ = k.AddrAdd(l, addr("10.4.0.1/16"))
			for i := range n {
				_ = k.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipnet(fmt.Sprintf("10.%d.%d.0/26", 100+i/256, i%256)), Gw: net.IPv4(10, 4, byte(i/256), byte(i%256+1)), Protocol: 80})
			}
			r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipnet("10.100.0.0/26"), Gw: net.IPv4(10, 4, 0, 1), Protocol: 80}
			b.ReportAllocs()
			for b.Loop() {
				if err := k.RouteReplace(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDump renders a node with 100 pods.
func BenchmarkDump(b *testing.B) {
	k := netlinktest.New()
	for i := range 100 {
		pod, _ := k.NewNamespace(fmt.Sprintf("/p%d", i))
		_ = k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("cali%d", i)}, PeerName: "eth0", PeerNamespace: netlink.NsFd(pod.Fd())})
		l, _ := k.LinkByName(fmt.Sprintf("cali%d", i))
		_ = k.LinkSetUp(l)
		_ = k.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipnet(fmt.Sprintf("10.244.0.%d/32", i)), Scope: netlink.SCOPE_LINK})
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = k.Dump()
	}
}
