package explain

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
)

// Netlink is the part of *netlink.Handle explain reads through.
// *netlink.Handle and *netlinktest.Kernel satisfy it.
type Netlink interface {
	LinkByName(name string) (netlink.Link, error)
	LinkByIndex(index int) (netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	NeighList(linkIndex, family int) ([]netlink.Neigh, error)
}

// Check is one step of the walk-through. A plain value.
type Check struct {
	// Step names what is checked ("host veth", "pod route", ...).
	Step string `json:"step"`
	Pass bool   `json:"pass"`
	// Object is the kernel object behind it, as `ip` would print it.
	Object string `json:"object,omitempty"`
	// Detail says why it failed, or adds context.
	Detail string `json:"detail,omitempty"`
}

// Report is the walk-through of one pod (and destination). A plain value.
type Report struct {
	Pod    netip.Addr `json:"pod"`
	Dest   netip.Addr `json:"dest,omitzero"`
	Checks []Check    `json:"checks"`
}

// OK reports whether every check passed.
func (r Report) OK() bool {
	for _, c := range r.Checks {
		if !c.Pass {
			return false
		}
	}
	return len(r.Checks) > 0
}

// Failed returns the failed checks.
func (r Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.Pass {
			out = append(out, c)
		}
	}
	return out
}

// WriteText writes one line per check: PASS or FAIL, the step, the object
// and the detail.
func (r Report) WriteText(w io.Writer) error {
	var b bytes.Buffer
	for _, c := range r.Checks {
		v := "PASS"
		if !c.Pass {
			v = "FAIL"
		}
		fmt.Fprintf(&b, "%s %-22s %s", v, c.Step, c.Object)
		if c.Detail != "" {
			fmt.Fprintf(&b, "  (%s)", c.Detail)
		}
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}

// JSON returns the report as indented JSON.
func (r Report) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

// Gateway is the pods' gateway address, answered by proxy ARP.
var gateway = netip.AddrFrom4([4]byte{169, 254, 1, 1})

// Defaults of the checks, Calico's.
const (
	DefaultHostMAC   = "ee:ee:ee:ee:ee:ee"
	DefaultDevice    = "vxlan.calico"
	DefaultPodIfName = "eth0"
	routeProtocol    = 80
)

// Input says what to explain. Host and PodAddr are required.
type Input struct {
	// Host is the node's namespace; Pod the pod's (nil: the pod-side checks
	// are left out).
	Host, Pod Netlink
	// PodAddr is the pod's address; the host interface is found from the
	// host's /32 route to it.
	PodAddr netip.Addr
	// PodIfName is the pod-side interface (default eth0).
	PodIfName string
	// Dest, when valid, adds the path from the pod to it.
	Dest netip.Addr
	// Pools are the pool CIDRs (a destination outside them is masqueraded).
	Pools []netip.Prefix
	// NATRules is the nat table as text (nat.Manager.Dump); empty skips
	// the masquerade check.
	NATRules string
	// ProxyARPSysctl reads the host interface's proxy_arp sysctl
	// ("net/ipv4/conf/<if>/proxy_arp"); nil skips that detail.
	ProxyARPSysctl func(key string) (string, error)
	// ProbeARP, when set, asks for 169.254.1.1's MAC from inside the pod
	// (ProbeARP in this package does it on Linux); nil reads the pod's
	// neighbour table only.
	ProbeARP func(ctx context.Context) (net.HardwareAddr, error)
	// Device is the VXLAN device name (default vxlan.calico).
	Device string
}

// Pod explains in.PodAddr (and the way to in.Dest).
func Pod(ctx context.Context, in Input) Report {
	r := Report{Pod: in.PodAddr, Dest: in.Dest}
	add := func(c Check) { r.Checks = append(r.Checks, c) }
	if in.PodIfName == "" {
		in.PodIfName = DefaultPodIfName
	}
	if in.Device == "" {
		in.Device = DefaultDevice
	}
	fam := family4
	bits := 32
	if in.PodAddr.Is6() {
		fam, bits = family6, 128
	}
	hostRoutes, err := in.Host.RouteListFiltered(fam, &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
	if err != nil {
		add(Check{Step: "host routes", Detail: err.Error()})
		return r
	}
	// Q6: the host's /32 route to the pod names its host interface.
	podRoute, ok := find(hostRoutes, func(rt netlink.Route) bool {
		return rt.Gw == nil && isPrefix(rt.Dst, netip.PrefixFrom(in.PodAddr, bits)) && rt.LinkIndex > 0
	})
	if !ok {
		add(Check{Step: "host route to pod", Detail: fmt.Sprintf("no route %v dev cali… on the host: not a local pod", in.PodAddr)})
		return r
	}
	hl, err := in.Host.LinkByIndex(podRoute.LinkIndex)
	if err != nil {
		add(Check{Step: "host veth", Detail: err.Error()})
		return r
	}
	add(Check{Step: "host route to pod", Object: routeString(in.Host, podRoute),
		Pass:   podRoute.Scope == scopeLink && podRoute.Protocol == routeProtocol,
		Detail: cond(podRoute.Scope != scopeLink, "want scope link") + cond(podRoute.Protocol != routeProtocol, "want proto 80 (veth's)")})
	h := hl.Attrs()
	add(Check{Step: "host veth", Object: fmt.Sprintf("%d: %s@if%d: mtu %d link/ether %s", h.Index, h.Name, h.ParentIndex, h.MTU, h.HardwareAddr),
		Pass:   hl.Type() == "veth" && h.HardwareAddr.String() == DefaultHostMAC,
		Detail: cond(hl.Type() != "veth", "not a veth: "+hl.Type()) + cond(h.HardwareAddr.String() != DefaultHostMAC, "MAC is not "+DefaultHostMAC)})
	if in.ProxyARPSysctl != nil {
		v, err := in.ProxyARPSysctl("net/ipv4/conf/" + h.Name + "/proxy_arp")
		mode := "userspace responder (kernel proxy_arp=0)"
		if v == "1" {
			mode = "kernel proxy_arp=1"
		}
		add(Check{Step: "proxy ARP mode", Pass: err == nil, Object: h.Name + ": " + mode, Detail: errString(err)})
	}
	if in.Pod != nil {
		podChecks(ctx, in, h, fam, bits, add)
	}
	if in.Dest.IsValid() {
		destChecks(in, hostRoutes, fam, bits, add)
	}
	return r
}

func podChecks(ctx context.Context, in Input, h *netlink.LinkAttrs, fam, bits int, add func(Check)) {
	pl, err := in.Pod.LinkByName(in.PodIfName)
	if err != nil {
		add(Check{Step: "pod interface", Detail: fmt.Sprintf("%s: %v", in.PodIfName, err)})
		return
	}
	p := pl.Attrs()
	// Q4: the pair's indexes point at each other.
	add(Check{Step: "veth peer index", Object: fmt.Sprintf("pod %s@if%d (index %d) <-> host %s@if%d (index %d)", p.Name, p.ParentIndex, p.Index, h.Name, h.ParentIndex, h.Index),
		Pass: p.ParentIndex == h.Index && h.ParentIndex == p.Index, Detail: cond(p.ParentIndex != h.Index || h.ParentIndex != p.Index, "the indexes do not point at each other")})
	addrs, _ := in.Pod.AddrList(pl, fam)
	want := netip.PrefixFrom(in.PodAddr, bits)
	var got []string
	has := false
	for _, a := range addrs {
		got = append(got, a.IPNet.String())
		has = has || isPrefix(a.IPNet, want)
	}
	add(Check{Step: "pod address", Object: p.Name + ": " + strings.Join(got, " "), Pass: has, Detail: cond(!has, "no "+want.String())})
	if fam != family4 {
		return
	}
	// Q5: default via 169.254.1.1, and 169.254.1.1 scope link.
	routes, _ := in.Pod.RouteListFiltered(fam, &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
	dflt, ok1 := find(routes, func(r netlink.Route) bool {
		return (r.Dst == nil || isPrefix(r.Dst, netip.MustParsePrefix("0.0.0.0/0"))) && r.Gw.Equal(gateway.AsSlice())
	})
	add(Check{Step: "pod default route", Object: pick(ok1, func() string { return routeString(in.Pod, dflt) }), Pass: ok1, Detail: cond(!ok1, "no default via 169.254.1.1")})
	gwr, ok2 := find(routes, func(r netlink.Route) bool {
		return isPrefix(r.Dst, netip.PrefixFrom(gateway, 32)) && r.Scope == scopeLink
	})
	add(Check{Step: "pod gateway route", Object: pick(ok2, func() string { return routeString(in.Pod, gwr) }), Pass: ok2, Detail: cond(!ok2, "no 169.254.1.1 scope link")})
	// Q5: who answers 169.254.1.1.
	var mac net.HardwareAddr
	how := "neighbour table"
	if in.ProbeARP != nil {
		m, err := in.ProbeARP(ctx)
		if err != nil {
			add(Check{Step: "169.254.1.1 answer", Detail: "ARP probe: " + err.Error()})
			return
		}
		mac, how = m, "ARP probe"
	} else {
		neighs, _ := in.Pod.NeighList(p.Index, family4)
		if n, ok := findNeigh(neighs, gateway); ok {
			mac = n.HardwareAddr
		}
	}
	if mac == nil {
		add(Check{Step: "169.254.1.1 answer", Detail: "not resolved yet (no neighbour entry; give an ARP probe)"})
		return
	}
	add(Check{Step: "169.254.1.1 answer", Object: fmt.Sprintf("169.254.1.1 dev %s lladdr %s (%s)", p.Name, mac, how),
		Pass: mac.String() == h.HardwareAddr.String(), Detail: cond(mac.String() != h.HardwareAddr.String(), "not the host side's MAC "+h.HardwareAddr.String())})
}

func destChecks(in Input, hostRoutes []netlink.Route, fam, bits int, add func(Check)) {
	// The longest matching route on the host decides.
	var best *netlink.Route
	bestLen := -1
	for i, r := range hostRoutes {
		p, ok := prefixOf(r.Dst, fam)
		if !ok || !p.Contains(in.Dest) || p.Bits() <= bestLen {
			continue
		}
		best, bestLen = &hostRoutes[i], p.Bits()
	}
	inPool := false
	for _, p := range in.Pools {
		inPool = inPool || p.Contains(in.Dest)
	}
	if best == nil {
		add(Check{Step: "route to destination", Detail: fmt.Sprintf("no route to %v on the host", in.Dest)})
		return
	}
	obj := routeString(in.Host, *best)
	dev := ""
	if l, err := in.Host.LinkByIndex(best.LinkIndex); err == nil {
		dev = l.Attrs().Name
	}
	switch {
	case best.Type == 6: // RTN_BLACKHOLE
		add(Check{Step: "route to destination", Object: obj, Detail: "blackholed: an address of this node's block with no pod"})
	case best.Gw == nil && bestLen == bits && strings.HasPrefix(dev, "cali"):
		add(Check{Step: "same-node route", Object: obj, Pass: best.Scope == scopeLink, Detail: "the host routes pod to pod: no bridge"})
	case dev == in.Device && best.Gw != nil:
		onlink := best.Flags&flagOnlink != 0
		add(Check{Step: "block route via tunnel", Object: obj, Pass: onlink && best.Protocol == routeProtocol, Detail: cond(!onlink, "not onlink")})
		vtepChecks(in, best, fam, add)
	case best.Gw != nil && best.Protocol == routeProtocol:
		add(Check{Step: "direct route (CrossSubnet)", Object: obj, Pass: true, Detail: "same subnet: not encapsulated"})
	case inPool:
		add(Check{Step: "route to destination", Object: obj, Detail: "a pool address without a tabby route: its node is not announced"})
	default:
		add(Check{Step: "route to destination", Object: obj, Pass: true, Detail: "leaves the pools"})
		if in.NATRules == "" {
			return
		}
		rule := firstLine(in.NATRules, "@nat_pools", "masquerade")
		if rule == "" {
			rule = firstLine(in.NATRules, "@nat_pools", "snat")
		}
		masq := rule != ""
		var pools []string
		for _, p := range in.Pools {
			if p.Addr().Is4() == in.Dest.Is4() && !strings.Contains(in.NATRules, p.String()) {
				pools = append(pools, p.String())
			}
		}
		add(Check{Step: "masquerade", Object: rule, Pass: masq && len(pools) == 0,
			Detail: cond(!masq, "no masquerade rule for @nat_pools") + cond(len(pools) > 0, "pools not in nat_pools: "+strings.Join(pools, ","))})
	}
}

func vtepChecks(in Input, r *netlink.Route, fam int, add func(Check)) {
	neighs, err := in.Host.NeighList(r.LinkIndex, fam)
	if err != nil {
		add(Check{Step: "tunnel neighbour", Detail: err.Error()})
		return
	}
	gw, _ := netip.AddrFromSlice(r.Gw)
	n, ok := findNeigh(neighs, gw.Unmap())
	perm := ok && n.State&nudPermanent != 0
	if !ok {
		add(Check{Step: "tunnel neighbour", Detail: fmt.Sprintf("no neighbour %v on %s", gw, in.Device)})
		return
	}
	add(Check{Step: "tunnel neighbour", Object: fmt.Sprintf("%v dev %s lladdr %s", gw, in.Device, n.HardwareAddr), Pass: perm, Detail: cond(!perm, "not PERMANENT")})
	fdb, err := in.Host.NeighList(r.LinkIndex, 7) // AF_BRIDGE
	if err != nil {
		add(Check{Step: "FDB", Detail: err.Error()})
		return
	}
	for _, f := range fdb {
		if f.HardwareAddr.String() == n.HardwareAddr.String() && f.IP != nil {
			perm := f.State&nudPermanent != 0
			add(Check{Step: "FDB", Object: fmt.Sprintf("%s dev %s dst %v self", f.HardwareAddr, in.Device, f.IP), Pass: perm, Detail: cond(!perm, "not permanent")})
			return
		}
	}
	add(Check{Step: "FDB", Detail: fmt.Sprintf("no FDB entry for %s on %s", n.HardwareAddr, in.Device)})
}

func find(rs []netlink.Route, f func(netlink.Route) bool) (netlink.Route, bool) {
	for _, r := range rs {
		if f(r) {
			return r, true
		}
	}
	return netlink.Route{}, false
}

func findNeigh(ns []netlink.Neigh, ip netip.Addr) (netlink.Neigh, bool) {
	for _, n := range ns {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip && n.HardwareAddr != nil {
			return n, true
		}
	}
	return netlink.Neigh{}, false
}

func prefixOf(n *net.IPNet, fam int) (netip.Prefix, bool) {
	if n == nil {
		if fam == family6 {
			return netip.MustParsePrefix("::/0"), true
		}
		return netip.MustParsePrefix("0.0.0.0/0"), true
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	if a.Is4In6() {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, ones), true
}

func isPrefix(n *net.IPNet, p netip.Prefix) bool {
	q, ok := prefixOf(n, family4)
	if p.Addr().Is6() {
		q, ok = prefixOf(n, family6)
	}
	return ok && n != nil && q == p
}

func cond(b bool, s string) string {
	if b {
		return s
	}
	return ""
}

func pick(ok bool, f func() string) string {
	if ok {
		return f()
	}
	return ""
}

func errString(err error) string {
	if err != nil {
		return err.Error()
	}
	return ""
}

// firstLine returns the first line of text holding every one of subs.
func firstLine(text string, subs ...string) string {
next:
	for _, l := range strings.Split(text, "\n") {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		return strings.TrimSpace(l)
	}
	return ""
}

// routeString prints a route like `ip route`.
func routeString(h Netlink, r netlink.Route) string {
	var b strings.Builder
	switch {
	case r.Type == 6:
		b.WriteString("blackhole " + r.Dst.String())
	case r.Dst == nil || r.Dst.IP.IsUnspecified():
		b.WriteString("default")
	default:
		if ones, bits := r.Dst.Mask.Size(); ones == bits {
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
	if r.Protocol == routeProtocol {
		b.WriteString(" proto 80")
	}
	if r.Scope == scopeLink {
		b.WriteString(" scope link")
	}
	if r.Flags&flagOnlink != 0 {
		b.WriteString(" onlink")
	}
	return b.String()
}

// Linux's address families, as netlink takes them (netlink.FAMILY_V4 and
// FAMILY_V6 exist only on Linux; this package builds everywhere).
const (
	family4 = 2
	family6 = 10
)

// More Linux constants (rtnetlink.h, neighbour.h) under their own names
// for the same reason.
const (
	scopeLink    = netlink.Scope(253) // RT_SCOPE_LINK
	nudPermanent = 0x80               // NUD_PERMANENT
	flagOnlink   = 0x4                // RTNH_F_ONLINK
)
