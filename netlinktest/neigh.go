package netlinktest

import (
	"bytes"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/netlinktest/internal/abi"
)

const nudValid = abi.NUD_PERMANENT | abi.NUD_NOARP | abi.NUD_REACHABLE |
	abi.NUD_PROBE | abi.NUD_STALE | abi.NUD_DELAY

// neigh is an ARP/NDP entry (family AF_INET/AF_INET6) or an FDB entry
// (family AF_BRIDGE, one per remote).
type neigh struct {
	family int
	link   int
	ip     netip.Addr // FDB: the remote (VTEP) address; invalid for a plain device entry
	mac    net.HardwareAddr
	state  int
	flags  int
	typ    int
	seq    uint64
}

func (n *neigh) view() netlink.Neigh {
	out := netlink.Neigh{
		LinkIndex:    n.link,
		Family:       n.family,
		State:        n.state,
		Type:         n.typ,
		Flags:        n.flags,
		HardwareAddr: append(net.HardwareAddr(nil), n.mac...),
	}
	if n.ip.IsValid() {
		out.IP = net.IP(n.ip.AsSlice())
	}
	return out
}

func (ns *namespace) sortedNeighs() []*neigh {
	out := append([]*neigh(nil), ns.neighs...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.family != b.family {
			return a.family < b.family
		}
		if a.link != b.link {
			return a.link < b.link
		}
		if c := bytes.Compare(a.mac, b.mac); c != 0 && a.family == abi.AF_BRIDGE {
			return c < 0
		}
		if c := a.ip.Compare(b.ip); c != 0 {
			return c < 0
		}
		return a.seq < b.seq
	})
	return out
}

// flushNeighs removes l's neighbours (all of them, as on NETDEV_DOWN) and
// its non-permanent FDB entries; with gone, every FDB entry too.
func (ns *namespace) flushNeighs(l *link, gone bool) {
	kept := ns.neighs[:0]
	for _, n := range ns.neighs {
		if n.link == l.index {
			if n.family != abi.AF_BRIDGE || gone || n.state&(abi.NUD_PERMANENT|abi.NUD_NOARP) == 0 {
				continue
			}
		}
		kept = append(kept, n)
	}
	ns.neighs = kept
}

// neighCarrierDown is neigh_carrier_down: a link that loses carrier keeps
// only its permanent neighbours.
func (ns *namespace) neighCarrierDown(l *link) {
	kept := ns.neighs[:0]
	for _, n := range ns.neighs {
		if n.link == l.index && n.family != abi.AF_BRIDGE && n.state&abi.NUD_PERMANENT == 0 {
			continue
		}
		kept = append(kept, n)
	}
	ns.neighs = kept
}

// neighChangeAddr is neigh_changeaddr: a new MAC address flushes every
// neighbour of the link, permanent ones too (not its FDB).
func (ns *namespace) neighChangeAddr(l *link) {
	kept := ns.neighs[:0]
	for _, n := range ns.neighs {
		if n.link == l.index && n.family != abi.AF_BRIDGE {
			continue
		}
		kept = append(kept, n)
	}
	ns.neighs = kept
}

type neighMode int

const (
	neighAdd    neighMode = iota + 1 // NLM_F_CREATE|NLM_F_EXCL
	neighSet                         // NLM_F_CREATE|NLM_F_REPLACE
	neighAppend                      // NLM_F_CREATE|NLM_F_APPEND
)

// NeighAdd adds a neighbour or FDB entry (Family AF_BRIDGE); EEXIST if it
// exists.
func (k *Kernel) NeighAdd(n *netlink.Neigh) error { return k.neighModify("NeighAdd", n, neighAdd) }

// NeighSet adds or replaces a neighbour or FDB entry.
func (k *Kernel) NeighSet(n *netlink.Neigh) error { return k.neighModify("NeighSet", n, neighSet) }

// NeighAppend adds a neighbour or FDB entry; on an FDB entry with the
// all-zeros (or a multicast) MAC it adds one more remote.
func (k *Kernel) NeighAppend(n *netlink.Neigh) error {
	return k.neighModify("NeighAppend", n, neighAppend)
}

func neighFamily(n *netlink.Neigh) int {
	if n.Family > 0 {
		return n.Family
	}
	if n.IP.To4() != nil {
		return abi.AF_INET
	}
	return abi.AF_INET6
}

func (k *Kernel) neighModify(op string, n *netlink.Neigh, mode neighMode) error {
	if n == nil {
		return abi.EINVAL
	}
	return k.do(op, func() error {
		fam := neighFamily(n)
		if fam == abi.AF_BRIDGE {
			return k.ns.fdbModify(n, mode)
		}
		return k.ns.arpModify(n, fam, mode)
	})
}

func (ns *namespace) arpModify(n *netlink.Neigh, fam int, mode neighMode) error {
	if fam != abi.AF_INET && fam != abi.AF_INET6 {
		return abi.EAFNOSUPPORT
	}
	if n.LinkIndex == 0 {
		return abi.EINVAL
	}
	l := ns.links[n.LinkIndex]
	if l == nil {
		return abi.ENODEV
	}
	ip, ok := toAddr(n.IP)
	if !ok || ip.Is4() != (fam == abi.AF_INET) {
		return abi.EINVAL
	}
	if n.HardwareAddr != nil && len(n.HardwareAddr) < 6 && l.kind != kindLoopback {
		return abi.EINVAL
	}
	for _, o := range ns.neighs {
		if o.family != fam || o.link != l.index || o.ip != ip {
			continue
		}
		switch mode {
		case neighAdd:
			return abi.EEXIST
		case neighAppend:
			if n.HardwareAddr != nil && !bytes.Equal(o.mac, n.HardwareAddr) && o.state&nudValid != 0 {
				return nil // no override: the kernel keeps the valid entry
			}
		}
		if n.HardwareAddr != nil {
			o.mac = append(net.HardwareAddr(nil), n.HardwareAddr...)
		}
		o.state, o.flags = n.State, n.Flags&^abi.NTF_SELF
		return nil
	}
	nn := &neigh{family: fam, link: l.index, ip: ip, state: n.State, flags: n.Flags &^ abi.NTF_SELF,
		mac: append(net.HardwareAddr(nil), n.HardwareAddr...), typ: ns.addrType(ip)}
	ns.m.seq++
	nn.seq = uint64(ns.m.seq)
	ns.neighs = append(ns.neighs, nn)
	return nil
}

// addrType is inet_addr_type for a neighbour's ndm_type: looked up in the
// local table; RTN_BROADCAST when that table does not exist yet.
func (ns *namespace) addrType(ip netip.Addr) int {
	if ip.Is6() {
		return abi.RTN_UNICAST
	}
	if ip.IsUnspecified() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return abi.RTN_BROADCAST
	}
	if ip.IsMulticast() {
		return abi.RTN_MULTICAST
	}
	haveLocal := false
	for _, r := range ns.routes {
		if r.table == tableLocal && r.is4() {
			haveLocal = true
			break
		}
	}
	if !haveLocal {
		return abi.RTN_BROADCAST
	}
	var best *route
	for _, r := range ns.routes {
		if r.table == tableLocal && r.dst.Contains(ip) && (best == nil || r.dst.Bits() > best.dst.Bits()) {
			best = r
		}
	}
	if best != nil {
		return best.typ
	}
	return abi.RTN_UNICAST
}

func isZeroOrMulticast(mac net.HardwareAddr) bool {
	return allZero(mac) || (len(mac) > 0 && mac[0]&1 != 0)
}

func (ns *namespace) fdbModify(n *netlink.Neigh, mode neighMode) error {
	if n.LinkIndex == 0 {
		return abi.EINVAL
	}
	l := ns.links[n.LinkIndex]
	if l == nil {
		return abi.ENODEV
	}
	if len(n.HardwareAddr) != 6 {
		return abi.EINVAL
	}
	if l.kind != kindVxlan {
		// ndo_dflt_fdb_add: the address joins the device's unicast or
		// multicast list; no remote.
		for _, o := range ns.neighs {
			if o.family == abi.AF_BRIDGE && o.link == l.index && bytes.Equal(o.mac, n.HardwareAddr) {
				if mode == neighAdd {
					return abi.EEXIST
				}
				return nil
			}
		}
		ns.addNeigh(&neigh{family: abi.AF_BRIDGE, link: l.index, mac: append(net.HardwareAddr(nil), n.HardwareAddr...),
			state: abi.NUD_PERMANENT, flags: abi.NTF_SELF})
		return nil
	}
	ip, ok := toAddr(n.IP)
	if !ok {
		return abi.EAFNOSUPPORT
	}
	if ip.Is6() != (l.vx.headroom() == vxlanHeadroom6) {
		return abi.EAFNOSUPPORT // the remote must be of the device's family
	}
	if n.State&(abi.NUD_PERMANENT|abi.NUD_REACHABLE) == 0 {
		return abi.EINVAL
	}
	var entry []*neigh
	for _, o := range ns.neighs {
		if o.family == abi.AF_BRIDGE && o.link == l.index && bytes.Equal(o.mac, n.HardwareAddr) {
			entry = append(entry, o)
		}
	}
	flags := abi.NTF_SELF | (n.Flags & abi.NTF_ROUTER)
	if len(entry) > 0 {
		switch mode {
		case neighAdd:
			return abi.EEXIST
		case neighSet:
			if isZeroOrMulticast(n.HardwareAddr) {
				return abi.EOPNOTSUPP
			}
			entry[0].ip = ip
		case neighAppend:
			if isZeroOrMulticast(n.HardwareAddr) {
				have := false
				for _, e := range entry {
					if e.ip == ip {
						have = true
					}
				}
				if !have {
					ns.addNeigh(&neigh{family: abi.AF_BRIDGE, link: l.index, ip: ip,
						mac: append(net.HardwareAddr(nil), n.HardwareAddr...), state: entry[0].state,
						flags: entry[0].flags, typ: abi.RTN_UNICAST})
				}
			}
		}
		for _, e := range ns.neighs {
			if e.family == abi.AF_BRIDGE && e.link == l.index && bytes.Equal(e.mac, n.HardwareAddr) {
				e.state, e.flags = n.State, flags
			}
		}
		return nil
	}
	ns.addNeigh(&neigh{family: abi.AF_BRIDGE, link: l.index, ip: ip, mac: append(net.HardwareAddr(nil), n.HardwareAddr...),
		state: n.State, flags: flags, typ: abi.RTN_UNICAST})
	return nil
}

func (ns *namespace) addNeigh(n *neigh) {
	ns.m.seq++
	n.seq = uint64(ns.m.seq)
	ns.neighs = append(ns.neighs, n)
}

// NeighDel deletes a neighbour (ENOENT if missing) or an FDB remote
// (Family AF_BRIDGE: the entry must exist, ENOENT otherwise; a remote IP
// that the entry does not have is a silent no-op, as on the kernel).
func (k *Kernel) NeighDel(n *netlink.Neigh) error {
	if n == nil {
		return abi.EINVAL
	}
	return k.do("NeighDel", func() error {
		ns := k.ns
		fam := neighFamily(n)
		if n.LinkIndex == 0 {
			return abi.EINVAL
		}
		l := ns.links[n.LinkIndex]
		if l == nil {
			return abi.ENODEV
		}
		if fam == abi.AF_BRIDGE {
			if len(n.HardwareAddr) != 6 {
				return abi.EINVAL
			}
			var ip netip.Addr
			if l.kind == kindVxlan {
				a, ok := toAddr(n.IP)
				if !ok {
					return abi.EAFNOSUPPORT
				}
				ip = a
			}
			found := false
			kept := ns.neighs[:0]
			for _, o := range ns.neighs {
				if o.family == abi.AF_BRIDGE && o.link == l.index && bytes.Equal(o.mac, n.HardwareAddr) {
					found = true
					if l.kind != kindVxlan || ip.IsUnspecified() || o.ip == ip {
						continue
					}
				}
				kept = append(kept, o)
			}
			ns.neighs = kept
			if !found {
				return abi.ENOENT
			}
			return nil
		}
		ip, ok := toAddr(n.IP)
		if !ok {
			return abi.EINVAL
		}
		for i, o := range ns.neighs {
			if o.family == fam && o.link == l.index && o.ip == ip {
				ns.neighs = append(ns.neighs[:i:i], ns.neighs[i+1:]...)
				return nil
			}
		}
		return abi.ENOENT
	})
}

// NeighList lists neighbours of linkIndex (0: all links) and family (0:
// all; FamilyV4, FamilyV6, or FamilyBridge for the FDB).
// Entries come sorted by family, link, (FDB: MAC,) address; the kernel's
// order is its hash order.
func (k *Kernel) NeighList(linkIndex, family int) ([]netlink.Neigh, error) {
	var out []netlink.Neigh
	err := k.read("NeighList", func() error {
		for _, n := range k.ns.sortedNeighs() {
			if linkIndex != 0 && n.link != linkIndex {
				continue
			}
			if family != 0 && n.family != family {
				continue
			}
			if family == 0 && n.family == abi.AF_BRIDGE {
				continue // a dump of AF_UNSPEC covers the neighbour tables only
			}
			out = append(out, n.view())
		}
		return nil
	})
	return out, err
}
