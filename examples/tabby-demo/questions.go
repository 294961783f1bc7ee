//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tabbynet/tabby/examples/internal/nettools"
	"github.com/tabbynet/tabby/explain"
	"github.com/tabbynet/tabby/node"
	"github.com/tabbynet/tabby/veth"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func netipAddrPort(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }

// q is one question being checked.
type q struct {
	c    *cluster
	fail []string
}

func (x *q) say(f string, a ...any) { fmt.Fprintf(x.c.out, "  "+f+"\n", a...) }

func (x *q) check(ok bool, f string, a ...any) {
	if !ok {
		msg := fmt.Sprintf(f, a...)
		x.fail = append(x.fail, msg)
		fmt.Fprintf(x.c.out, "  !! %s\n", msg)
	}
}

func (c *cluster) questions(ctx context.Context) bool {
	all := true
	for _, s := range []struct {
		id, title string
		f         func(*q)
	}{
		{"Q1", "where does a pod IP come from?", c.q1},
		{"Q3", "which devices does a node have?", c.q3},
		{"Q4", "how are the pod's and the host's interfaces paired?", c.q4},
		{"Q5", "who answers for 169.254.1.1?", c.q5},
		{"Q6", "two pods on the same node", c.q6},
		{"Q7", "two pods on different nodes", c.q7},
		{"Q8", "a pod reaching the internet", c.q8},
	} {
		if ctx.Err() != nil {
			return false
		}
		fmt.Fprintf(c.out, "\n== %s %s\n", s.id, s.title)
		x := &q{c: c}
		s.f(x)
		if len(x.fail) == 0 {
			fmt.Fprintf(c.out, "PASS %s\n", s.id)
		} else {
			all = false
			fmt.Fprintf(c.out, "FAIL %s: %s\n", s.id, strings.Join(x.fail, "; "))
		}
	}
	return all
}

// explain prints the library's walk-through (package explain, the code
// behind tabbyctl explain) of p's path to dest, one PASS/FAIL line per
// kernel object, and fails the question if a step fails.
func (x *q) explain(p *pod, dest netip.Addr) {
	n := x.c.host(p.spec.node)
	rules, _ := n.agent.NATRules(context.Background())
	r := explain.Pod(context.Background(), explain.Input{
		Host: n.ns.NL, Pod: p.ns.NL, PodAddr: p.ip, Dest: dest,
		Pools: []netip.Prefix{clusterCIDR}, NATRules: rules,
		ProxyARPSysctl: sysctlAt(n.ns.Path).Sysctl, ProbeARP: explain.ProbeARP(p.ns.Path, "eth0"),
	})
	x.say("explain %s (%v) -> %v on %s:", p.spec.name, p.ip, dest, p.spec.node)
	var b strings.Builder
	r.WriteText(&b)
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		x.say("  %s", l)
	}
	for _, f := range r.Failed() {
		x.check(false, "explain %s -> %v: %s: %s", p.spec.name, dest, f.Step, f.Detail)
	}
}

func hostIf(p *pod) string {
	return veth.HostIfName(veth.DefaultPrefix, veth.WorkloadKey("default", p.spec.name))
}

func (c *cluster) q1(x *q) {
	pools, err := c.nodes[0].agent.IPAM().ListPools(context.Background())
	x.check(err == nil, "list pools: %v", err)
	for _, p := range pools {
		x.say("pool %s %v, blocks /%d, vxlanMode %s, natOutgoing %v", p.Name, p.CIDR, p.BlockSize, p.VXLANMode, p.NATOutgoing)
		x.check(p.CIDR == clusterCIDR, "pool %v is not the cluster CIDR %v", p.CIDR, clusterCIDR)
	}
	for _, n := range c.nodes {
		s := n.agent.Stats()
		x.say("%-8s affine block(s) %v, tunnel address %v", n.spec.name, s.Blocks, s.TunnelAddr)
		x.check(len(s.Blocks) > 0 && s.Blocks[0].Contains(s.TunnelAddr), "%s: tunnel address %v not in its block %v", n.spec.name, s.TunnelAddr, s.Blocks)
		x.check(len(s.Blocks) > 0 && s.Blocks[0].Addr() == s.TunnelAddr, "%s: tunnel address %v is not the block's first address", n.spec.name, s.TunnelAddr)
	}
	for _, p := range c.pods {
		s := c.host(p.spec.node).agent.Stats()
		in := slices.ContainsFunc(s.Blocks, func(b netip.Prefix) bool { return b.Contains(p.ip) })
		x.say("%s on %s: %v/32 (cluster CIDR: %v, in %s's block: %v)", p.spec.name, p.spec.node, p.ip, clusterCIDR.Contains(p.ip), p.spec.node, in)
		x.check(clusterCIDR.Contains(p.ip), "%s: %v outside %v", p.spec.name, p.ip, clusterCIDR)
		x.check(in, "%s: %v not in %s's blocks %v", p.spec.name, p.ip, p.spec.node, s.Blocks)
	}
}

func (c *cluster) q3(x *q) {
	for _, n := range c.nodes {
		s := n.agent.Stats()
		l, err := n.ns.NL.LinkByName("vxlan.calico")
		if err != nil {
			x.check(false, "%s: no vxlan.calico: %v", n.spec.name, err)
			continue
		}
		v, ok := l.(*netlink.Vxlan)
		if !ok {
			x.check(false, "%s: vxlan.calico is a %s", n.spec.name, l.Type())
			continue
		}
		parent := ""
		if pl, err := n.ns.NL.LinkByIndex(v.VtepDevIndex); err == nil {
			parent = pl.Attrs().Name
		}
		addrs, _ := n.ns.NL.AddrList(l, unix.AF_INET)
		var as []string
		for _, a := range addrs {
			as = append(as, a.IPNet.String())
		}
		learn := "nolearning"
		if v.Learning {
			learn = "learning"
		}
		x.say("%-8s %d: vxlan.calico: mtu %d state %s link/ether %s\n             vxlan id %d local %v dev %s dstport %d %s\n             inet %s", n.spec.name,
			v.Index, v.MTU, v.OperState, v.HardwareAddr, v.VxlanId, v.SrcAddr, parent, v.Port, learn, strings.Join(as, " "))
		x.check(v.VxlanId == 4096, "%s: VNI %d", n.spec.name, v.VxlanId)
		x.check(v.Port == 4789, "%s: port %d", n.spec.name, v.Port)
		x.check(v.MTU == 1450, "%s: MTU %d", n.spec.name, v.MTU)
		x.check(!v.Learning, "%s: learning on", n.spec.name)
		x.check(parent == "eth0" && v.SrcAddr.Equal(net.IP(n.spec.ip.Addr().AsSlice())), "%s: local %v dev %s", n.spec.name, v.SrcAddr, parent)
		x.check(slices.Equal(as, []string{netip.PrefixFrom(s.TunnelAddr, 32).String()}), "%s: addresses %v, want the tunnel address %v/32", n.spec.name, as, s.TunnelAddr)
	}
	for _, p := range c.pods {
		n := c.host(p.spec.node)
		l, err := n.ns.NL.LinkByName(hostIf(p))
		if err != nil {
			x.check(false, "%s: host interface %s: %v", p.spec.name, hostIf(p), err)
			continue
		}
		a := l.Attrs()
		x.say("%-8s %d: %s@if%d: mtu %d link/ether %s (veth of %s)", n.spec.name, a.Index, a.Name, a.ParentIndex, a.MTU, a.HardwareAddr, p.spec.name)
		x.check(a.HardwareAddr.String() == "ee:ee:ee:ee:ee:ee", "%s: MAC %s", a.Name, a.HardwareAddr)
		x.check(a.MTU == 1450, "%s: MTU %d", a.Name, a.MTU)
		x.check(len(a.Name) == 15, "%s: name is not cali + 11 hex", a.Name)
	}
}

func (c *cluster) q4(x *q) {
	for _, p := range c.pods {
		n := c.host(p.spec.node)
		hl, err1 := n.ns.NL.LinkByName(hostIf(p))
		pl, err2 := p.ns.NL.LinkByName("eth0")
		if err1 != nil || err2 != nil {
			x.check(false, "%s: links: %v %v", p.spec.name, err1, err2)
			continue
		}
		h, e := hl.Attrs(), pl.Attrs()
		x.say("%s: eth0@if%d (index %d)  <->  %s: %d: %s@if%d   peer_ifindex %d / %d", p.spec.name, e.ParentIndex, e.Index, p.spec.node, h.Index, h.Name, h.ParentIndex, e.ParentIndex, h.ParentIndex)
		x.check(e.ParentIndex == h.Index && h.ParentIndex == e.Index, "%s: indexes do not point at each other", p.spec.name)
		x.check(pl.Type() == "veth" && hl.Type() == "veth", "%s: not a veth pair", p.spec.name)
	}
}

func (c *cluster) q5(x *q) {
	p := c.pod("pod-a")
	n := c.host(p.spec.node)
	routes, _ := p.ns.NL.RouteList(nil, unix.AF_INET)
	for _, r := range routes {
		x.say("%s route: %s", p.spec.name, fmtRoute(p.ns.NL, r))
	}
	before := n.agent.Stats().ARP.Replies
	// Any packet out of the pod needs 169.254.1.1's MAC first.
	from, err := nettools.Ping(p.ns.Path, n.spec.ip.Addr(), 3*time.Second)
	x.check(err == nil, "ping %s's node address from %s: %v", p.spec.node, p.spec.name, err)
	if err == nil {
		x.say("%s pinged its node %v: reply from %v", p.spec.name, n.spec.ip.Addr(), from)
	}
	var gwMAC string
	neighs, _ := p.ns.NL.NeighList(0, unix.AF_INET)
	for _, ne := range neighs {
		if ne.IP.Equal(net.IPv4(169, 254, 1, 1)) {
			gwMAC = ne.HardwareAddr.String()
			x.say("%s neighbour: 169.254.1.1 dev eth0 lladdr %s %s", p.spec.name, ne.HardwareAddr, neighState(ne.State))
		}
	}
	x.check(gwMAC == "ee:ee:ee:ee:ee:ee", "169.254.1.1 resolved to %q, want ee:ee:ee:ee:ee:ee", gwMAC)
	pa, _ := (sysctlAt(n.ns.Path)).Sysctl("net/ipv4/conf/" + hostIf(p) + "/proxy_arp")
	if c.opt.proxyARP == "kernel" {
		pd, _ := (sysctlAt(n.ns.Path)).Sysctl("net/ipv4/neigh/" + hostIf(p) + "/proxy_delay")
		x.say("%s: kernel proxy ARP (Calico's way): %s proxy_arp=%s proxy_delay=%s", p.spec.node, hostIf(p), pa, pd)
		x.check(pa == "1" && pd == "0", "kernel mode: proxy_arp=%s proxy_delay=%s on %s", pa, pd, hostIf(p))
		return
	}
	// The responder counts a reply just after sending it.
	st := n.agent.Stats().ARP
	for end := time.Now().Add(2 * time.Second); st.Replies <= before && time.Now().Before(end); st = n.agent.Stats().ARP {
		time.Sleep(10 * time.Millisecond)
	}
	x.say("%s: userspace proxy-ARP responder on %d cali interfaces: %d requests, %d replies (kernel proxy_arp on %s = %s)", p.spec.node, st.Interfaces, st.Requests, st.Replies, hostIf(p), pa)
	x.check(st.Replies > before, "the responder sent no reply")
	x.check(pa == "0", "kernel proxy_arp is %q: the answer should come from user space", pa)
}

func (c *cluster) q6(x *q) {
	a, b := c.pod("pod-a"), c.pod("pod-b")
	n := c.host(a.spec.node)
	from, err := nettools.Ping(a.ns.Path, b.ip, 3*time.Second)
	x.check(err == nil && from == b.ip, "ping %v from %s: %v (reply from %v)", b.ip, a.spec.name, err, from)
	if err == nil {
		x.say("%s (%v) -> %s (%v): reply from %v", a.spec.name, a.ip, b.spec.name, b.ip, from)
	}
	found := false
	routes, _ := n.ns.NL.RouteList(nil, unix.AF_INET)
	for _, r := range routes {
		if r.Dst != nil && (r.Dst.IP.Equal(a.ip.AsSlice()) || r.Dst.IP.Equal(b.ip.AsSlice())) {
			x.say("%s route: %s", n.spec.name, fmtRoute(n.ns.NL, r))
			if r.Dst.IP.Equal(b.ip.AsSlice()) {
				l, _ := n.ns.NL.LinkByIndex(r.LinkIndex)
				found = l != nil && l.Attrs().Name == hostIf(b) && r.Scope == netlink.SCOPE_LINK
			}
		}
	}
	x.check(found, "no route %v dev %s scope link on %s", b.ip, hostIf(b), n.spec.name)
	x.explain(a, b.ip)
	_, err = n.ns.NL.LinkByName("docker0")
	x.say("no bridge involved: the host routes (bridges on %s: %v)", n.spec.name, bridges(n.ns.NL))
}

func bridges(h *netlink.Handle) []string {
	ls, _ := h.LinkList()
	var out []string
	for _, l := range ls {
		if l.Type() == "bridge" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

func (c *cluster) q7(x *q) {
	a, b := c.pod("pod-a"), c.pod("pod-c")
	n1, n2 := c.host(a.spec.node), c.host(b.spec.node)
	vx, err := n1.ns.NL.LinkByName("vxlan.calico")
	if err != nil {
		x.check(false, "%s: vxlan.calico: %v", n1.spec.name, err)
		return
	}
	routes, _ := n1.ns.NL.RouteList(nil, unix.AF_INET)
	for _, r := range routes {
		if r.Protocol == 80 && (r.Gw != nil || r.Type == unix.RTN_BLACKHOLE) {
			x.say("%s route: %s", n1.spec.name, fmtRoute(n1.ns.NL, r))
		}
	}
	neighs, _ := n1.ns.NL.NeighList(vx.Attrs().Index, unix.AF_INET)
	for _, ne := range neighs {
		x.say("%s neigh: %v dev vxlan.calico lladdr %s %s", n1.spec.name, ne.IP, ne.HardwareAddr, neighState(ne.State))
	}
	fdb, _ := n1.ns.NL.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	for _, f := range fdb {
		if f.IP != nil {
			x.say("%s fdb: %s dev vxlan.calico dst %v self %s", n1.spec.name, f.HardwareAddr, f.IP, neighState(f.State))
		}
	}
	s2 := n2.agent.Stats()
	var viaTunnel bool
	for _, r := range routes {
		if r.Dst != nil && len(s2.Blocks) > 0 && r.Dst.String() == s2.Blocks[0].String() {
			viaTunnel = r.LinkIndex == vx.Attrs().Index && r.Gw.Equal(net.IP(s2.TunnelAddr.AsSlice())) && r.Flags&int(netlink.FLAG_ONLINK) != 0
		}
	}
	x.check(viaTunnel, "%s: no route %v via %v dev vxlan.calico onlink", n1.spec.name, s2.Blocks, s2.TunnelAddr)
	x.check(len(neighs) > 0 && len(fdb) > 0, "%s: no permanent neighbour or FDB entry on vxlan.calico", n1.spec.name)
	x.explain(a, b.ip)

	up, _ := n1.ns.NL.LinkByName("eth0")
	capt, err := nettools.StartCapture(n1.ns.Path, up.Attrs().Index)
	if err != nil {
		x.check(false, "capture: %v", err)
		return
	}
	from, perr := nettools.Ping(a.ns.Path, b.ip, 3*time.Second)
	time.Sleep(50 * time.Millisecond)
	frames, _ := capt.Stop()
	x.check(perr == nil && from == b.ip, "ping %v from %s: %v", b.ip, a.spec.name, perr)
	if perr == nil {
		x.say("%s (%v, %s) -> %s (%v, %s): reply from %v", a.spec.name, a.ip, n1.spec.name, b.spec.name, b.ip, n2.spec.name, from)
	}
	var seen bool
	for _, f := range frames {
		if f.VXLAN && f.InnerSrc == a.ip && f.InnerDst == b.ip {
			x.say("captured on %s eth0: %s", n1.spec.name, f)
			seen = f.VNI == 4096 && f.DstPort == 4789 && f.Src == n1.spec.ip.Addr() && f.Dst == n2.spec.ip.Addr()
			break
		}
	}
	x.check(seen, "no VXLAN packet %v:* > %v:4789 vni 4096 [%v > %v] on %s's underlay (%d frames)", n1.spec.ip.Addr(), n2.spec.ip.Addr(), a.ip, b.ip, n1.spec.name, len(frames))

	if c.opt.mode != node.VXLANCrossSubnet {
		return
	}
	// CrossSubnet: the master is on worker1's subnet, so it is routed
	// directly, without encapsulation.
	m := c.host("master")
	sm := m.agent.Stats()
	var direct bool
	for _, r := range routes {
		if r.Dst != nil && len(sm.Blocks) > 0 && r.Dst.String() == sm.Blocks[0].String() {
			direct = r.LinkIndex == up.Attrs().Index && r.Gw.Equal(net.IP(m.spec.ip.Addr().AsSlice()))
		}
	}
	x.check(direct, "CrossSubnet: no direct route %v via %v dev eth0", sm.Blocks, m.spec.ip.Addr())
	capt, err = nettools.StartCapture(n1.ns.Path, up.Attrs().Index)
	if err != nil {
		x.check(false, "capture: %v", err)
		return
	}
	from, perr = nettools.Ping(a.ns.Path, sm.TunnelAddr, 3*time.Second)
	time.Sleep(50 * time.Millisecond)
	frames, _ = capt.Stop()
	x.check(perr == nil, "ping master's tunnel address %v from %s: %v", sm.TunnelAddr, a.spec.name, perr)
	var plain bool
	for _, f := range frames {
		if !f.VXLAN && f.Src == a.ip && f.Dst == sm.TunnelAddr && f.Proto == 1 {
			x.say("CrossSubnet: %s -> master %v (same subnet) captured on %s eth0 without encapsulation: %s", a.spec.name, sm.TunnelAddr, n1.spec.name, f)
			plain = true
			break
		}
	}
	x.check(plain, "CrossSubnet: no plain ICMP %v > %v on the underlay", a.ip, sm.TunnelAddr)
}

func (c *cluster) q8(x *q) {
	p := c.pod("pod-a")
	n := c.host(p.spec.node)
	seen, err := nettools.AskEcho(p.ns.Path, netipAddrPort(internetIP, echoPort), 3*time.Second)
	x.check(err == nil, "UDP from %s to %v: %v", p.spec.name, internetIP, err)
	if err == nil {
		x.say("%s (%v) -> internet host %v:%d: the host saw the source %v", p.spec.name, p.ip, internetIP, echoPort, seen)
	}
	x.check(seen == n.spec.ip.Addr(), "the internet host saw %v, want %s's address %v", seen, p.spec.node, n.spec.ip.Addr())
	from, err := nettools.Ping(p.ns.Path, internetIP, 3*time.Second)
	x.check(err == nil, "ping %v from %s: %v", internetIP, p.spec.name, err)
	if err == nil {
		x.say("%s ping %v: reply from %v", p.spec.name, internetIP, from)
	}
	rules, err := n.agent.NATRules(context.Background())
	x.check(err == nil, "nft: %v", err)
	for _, l := range strings.Split(rules, "\n") {
		if strings.Contains(l, "masquerade") || strings.Contains(l, "nat_pools") && strings.Contains(l, "elements") {
			x.say("%s nft: %s", n.spec.name, strings.TrimSpace(l))
		}
	}
	rr, _ := c.router.NL.RouteList(nil, unix.AF_INET)
	var toPods bool
	for _, r := range rr {
		if r.Dst != nil && clusterCIDR.Overlaps(netip.MustParsePrefix(r.Dst.String())) {
			toPods = true
		}
	}
	x.say("router routes to the pod pool: %v (the reply can only come back because of the masquerade)", toPods)
	x.check(!toPods, "the router has a route to the pod pool")
	x.explain(p, internetIP)
}

func neighState(s int) string {
	var out []string
	for _, x := range []struct {
		bit  int
		name string
	}{{netlink.NUD_PERMANENT, "PERMANENT"}, {netlink.NUD_REACHABLE, "REACHABLE"}, {netlink.NUD_STALE, "STALE"}, {netlink.NUD_DELAY, "DELAY"}, {netlink.NUD_PROBE, "PROBE"}, {netlink.NUD_NOARP, "NOARP"}} {
		if s&x.bit != 0 {
			out = append(out, x.name)
		}
	}
	return strings.Join(out, ",")
}

// fmtRoute prints a route like `ip route`.
func fmtRoute(h *netlink.Handle, r netlink.Route) string {
	var b strings.Builder
	switch {
	case r.Type == unix.RTN_BLACKHOLE:
		b.WriteString("blackhole ")
		b.WriteString(r.Dst.String())
	case r.Dst == nil || r.Dst.IP.IsUnspecified():
		b.WriteString("default")
	default:
		if ones, _ := r.Dst.Mask.Size(); ones == 32 {
			b.WriteString(r.Dst.IP.String())
		} else {
			b.WriteString(r.Dst.String())
		}
	}
	if r.Gw != nil {
		fmt.Fprintf(&b, " via %v", r.Gw)
	}
	if r.LinkIndex > 0 {
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
			fmt.Fprintf(&b, " dev %s", l.Attrs().Name)
		}
	}
	if r.Protocol == 80 {
		b.WriteString(" proto 80")
	}
	if r.Scope == netlink.SCOPE_LINK {
		b.WriteString(" scope link")
	}
	if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
		b.WriteString(" onlink")
	}
	return b.String()
}
