//go:build linux

package node_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/node"
	"github.com/tabbynet/tabby/node/nodetest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The seed's cluster in dual stack on the fake: every pod gets an IPv4 and
// an IPv6 address from its node's blocks, every node runs vxlan.calico and
// vxlan-v6.calico, and each family has its routes, neighbours, FDB entries
// and nat table.
func TestDualStackClusterOnFake(t *testing.T) {
	c := newFakeClusterFamilies(t, 500*time.Millisecond, true)
	for _, s := range seedNodes {
		c.start(s.name, nil)
	}
	eventually(t, "peers", c.converged)
	podA, podC := c.addPod("pod-a", "worker1"), c.addPod("pod-c", "worker2")
	w1, w2 := c.nodes["worker1"], c.nodes["worker2"]

	for _, p := range []*fakePod{podA, podC} {
		b := c.nodes[p.node].n.Stats().Blocks
		if len(p.res.Addrs) != 2 || !p.res.Addrs[0].Is4() || !p.res.Addrs[1].Is6() {
			t.Fatalf("%s: addresses %v, want one per family", p.name, p.res.Addrs)
		}
		for _, a := range p.res.Addrs {
			if !slices.ContainsFunc(b, func(x netip.Prefix) bool { return x.Contains(a) }) {
				t.Errorf("%s: %v not in %s's blocks %v", p.name, a, p.node, b)
			}
		}
		routes, _ := p.ns.RouteList(nil, unix.AF_INET6)
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
			return r.Gw.Equal(net.ParseIP("fe80::ecee:eeff:feee:eeee")) && (r.Dst == nil || r.Dst.String() == "::/0")
		}) {
			t.Errorf("%s: no IPv6 default via fe80::ecee:eeff:feee:eeee: %v", p.name, routes)
		}
	}
	for _, n := range c.nodes {
		s := n.n.Stats()
		l, err := n.k.Netlink.LinkByName("vxlan-v6.calico")
		if err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		v := l.(*netlink.Vxlan)
		if v.VxlanId != 4096 || !v.SrcAddr.Equal(c.v6[n.name].Addr().AsSlice()) || v.MTU != 1430 {
			t.Errorf("%s: vxlan-v6.calico id %d local %v mtu %d", n.name, v.VxlanId, v.SrcAddr, v.MTU)
		}
		var blk6 netip.Prefix
		for _, b := range s.Blocks {
			if b.Addr().Is6() {
				blk6 = b
			}
		}
		if !s.TunnelAddr6.IsValid() || blk6.Addr() != s.TunnelAddr6 || blk6.Bits() != 122 {
			t.Errorf("%s: IPv6 tunnel %v, block %v", n.name, s.TunnelAddr6, blk6)
		}
		if _, err := n.k.Netlink.LinkByName("vxlan.calico"); err != nil {
			t.Errorf("%s: no vxlan.calico in dual stack: %v", n.name, err)
		}
		if fw, _ := n.k.Netlink.Sysctl("net/ipv6/conf/all/forwarding"); fw != "1" {
			t.Errorf("%s: IPv6 forwarding %q", n.name, fw)
		}
	}
	s2 := w2.n.Stats()
	vx6, _ := w1.k.Netlink.LinkByName("vxlan-v6.calico")
	eventually(t, "IPv6 route, neighbour and FDB to worker2", func() error {
		routes, _ := w1.k.Netlink.RouteList(vx6, unix.AF_INET6)
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
			return r.Gw.Equal(s2.TunnelAddr6.AsSlice()) && r.Dst != nil && r.Dst.Contains(podC.res.Addrs[1].AsSlice())
		}) {
			return fmt.Errorf("no route to %v via %v dev vxlan-v6.calico: %v", podC.res.Addrs[1], s2.TunnelAddr6, routes)
		}
		neighs, _ := w1.k.Netlink.NeighList(vx6.Attrs().Index, unix.AF_INET6)
		if !slices.ContainsFunc(neighs, func(n netlink.Neigh) bool {
			return n.IP.Equal(s2.TunnelAddr6.AsSlice()) && n.HardwareAddr.String() == s2.TunnelMAC6.String()
		}) {
			return fmt.Errorf("no neighbour %v lladdr %v", s2.TunnelAddr6, s2.TunnelMAC6)
		}
		fdb, _ := w1.k.Netlink.NeighList(vx6.Attrs().Index, unix.AF_BRIDGE)
		if !slices.ContainsFunc(fdb, func(n netlink.Neigh) bool {
			return n.HardwareAddr.String() == s2.TunnelMAC6.String() && n.IP.Equal(c.v6["worker2"].Addr().AsSlice())
		}) {
			return fmt.Errorf("no FDB %v dst %v: %v", s2.TunnelMAC6, c.v6["worker2"].Addr(), fdb)
		}
		return nil
	})
	if s2.TunnelMAC6.String() == s2.TunnelMAC.String() {
		t.Errorf("the two VTEPs share MAC %v", s2.TunnelMAC)
	}
	eventually(t, "ip6 nat table", func() error {
		rules, err := w1.n.NATRules(context.Background())
		if err != nil {
			return err
		}
		for _, want := range []string{"table ip6 tabby", pool6.String(), podA.res.Addrs[1].String(), c.v6["worker2"].Addr().String(), "table ip tabby"} {
			if !strings.Contains(rules, want) {
				return fmt.Errorf("no %q in\n%s", want, rules)
			}
		}
		return nil
	})
}

// IPv6-only: no IPv4 device, no IPv4 table; and the combinations that
// cannot work are refused before anything is written.
func TestIPv6OnlyAndBadCombinations(t *testing.T) {
	m := netlinktest.New()
	k, _ := m.NewNamespace("/n")
	k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}})
	eth0, _ := k.LinkByName("eth0")
	k.LinkSetUp(eth0)
	k.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("2001:db8:4:7::61"), Mask: net.CIDRMask(64, 128)}})
	st := memory.New(nil)
	defer st.Close()
	fk := nodetest.NewKernel(k)
	setup := m.Writes()
	good := node.Config{Name: "worker1", NodeIPv6: netip.MustParsePrefix("2001:db8:4:7::61/64"), Uplink: "eth0",
		Pools: []netip.Prefix{pool6}, Store: st, Kernel: fk.Kernel}
	for name, mut := range map[string]func(*node.Config){
		"no address":         func(c *node.Config) { c.NodeIPv6 = netip.Prefix{} },
		"v4 pool, no NodeIP": func(c *node.Config) { c.Pools = append(c.Pools, node.DefaultPool()) },
		"v6 pool, no NodeIPv6": func(c *node.Config) {
			c.NodeIP, c.NodeIPv6 = netip.MustParsePrefix("10.4.7.61/24"), netip.Prefix{}
		},
		"v6-only default pool": func(c *node.Config) { c.Pools = nil },
		"link-local node IPv6": func(c *node.Config) { c.NodeIPv6 = netip.MustParsePrefix("fe80::1/64") },
		"Never with IPv6":      func(c *node.Config) { c.VXLANMode = node.VXLANNever },
		"v6 block size":        func(c *node.Config) { c.BlockSize6 = 64 },
	} {
		cfg := good
		mut(&cfg)
		if _, err := node.New(cfg); err == nil || !strings.Contains(err.Error(), "invalid config") {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
	if w := m.Writes(); w != setup {
		t.Errorf("refused configs wrote to the kernel: %d writes", w)
	}
	n, err := node.New(good)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-n.Started():
	case err := <-done:
		t.Fatal(err)
	}
	if _, err := k.LinkByName("vxlan.calico"); err == nil {
		t.Error("IPv6-only node made vxlan.calico")
	}
	if _, err := k.LinkByName("vxlan-v6.calico"); err != nil {
		t.Errorf("no vxlan-v6.calico: %v", err)
	}
	s := n.Stats()
	if s.TunnelAddr.IsValid() || !s.TunnelAddr6.IsValid() {
		t.Errorf("tunnel addresses %v %v", s.TunnelAddr, s.TunnelAddr6)
	}
	rules, _ := n.NATRules(ctx)
	if strings.Contains(rules, "table ip tabby") || !strings.Contains(rules, "table ip6 tabby") {
		t.Errorf("IPv6-only nat:\n%s", rules)
	}
}
