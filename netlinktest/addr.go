package netlinktest

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/netlinktest/internal/abi"
)

const lifetimeForever = 0xFFFFFFFF

// addr is one interface address.
type addr struct {
	ip        netip.Addr
	bits      int
	bcast     netip.Addr
	label     string
	scope     int
	flags     int // IFA_F_* as given, without PERMANENT/SECONDARY
	secondary bool
	valid     uint32
	preferred uint32
	seq       uint64
	loopback  bool // ::1 added by the kernel: no prefix route
	auto      bool // EUI-64 link-local made by IPv6 autoconfiguration
}

func (a *addr) prefix() netip.Prefix { return netip.PrefixFrom(a.ip, a.bits).Masked() }

func (a *addr) view(l *link) netlink.Addr {
	out := netlink.Addr{
		IPNet:       &net.IPNet{IP: net.IP(a.ip.AsSlice()), Mask: net.CIDRMask(a.bits, a.ip.BitLen())},
		Scope:       a.scope,
		LinkIndex:   l.index,
		PreferedLft: int(a.preferred),
		ValidLft:    int(a.valid),
	}
	flags := a.flags
	if a.valid == lifetimeForever {
		flags |= abi.IFA_F_PERMANENT
	}
	if a.secondary {
		flags |= abi.IFA_F_SECONDARY
	}
	out.Flags = flags
	if a.ip.Is4() {
		out.Label = a.label
		if a.bcast.IsValid() {
			out.Broadcast = net.IP(a.bcast.AsSlice())
		}
	}
	return out
}

func toAddr(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// AddrAdd adds an address; EEXIST if the link has it already.
func (k *Kernel) AddrAdd(lk netlink.Link, a *netlink.Addr) error {
	return k.addrModify("AddrAdd", lk, a, false)
}

// AddrReplace adds an address or updates it in place.
func (k *Kernel) AddrReplace(lk netlink.Link, a *netlink.Addr) error {
	return k.addrModify("AddrReplace", lk, a, true)
}

// prepAddr does what netlink's addrHandle does on the client side: fill
// the link index and compute an IPv4 broadcast address (stored in a).
func (k *Kernel) prepAddr(lk netlink.Link, a *netlink.Addr) (int, error) {
	if a == nil || a.IPNet == nil {
		return 0, abi.EINVAL
	}
	idx := a.LinkIndex
	if lk != nil {
		base := lk.Attrs()
		if a.Label != "" && !strings.HasPrefix(a.Label, base.Name) {
			return 0, fmt.Errorf("label must begin with interface name")
		}
		k.m.mu.Lock()
		k.ns.ensureIndex(base)
		k.m.mu.Unlock()
		idx = base.Index
	}
	if ip4 := a.IP.To4(); ip4 != nil {
		ones, bits := a.Mask.Size()
		if a.Broadcast == nil && ones < 31 && bits == 32 {
			b := make(net.IP, 4)
			m := a.Mask
			if len(m) == 16 {
				m = m[12:]
			}
			for i := range ip4 {
				b[i] = ip4[i] | ^m[i]
			}
			a.Broadcast = b
		}
		if net.IPv4zero.Equal(a.Broadcast) {
			a.Broadcast = nil
		}
	}
	return idx, nil
}

func (k *Kernel) addrModify(op string, lk netlink.Link, a *netlink.Addr, replace bool) error {
	idx, err := k.prepAddr(lk, a)
	if err != nil {
		return err
	}
	return k.do(op, func() error {
		l := k.ns.links[idx]
		if l == nil {
			return abi.ENODEV
		}
		ip, ok := toAddr(a.IP)
		if !ok {
			return abi.EINVAL
		}
		ones, bits := a.Mask.Size()
		if bits != ip.BitLen() {
			if !(bits == 128 && ip.Is4()) {
				return abi.EINVAL
			}
			ones -= 96
		}
		na := &addr{ip: ip, bits: ones, scope: a.Scope, flags: a.Flags &^ (abi.IFA_F_PERMANENT | abi.IFA_F_SECONDARY),
			valid: lifetimeForever, preferred: lifetimeForever}
		if a.ValidLft > 0 || a.PreferedLft > 0 {
			na.valid, na.preferred = uint32(a.ValidLft), uint32(a.PreferedLft)
		}
		if ip.Is6() {
			na.scope = ipv6Scope(ip) // the kernel ignores the requested scope
		}
		if ip.Is4() {
			na.label = a.Label
			if na.label == "" {
				na.label = l.name
			}
			if b, ok := toAddr(a.Broadcast); ok && a.Broadcast != nil {
				na.bcast = b
			}
		}
		for _, old := range l.addrs {
			if old.ip == ip && (old.bits == ones || ip.Is6()) {
				if !replace {
					return abi.EEXIST
				}
				old.scope, old.flags, old.valid, old.preferred = na.scope, na.flags, na.valid, na.preferred
				if ip.Is4() {
					old.label, old.bcast = na.label, na.bcast
				}
				return nil
			}
		}
		if ip.Is4() {
			for _, old := range l.addrs {
				if old.ip.Is4() && !old.secondary && old.bits == ones && old.prefix().Contains(ip) {
					na.secondary = true
					break
				}
			}
		}
		l.insertAddr(na)
		k.ns.addAddrRoutes(l, na)
		return nil
	})
}

// insertAddr places a new address where __inet_insert_ifa does: an IPv4
// primary after the last primary of the same or a wider scope (at the
// front if none), a secondary at the end.
func (l *link) insertAddr(na *addr) {
	l.ns.m.seq++
	na.seq = uint64(l.ns.m.seq)
	if !na.ip.Is4() || na.secondary {
		l.addrs = append(l.addrs, na)
		return
	}
	pos := -1
	for i, a := range l.addrs {
		if !a.ip.Is4() {
			continue
		}
		if pos < 0 {
			pos = i // the head of the IPv4 list
		}
		if !a.secondary && na.scope <= a.scope {
			pos = i + 1
		}
	}
	if pos < 0 {
		pos = len(l.addrs)
	}
	l.addrs = append(l.addrs[:pos], append([]*addr{na}, l.addrs[pos:]...)...)
}

// AddrDel removes an address; EADDRNOTAVAIL if the link does not have it.
// Deleting a primary IPv4 address also deletes its secondaries
// (promote_secondaries is 0 by default).
func (k *Kernel) AddrDel(lk netlink.Link, a *netlink.Addr) error {
	idx, err := k.prepAddr(lk, a)
	if err != nil {
		return err
	}
	return k.do("AddrDel", func() error {
		l := k.ns.links[idx]
		if l == nil {
			return abi.ENODEV
		}
		ip, ok := toAddr(a.IP)
		if !ok {
			return abi.EINVAL
		}
		ones, _ := a.Mask.Size()
		if ip.Is4() && len(a.Mask) == 16 {
			ones -= 96
		}
		for i, old := range l.addrs {
			if old.ip != ip || old.bits != ones {
				continue
			}
			if ip.Is4() && a.Label != "" && a.Label != old.label {
				continue
			}
			l.addrs = append(l.addrs[:i:i], l.addrs[i+1:]...)
			k.ns.delAddrRoutes(l, old)
			if ip.Is4() && !old.secondary {
				kept := l.addrs[:0]
				for _, s := range l.addrs {
					if s.secondary && s.bits == old.bits && old.prefix().Contains(s.ip) {
						k.ns.delAddrRoutes(l, s)
						continue
					}
					kept = append(kept, s)
				}
				l.addrs = kept
			}
			return nil
		}
		return abi.EADDRNOTAVAIL
	})
}

// AddrList lists addresses of lk (nil: of every link) of a family
// (FamilyAll, FamilyV4, FamilyV6), in link then insertion order.
func (k *Kernel) AddrList(lk netlink.Link, family int) ([]netlink.Addr, error) {
	var out []netlink.Addr
	err := k.read("AddrList", func() error {
		filter := 0
		if lk != nil {
			k.ns.ensureIndex(lk.Attrs())
			filter = lk.Attrs().Index
		}
		for _, fam := range []int{abi.FAMILY_V4, abi.FAMILY_V6} {
			if family != abi.FAMILY_ALL && family != fam {
				continue
			}
			for _, l := range k.ns.sortedLinks() {
				if lk != nil && l.index != filter {
					continue
				}
				var as []*addr
				for _, a := range l.addrs {
					if a.ip.Is4() == (fam == abi.FAMILY_V4) {
						as = append(as, a)
					}
				}
				if fam == abi.FAMILY_V6 {
					// ipv6_link_dev_addr keeps them by scope, newest first.
					sort.SliceStable(as, func(i, j int) bool {
						if si, sj := ipv6ScopeRank(as[i].scope), ipv6ScopeRank(as[j].scope); si != sj {
							return si < sj
						}
						return as[i].seq > as[j].seq
					})
				}
				for _, a := range as {
					out = append(out, a.view(l))
				}
			}
		}
		return nil
	})
	return out, err
}

// ipv6ScopeRank is the kernel's internal IPv6 scope (IPV6_ADDR_*) an
// rtnetlink scope comes from, by which it orders a link's addresses.
func ipv6ScopeRank(rtScope int) int {
	switch rtScope {
	case abi.RT_SCOPE_HOST:
		return 0x10
	case abi.RT_SCOPE_LINK:
		return 0x20
	case abi.RT_SCOPE_SITE:
		return 0x40
	}
	return 0
}

// ipv6Scope is rt_scope(ipv6_addr_scope(ip)): what the kernel gives an
// IPv6 address.
func ipv6Scope(ip netip.Addr) int {
	switch {
	case ip.IsLoopback():
		return abi.RT_SCOPE_HOST
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		return abi.RT_SCOPE_LINK
	case netip.MustParsePrefix("fec0::/10").Contains(ip):
		return abi.RT_SCOPE_SITE
	}
	return abi.RT_SCOPE_UNIVERSE
}

// addLoopbackAddrs adds 127.0.0.1/8 and ::1/128 to lo as the kernel does
// when lo goes up.
func (ns *namespace) addLoopbackAddrs(l *link) {
	want := []*addr{
		{ip: netip.MustParseAddr("127.0.0.1"), bits: 8, label: l.name, scope: int(netlink.Scope(abi.RT_SCOPE_HOST)), valid: lifetimeForever, preferred: lifetimeForever},
		{ip: netip.IPv6Loopback(), bits: 128, scope: int(netlink.Scope(abi.RT_SCOPE_HOST)), valid: lifetimeForever, preferred: lifetimeForever, loopback: true},
	}
	for _, w := range want {
		have := false
		for _, a := range l.addrs {
			if a.ip == w.ip {
				have = true
			}
		}
		if !have {
			l.insertAddr(w)
		}
	}
}

// hasLocal reports whether ip is an address of any link in ns.
func (ns *namespace) hasLocal(ip netip.Addr) bool {
	for _, l := range ns.links {
		for _, a := range l.addrs {
			if a.ip == ip {
				return true
			}
		}
	}
	return false
}

// autoconf is addrconf_dev_config: once a non-loopback link is up with
// carrier (and IPv6 is enabled on it), it gets its EUI-64 link-local
// address (unless it has it already), fe80::/64 and ff00::/8. The fake
// skips duplicate address detection: the address is never tentative.
func (ns *namespace) autoconf(l *link) {
	if l.autoconf || !l.up || !l.carrier() || l.kind == kindLoopback || len(l.hw) != 6 {
		return
	}
	if l.getSysctl("net/ipv6/conf/%s/disable_ipv6") != "0" || ns.getSysctl("net/ipv6/conf/all/disable_ipv6") != "0" {
		return
	}
	l.autoconf = true
	ns.addKernelRoute(&route{dst: netip.MustParsePrefix("ff00::/8"), table: tableLocal, typ: abi.RTN_MULTICAST,
		proto: protoKernel, link: l.index, priority: ip6RtPrioAddrconf, auto: true})
	if l.getSysctl("net/ipv6/conf/%s/addr_gen_mode") == "1" {
		return // IN6_ADDR_GEN_MODE_NONE
	}
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	b[8], b[9], b[10], b[11] = l.hw[0]^0x02, l.hw[1], l.hw[2], 0xff
	b[12], b[13], b[14], b[15] = 0xfe, l.hw[3], l.hw[4], l.hw[5]
	ip := netip.AddrFrom16(b)
	for _, a := range l.addrs {
		if a.ip == ip {
			return
		}
	}
	a := &addr{ip: ip, bits: 64, scope: abi.RT_SCOPE_LINK, valid: lifetimeForever, preferred: lifetimeForever, auto: true}
	l.insertAddr(a)
	ns.addAddrRoutes(l, a)
}

// dropIPv6 removes a link's IPv6 addresses and routes (addrconf_ifdown).
func (ns *namespace) dropIPv6(l *link) {
	kept := l.addrs[:0]
	for _, a := range l.addrs {
		if a.ip.Is4() {
			kept = append(kept, a)
		}
	}
	l.addrs = kept
	rs := ns.routes[:0]
	for _, r := range ns.routes {
		if r.link != l.index || r.is4() {
			rs = append(rs, r)
		}
	}
	ns.routes = rs
	l.autoconf = false
}
