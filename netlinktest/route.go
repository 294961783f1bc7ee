package netlinktest

import (
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/netlinktest/internal/abi"
)

const (
	tableLocal        = abi.RT_TABLE_LOCAL
	tableMain         = abi.RT_TABLE_MAIN
	tableDefault      = abi.RT_TABLE_DEFAULT
	protoKernel       = abi.RTPROT_KERNEL
	protoBoot         = abi.RTPROT_BOOT
	ip6RtPrioUser     = 1024
	ip6RtPrioAddrconf = 256
)

// route is one FIB entry.
type route struct {
	dst      netip.Prefix
	table    int
	tos      int
	priority int
	typ      int
	proto    int
	scope    int
	onlink   bool
	link     int
	gw       netip.Addr
	src      netip.Addr
	mtu      int
	seq      uint64
	auto     bool // made by IPv6 autoconfiguration (left out of Dump)
}

func (r *route) is4() bool { return r.dst.Addr().Is4() }

// sameKey reports whether r and o occupy the same FIB slot (EEXIST on add,
// replaced by replace).
func (r *route) sameKey(o *route) bool {
	if r.table != o.table || r.dst != o.dst || r.priority != o.priority {
		return false
	}
	if r.is4() {
		return r.tos == o.tos
	}
	return true // fib6_add_rt2node: same metric is the same slot, whatever the next hop
}

func (ns *namespace) view(r *route) netlink.Route {
	out := netlink.Route{
		LinkIndex: r.link,
		Scope:     netlink.Scope(r.scope),
		Protocol:  netlink.RouteProtocol(r.proto),
		Priority:  r.priority,
		Table:     r.table,
		Type:      r.typ,
		Tos:       r.tos,
		MTU:       r.mtu,
		Family:    abi.FAMILY_V4,
	}
	if !r.is4() {
		out.Family = abi.FAMILY_V6
	}
	if r.onlink {
		out.Flags |= abi.RTNH_F_ONLINK
	}
	if r.typ != abi.RTN_LOCAL {
		if l := ns.links[r.link]; l != nil && l.up && !l.carrier() {
			out.Flags |= abi.RTNH_F_LINKDOWN
		}
	}
	bits := r.dst.Addr().BitLen()
	if r.dst.Bits() == 0 {
		zero := net.IPv4zero
		if bits == 128 {
			zero = net.IPv6zero
		}
		out.Dst = &net.IPNet{IP: zero, Mask: net.CIDRMask(0, bits)}
	} else {
		out.Dst = &net.IPNet{IP: net.IP(r.dst.Addr().AsSlice()), Mask: net.CIDRMask(r.dst.Bits(), bits)}
	}
	if r.gw.IsValid() {
		out.Gw = net.IP(r.gw.AsSlice())
	}
	if r.src.IsValid() {
		out.Src = net.IP(r.src.AsSlice())
	}
	return out
}

// routeLess orders routes like a kernel dump: IPv4 first, then by table,
// destination (see below), TOS, metric, age.
func routeLess(a, b *route) bool {
	if a.is4() != b.is4() {
		return a.is4()
	}
	if a.table != b.table {
		return a.table < b.table
	}
	if a.dst != b.dst {
		if !a.is4() {
			// The fib6 tree is walked children first: a prefix
			// comes after everything it contains.
			if a.dst.Bits() < b.dst.Bits() && a.dst.Contains(b.dst.Addr()) {
				return false
			}
			if b.dst.Bits() < a.dst.Bits() && b.dst.Contains(a.dst.Addr()) {
				return true
			}
		}
		// The fib trie (and the fib6 tree for disjoint prefixes) goes
		// by address, longer prefixes first for the same address.
		if c := a.dst.Addr().Compare(b.dst.Addr()); c != 0 {
			return c < 0
		}
		return a.dst.Bits() > b.dst.Bits()
	}
	if a.tos != b.tos {
		return a.tos > b.tos
	}
	if a.priority != b.priority {
		return a.priority < b.priority
	}
	return a.seq < b.seq
}

func sortRoutes(rs []*route) { sort.Slice(rs, func(i, j int) bool { return routeLess(rs[i], rs[j]) }) }

func (ns *namespace) sortedRoutes() []*route {
	rs := append([]*route(nil), ns.routes...)
	sortRoutes(rs)
	return rs
}

func (ns *namespace) insertRoute(r *route) {
	ns.m.seq++
	r.seq = uint64(ns.m.seq)
	ns.routes = append(ns.routes, r)
}

// addKernelRoute adds a route the kernel installs itself, unless an
// identical one exists (fib_magic appends).
func (ns *namespace) addKernelRoute(r *route) {
	for _, o := range ns.routes {
		if o.sameKey(r) && o.link == r.link && o.typ == r.typ && o.src == r.src && o.gw == r.gw {
			o.auto = o.auto && r.auto
			return
		}
	}
	ns.insertRoute(r)
}

// addAddrRoutes installs the routes the kernel derives from address a on
// l (fib_add_ifaddr): the local route always, the broadcast and prefix
// routes while l is up. A secondary address's routes take the primary
// address as preferred source, and it gets no prefix route.
func (ns *namespace) addAddrRoutes(l *link, a *addr) {
	if a.ip.Is6() {
		if !l.up {
			return
		}
		ns.addKernelRoute(&route{dst: netip.PrefixFrom(a.ip, 128), table: tableLocal, typ: abi.RTN_LOCAL,
			proto: protoKernel, link: l.index, auto: a.auto})
		if a.flags&abi.IFA_F_NOPREFIXROUTE == 0 && !a.loopback {
			ns.addKernelRoute(&route{dst: a.prefix(), table: tableMain, typ: abi.RTN_UNICAST,
				proto: protoKernel, link: l.index, priority: ip6RtPrioAddrconf, auto: a.auto})
		}
		return
	}
	src := a.ip
	if a.secondary {
		if p := l.primaryFor(a); p != nil {
			src = p.ip
		}
	}
	ns.addKernelRoute(&route{dst: netip.PrefixFrom(a.ip, 32), table: tableLocal, typ: abi.RTN_LOCAL,
		proto: protoKernel, scope: abi.RT_SCOPE_HOST, link: l.index, src: src})
	if !l.up {
		return
	}
	if a.bcast.IsValid() && a.bcast != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		ns.addKernelRoute(&route{dst: netip.PrefixFrom(a.bcast, 32), table: tableLocal, typ: abi.RTN_BROADCAST,
			proto: protoKernel, scope: abi.RT_SCOPE_LINK, link: l.index, src: src})
	}
	p := a.prefix()
	if a.secondary || p.Addr().IsUnspecified() || (p.Addr() == a.ip && a.bits == 32) {
		return
	}
	if a.flags&abi.IFA_F_NOPREFIXROUTE != 0 {
		return
	}
	r := &route{dst: p, table: tableMain, typ: abi.RTN_UNICAST, proto: protoKernel,
		scope: abi.RT_SCOPE_LINK, link: l.index, src: a.ip}
	if l.kind == kindLoopback {
		r.table, r.typ, r.scope = tableLocal, abi.RTN_LOCAL, abi.RT_SCOPE_HOST
	}
	ns.addKernelRoute(r)
	if a.bits < 31 {
		// The network's broadcast address, whether or not the address
		// carries one.
		b := p.Addr().As4()
		for i := a.bits; i < 32; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		ns.addKernelRoute(&route{dst: netip.PrefixFrom(netip.AddrFrom4(b), 32), table: tableLocal, typ: abi.RTN_BROADCAST,
			proto: protoKernel, scope: abi.RT_SCOPE_LINK, link: l.index, src: a.ip})
	}
}

// primaryFor returns the primary address a secondary belongs to.
func (l *link) primaryFor(a *addr) *addr {
	for _, p := range l.addrs {
		if p.ip.Is4() && !p.secondary && p.bits == a.bits && p.prefix().Contains(a.ip) {
			return p
		}
	}
	return nil
}

// delAddrRoutes removes the routes that go with address a of l, and (like
// fib_sync_down_addr) every route using a as preferred source once no
// link has it any more.
func (ns *namespace) delAddrRoutes(l *link, a *addr) {
	stillLocal := ns.hasLocal(a.ip)
	kept := ns.routes[:0]
	for _, r := range ns.routes {
		drop := false
		if a.ip.Is4() {
			if r.link == l.index && r.table == tableLocal && r.typ == abi.RTN_LOCAL && r.dst == netip.PrefixFrom(a.ip, 32) {
				drop = true
			}
			if !a.secondary && r.proto == protoKernel && r.link == l.index && r.src == a.ip {
				drop = true
			}
			if !stillLocal && r.src == a.ip {
				drop = true
			}
		} else if r.proto == protoKernel && r.link == l.index {
			if r.dst == netip.PrefixFrom(a.ip, 128) && r.table == tableLocal {
				drop = true
			}
			if r.dst == a.prefix() && r.table == tableMain && !l.hasPrefix6(a.prefix()) {
				drop = true
			}
		}
		if !drop {
			kept = append(kept, r)
		}
	}
	ns.routes = kept
}

func (l *link) hasPrefix6(p netip.Prefix) bool {
	for _, a := range l.addrs {
		if a.ip.Is6() && a.prefix() == p {
			return true
		}
	}
	return false
}

func (ns *namespace) loopbackIndex() int {
	for _, l := range ns.links {
		if l.kind == kindLoopback {
			return l.index
		}
	}
	return 0
}

// flushRoutes removes routes through l: all of them when l goes away, all
// but the IPv4 local routes of its addresses when l goes down.
func (ns *namespace) flushRoutes(l *link, all bool) {
	kept := ns.routes[:0]
	for _, r := range ns.routes {
		if r.link == l.index && (all || !r.is4() || r.typ != abi.RTN_LOCAL) {
			continue
		}
		kept = append(kept, r)
	}
	ns.routes = kept
}

// lookup is a FIB lookup for dst restricted to routes of at least scope
// and, if oif != 0, through oif; table != 0 and != main is tried first.
func (ns *namespace) lookup(dst netip.Addr, scope, oif, table int) *route {
	try := func(tables ...int) *route {
		var best *route
		for _, r := range ns.routes {
			in := false
			for _, t := range tables {
				if r.table == t {
					in = true
				}
			}
			if !in || !r.dst.Contains(dst) || r.scope < scope {
				continue
			}
			if oif != 0 && r.link != oif {
				continue
			}
			if best == nil || r.dst.Bits() > best.dst.Bits() || (r.dst.Bits() == best.dst.Bits() && routeLess(r, best)) {
				best = r
			}
		}
		return best
	}
	if table != 0 && table != tableMain {
		if r := try(table); r != nil {
			return r
		}
	}
	// Default rules: local, main, default; the first table with a match wins.
	for _, t := range []int{tableLocal, tableMain, tableDefault} {
		if r := try(t); r != nil {
			return r
		}
	}
	return nil
}

// build turns a netlink.Route into a route the way netlink encodes it and
// the kernel reads it. del selects RTM_DELROUTE defaults.
func buildRoute(r *netlink.Route, del bool) (*route, error) {
	if r == nil {
		return nil, abi.EINVAL
	}
	if (r.Dst == nil || r.Dst.IP == nil) && r.Src == nil && r.Gw == nil {
		return nil, fmt.Errorf("either Dst.IP, Src.IP or Gw must be set")
	}
	out := &route{table: tableMain, priority: r.Priority, tos: r.Tos, scope: int(r.Scope),
		link: r.LinkIndex, mtu: r.MTU, onlink: r.Flags&abi.RTNH_F_ONLINK != 0}
	if !del {
		out.proto, out.typ = protoBoot, abi.RTN_UNICAST
	}
	if r.Table > 0 {
		out.table = r.Table
	}
	if r.Protocol > 0 {
		out.proto = int(r.Protocol)
	}
	if r.Type > 0 {
		out.typ = r.Type
	}
	is4 := -1
	fam := func(ip net.IP) (netip.Addr, error) {
		a, ok := toAddr(ip)
		if !ok {
			return a, abi.EINVAL
		}
		if is4 >= 0 && (is4 == 1) != a.Is4() {
			return a, fmt.Errorf("gateway, source, and destination ip are not the same IP family")
		}
		if a.Is4() {
			is4 = 1
		} else {
			is4 = 0
		}
		return a, nil
	}
	var dstAddr netip.Addr
	dstBits := -1
	if r.Dst != nil && r.Dst.IP != nil {
		a, err := fam(r.Dst.IP)
		if err != nil {
			return nil, err
		}
		ones, bits := r.Dst.Mask.Size()
		if a.Is4() && bits == 128 {
			ones -= 96
		}
		dstAddr, dstBits = a, ones
	}
	if r.Gw != nil {
		a, err := fam(r.Gw)
		if err != nil {
			return nil, err
		}
		out.gw = a
	}
	if r.Src != nil {
		a, err := fam(r.Src)
		if err != nil {
			return nil, err
		}
		out.src = a
	}
	if dstBits < 0 {
		if is4 == 1 {
			dstAddr = netip.IPv4Unspecified()
		} else {
			dstAddr = netip.IPv6Unspecified()
		}
		dstBits = 0
	}
	p := netip.PrefixFrom(dstAddr, dstBits)
	if !p.IsValid() {
		return nil, abi.EINVAL
	}
	if p.Masked() != p {
		if dstAddr.Is4() {
			return nil, abi.EINVAL // "Invalid prefix for given prefix length"
		}
		p = p.Masked()
	}
	out.dst = p
	if dstAddr.Is6() && out.priority == 0 && !del {
		out.priority = ip6RtPrioUser
	}
	return out, nil
}

// RouteAdd adds a route; EEXIST if its slot (table, destination, TOS,
// metric) is taken.
func (k *Kernel) RouteAdd(r *netlink.Route) error {
	return k.routeModify("RouteAdd", r, false)
}

// RouteReplace adds a route or replaces the one in its slot.
func (k *Kernel) RouteReplace(r *netlink.Route) error {
	return k.routeModify("RouteReplace", r, true)
}

func (k *Kernel) routeModify(op string, nr *netlink.Route, replace bool) error {
	r, err := buildRoute(nr, false)
	if err != nil {
		return err
	}
	return k.do(op, func() error {
		ns := k.ns
		if err := ns.checkRoute(r); err != nil {
			return err
		}
		for _, o := range ns.routes {
			if o.sameKey(r) {
				if !replace {
					return abi.EEXIST
				}
				r.seq = o.seq
				*o = *r
				return nil
			}
		}
		ns.insertRoute(r)
		return nil
	})
}

// checkRoute validates r like fib_create_info and resolves its device.
func (ns *namespace) checkRoute(r *route) error {
	if r.typ <= abi.RTN_UNSPEC || r.typ > abi.RTN_XRESOLVE || r.scope > abi.RT_SCOPE_NOWHERE {
		return abi.EINVAL
	}
	if r.is4() && r.scope > abi.RT_SCOPE_HOST {
		return abi.EINVAL
	}
	switch r.typ {
	case abi.RTN_BLACKHOLE, abi.RTN_UNREACHABLE, abi.RTN_PROHIBIT, abi.RTN_THROW:
		if r.gw.IsValid() || r.link != 0 {
			return abi.EINVAL
		}
		if r.onlink {
			return abi.EINVAL
		}
		if !r.is4() {
			r.link = ns.loopbackIndex() // ip6 reject routes point at lo
		}
		return ns.checkPrefsrc(r)
	}
	if !r.is4() {
		if r.gw.IsValid() && !r.onlink && !r.gw.IsLinkLocalUnicast() {
			// ip6_route_check_nh: the gateway must be reachable
			// (through the given device, if any).
			res := ns.lookup(r.gw, 0, r.link, r.table)
			if res == nil || (res.typ != abi.RTN_UNICAST && res.typ != abi.RTN_LOCAL) {
				return abi.EHOSTUNREACH
			}
			if r.link == 0 {
				r.link = res.link
			}
		}
		if r.link == 0 {
			return abi.ENODEV
		}
		l := ns.links[r.link]
		if l == nil {
			return abi.ENODEV
		}
		if !l.up {
			return abi.ENETDOWN
		}
		return nil
	}
	var dev *link
	if r.link != 0 {
		dev = ns.links[r.link]
		if dev == nil {
			return abi.ENODEV
		}
	}
	switch {
	case r.gw.IsValid() && r.onlink:
		if r.scope >= abi.RT_SCOPE_LINK {
			return abi.EINVAL
		}
		if dev == nil {
			return abi.ENODEV
		}
		if !dev.up {
			return abi.ENETDOWN
		}
		if ns.hasLocal(r.gw) {
			return abi.EINVAL
		}
	case r.gw.IsValid():
		scope := r.scope + 1
		if scope < abi.RT_SCOPE_LINK {
			scope = abi.RT_SCOPE_LINK
		}
		res := ns.lookup(r.gw, scope, r.link, r.table)
		if res == nil {
			return abi.ENETUNREACH
		}
		if res.typ != abi.RTN_UNICAST && res.typ != abi.RTN_LOCAL {
			return abi.EINVAL
		}
		dev = ns.links[res.link]
		if dev == nil {
			return abi.EINVAL
		}
		if !dev.up {
			return abi.ENETDOWN
		}
		r.link = dev.index
	default:
		if r.onlink {
			return abi.EINVAL
		}
		if dev == nil {
			return abi.ENODEV
		}
		if !dev.up && r.typ != abi.RTN_LOCAL {
			return abi.ENETDOWN
		}
	}
	return ns.checkPrefsrc(r)
}

func (ns *namespace) checkPrefsrc(r *route) error {
	if !r.src.IsValid() {
		return nil
	}
	if r.typ == abi.RTN_LOCAL && r.dst.Bits() == r.dst.Addr().BitLen() && r.dst.Addr() == r.src {
		return nil
	}
	if !ns.hasLocal(r.src) {
		return abi.EINVAL
	}
	return nil
}

// RouteDel deletes the first route matching every field the request
// carries (netlink always sends the scope: 0 means universe); ESRCH if
// none does.
func (k *Kernel) RouteDel(nr *netlink.Route) error {
	q, err := buildRoute(nr, true)
	if err != nil {
		return err
	}
	return k.do("RouteDel", func() error {
		ns := k.ns
		var victim *route
		for _, r := range ns.routes {
			if r.table != q.table || r.dst != q.dst || r.is4() != q.is4() {
				continue
			}
			if r.is4() {
				if r.tos != q.tos || (q.typ != 0 && r.typ != q.typ) || r.scope != q.scope {
					continue
				}
			}
			if (r.is4() && q.src.IsValid() && r.src != q.src) || (q.proto != 0 && r.proto != q.proto) ||
				(q.priority != 0 && r.priority != q.priority) || (q.link != 0 && r.link != q.link) ||
				(q.gw.IsValid() && r.gw != q.gw) {
				continue
			}
			if victim == nil || routeLess(r, victim) {
				victim = r // the first match in kernel order
			}
		}
		if victim == nil {
			return abi.ESRCH
		}
		for i, o := range ns.routes {
			if o == victim {
				ns.routes = append(ns.routes[:i:i], ns.routes[i+1:]...)
				break
			}
		}
		return nil
	})
}

// RouteList lists the main table's routes through link (all if nil), as
// netlink does: a link is matched by its Index field as given.
func (k *Kernel) RouteList(lk netlink.Link, family int) ([]netlink.Route, error) {
	f := &netlink.Route{}
	if lk != nil {
		f.LinkIndex = lk.Attrs().Index
		return k.routeList("RouteList", family, f, netlink.RT_FILTER_OIF)
	}
	return k.routeList("RouteList", family, f, 0)
}

// RouteListFiltered lists routes matching filter on the fields in mask
// (netlink.RT_FILTER_*). Only the main table is listed unless mask has
// RT_FILTER_TABLE (filter.Table 0 then means every table).
func (k *Kernel) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	return k.routeList("RouteListFiltered", family, filter, mask)
}

// RouteListFilteredIter calls f with each route RouteListFiltered would
// return, in the same order, until f returns false. f runs without the
// machine's lock held, so it may call the fake.
func (k *Kernel) RouteListFilteredIter(family int, filter *netlink.Route, mask uint64, f func(netlink.Route) bool) error {
	rs, err := k.routeList("RouteListFilteredIter", family, filter, mask)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if !f(r) {
			break
		}
	}
	return nil
}

func (k *Kernel) routeList(op string, family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	var out []netlink.Route
	err := k.read(op, func() error {
		for _, r := range k.ns.sortedRoutes() {
			v := k.ns.view(r)
			if family != abi.FAMILY_ALL && v.Family != family {
				continue
			}
			if v.Table != tableMain && (filter == nil || mask&netlink.RT_FILTER_TABLE == 0) {
				continue
			}
			if filter != nil && !routeMatches(v, filter, mask, family) {
				continue
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

func routeMatches(r netlink.Route, f *netlink.Route, mask uint64, family int) bool {
	switch {
	case mask&netlink.RT_FILTER_TABLE != 0 && f.Table != abi.RT_TABLE_UNSPEC && r.Table != f.Table:
		return false
	case mask&netlink.RT_FILTER_PROTOCOL != 0 && r.Protocol != f.Protocol:
		return false
	case mask&netlink.RT_FILTER_SCOPE != 0 && r.Scope != f.Scope:
		return false
	case mask&netlink.RT_FILTER_TYPE != 0 && r.Type != f.Type:
		return false
	case mask&netlink.RT_FILTER_TOS != 0 && r.Tos != f.Tos:
		return false
	case mask&netlink.RT_FILTER_REALM != 0 && r.Realm != f.Realm:
		return false
	case mask&netlink.RT_FILTER_OIF != 0 && r.LinkIndex != f.LinkIndex:
		return false
	case mask&netlink.RT_FILTER_IIF != 0 && r.ILinkIndex != f.ILinkIndex:
		return false
	case mask&netlink.RT_FILTER_GW != 0 && !r.Gw.Equal(f.Gw):
		return false
	case mask&netlink.RT_FILTER_SRC != 0 && !r.Src.Equal(f.Src):
		return false
	case mask&netlink.RT_FILTER_DST != 0:
		d := f.Dst
		if d == nil {
			switch family {
			case abi.FAMILY_V4:
				d = &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
			case abi.FAMILY_V6:
				d = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
			}
		}
		if d == nil || r.Dst == nil {
			return d == nil && r.Dst == nil
		}
		return r.Dst.IP.Equal(d.IP) && r.Dst.Mask.String() == d.Mask.String()
	case mask&netlink.RT_FILTER_HOPLIMIT != 0 && r.Hoplimit != f.Hoplimit:
		return false
	}
	return true
}
