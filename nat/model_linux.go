//go:build linux

package nat

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// family is what differs between the ip and the ip6 table. Plain values,
// built by fam4 and fam6.
type family struct {
	tf       nftables.TableFamily
	name     string // "ip", "ip6": the table family and the payload keyword
	proto    uint32 // NFPROTO_IPV4, NFPROTO_IPV6
	addrLen  int
	saddrOff uint32
	daddrOff uint32
	addrType nftables.SetDatatype
	typeName string // "ipv4_addr", "ipv6_addr"
}

func fam4() family {
	return family{tf: nftables.TableFamilyIPv4, name: "ip", proto: unix.NFPROTO_IPV4, addrLen: 4,
		saddrOff: 12, daddrOff: 16, addrType: nftables.TypeIPAddr, typeName: "ipv4_addr"}
}

func fam6() family {
	return family{tf: nftables.TableFamilyIPv6, name: "ip6", proto: unix.NFPROTO_IPV6, addrLen: 16,
		saddrOff: 8, daddrOff: 24, addrType: nftables.TypeIP6Addr, typeName: "ipv6_addr"}
}

// families lists the families tabby manages, in table order.
func families() []family { return []family{fam4(), fam6()} }

// of reports whether a belongs to f (an IPv4-mapped IPv6 address belongs
// to neither: it is rejected).
func (f family) of(a netip.Addr) bool {
	if f.addrLen == 4 {
		return a.Is4()
	}
	return a.Is6() && !a.Is4In6()
}

// maxAddr is the family's highest address.
func (f family) maxAddr() netip.Addr {
	b := bytes.Repeat([]byte{0xff}, f.addrLen)
	a, _ := netip.AddrFromSlice(b)
	return a
}

// setKind is the key type of a set. The zero value is invalid.
type setKind int

const (
	kindPrefix     setKind = iota + 1 // ipv4_addr / ipv6_addr, flags interval
	kindAddr                          // ipv4_addr / ipv6_addr
	kindIfname                        // ifname
	kindIfnameAddr                    // ifname . ipv4_addr / ifname . ipv6_addr
)

func (k setKind) set(f family, t *nftables.Table, name string) *nftables.Set {
	s := &nftables.Set{Table: t, Name: name}
	switch k {
	case kindPrefix:
		s.KeyType, s.Interval = f.addrType, true
	case kindAddr:
		s.KeyType = f.addrType
	case kindIfname:
		s.KeyType = nftables.TypeIFName
	case kindIfnameAddr:
		s.KeyType, s.Concatenation = nftables.MustConcatSetType(nftables.TypeIFName, f.addrType), true
	}
	return s
}

// matches reports whether a set read from the kernel has kind k.
func (k setKind) matches(f family, s *nftables.Set) bool {
	want := k.set(f, nil, s.Name)
	return s.KeyType.GetNFTMagic() == want.KeyType.GetNFTMagic() &&
		s.KeyType.Bytes == want.KeyType.Bytes &&
		s.Interval == want.Interval && !s.IsMap && !s.Constant && !s.Anonymous && !s.HasTimeout
}

func (k setKind) typeText(f family) string {
	switch k {
	case kindPrefix, kindAddr:
		return f.typeName
	case kindIfname:
		return "ifname"
	case kindIfnameAddr:
		return "ifname . " + f.typeName
	}
	return "invalid"
}

// keyLen is the length of one element key of kind k.
func (k setKind) keyLen(f family) int {
	switch k {
	case kindPrefix, kindAddr:
		return f.addrLen
	case kindIfname:
		return 16
	case kindIfnameAddr:
		return 16 + f.addrLen
	}
	return 0
}

// item is one logical member of a set: an address, an interface name, a
// pair, or an interval (two kernel elements: start, and end+1 flagged
// IntervalEnd; an interval reaching the family's last address has no end
// element).
type item struct {
	id    string // key bytes (+ end bytes): unique within a set, sorts numerically
	elems []nftables.SetElement
	text  string
}

type setModel struct {
	name  string
	kind  setKind
	items map[string]item
}

type ruleModel struct {
	exprs   func(sets map[string]*nftables.Set) []expr.Any
	text    string // exprText of the expressions, in nft syntax
	comment string // "tabby:<name>:<hash of text>"
}

type chainModel struct {
	name  string
	typ   nftables.ChainType
	hook  nftables.ChainHook
	prio  nftables.ChainPriority
	rules []ruleModel
}

func (c *chainModel) chain(t *nftables.Table) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name: c.name, Table: t, Type: c.typ,
		Hooknum: nftables.ChainHookRef(c.hook), Priority: nftables.ChainPriorityRef(c.prio),
		Policy: &accept,
	}
}

// matches reports whether a chain read from the kernel has c's definition.
func (c *chainModel) matches(k *nftables.Chain) bool {
	return k.Type == c.typ && k.Hooknum != nil && *k.Hooknum == c.hook &&
		k.Priority != nil && *k.Priority == c.prio &&
		(k.Policy == nil || *k.Policy == nftables.ChainPolicyAccept)
}

// ruleset is the complete content of one table (one family).
type ruleset struct {
	fam    family
	table  string
	sets   []*setModel // sorted by name
	chains []*chainModel
}

// plan is the desired content of every table: one ruleset per family that
// has a pool, IPv4 first.
type plan struct {
	tables []*ruleset
}

func (p *plan) render() string {
	var b strings.Builder
	for i, r := range p.tables {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(r.render())
	}
	return b.String()
}

func (r *ruleset) set(name string) *setModel {
	for _, s := range r.sets {
		if s.name == name {
			return s
		}
	}
	return nil
}

// lastOf returns the last address of p.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func prefixItem(p netip.Prefix) item {
	return rangeItem(p.Addr(), lastOf(p))
}

// rangeItem is the interval [start, last]; start and last are of one
// family.
func rangeItem(start, last netip.Addr) item {
	sk := start.AsSlice()
	it := item{elems: []nftables.SetElement{{Key: sk}}}
	it.id = string(sk)
	if end := last.Next(); end.IsValid() {
		ek := end.AsSlice()
		it.elems = append(it.elems, nftables.SetElement{Key: ek, IntervalEnd: true})
		it.id += string(ek)
	}
	it.text = rangeText(start, last)
	return it
}

// rangeText renders [first, last] as a prefix when it is one.
func rangeText(first, last netip.Addr) string {
	for bits := 0; bits <= first.BitLen(); bits++ {
		p := netip.PrefixFrom(first, bits)
		if p.Masked().Addr() == first && lastOf(p) == last {
			return p.String()
		}
	}
	return first.String() + "-" + last.String()
}

func addrItem(a netip.Addr) item {
	k := a.AsSlice()
	return item{id: string(k), elems: []nftables.SetElement{{Key: k}}, text: a.String()}
}

func ifnameKey(name string) []byte {
	k := make([]byte, 16)
	copy(k, name)
	return k
}

func ifnameText(k []byte) string {
	return fmt.Sprintf("%q", string(bytes.TrimRight(k, "\x00")))
}

func ifnameItem(name string) item {
	k := ifnameKey(name)
	return item{id: string(k), elems: []nftables.SetElement{{Key: k}}, text: ifnameText(k)}
}

func ifnameAddrItem(name string, a netip.Addr) item {
	k := append(ifnameKey(name), a.AsSlice()...)
	return item{id: string(k), elems: []nftables.SetElement{{Key: k}}, text: ifnameText(k[:16]) + " . " + a.String()}
}

func addrFrom(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}

// itemsFromKernel groups the elements of a kernel set into items. It fails
// on elements that tabby cannot have written (wrong length, a dangling
// interval end), so that Sync rebuilds the table.
func itemsFromKernel(f family, kind setKind, elems []nftables.SetElement) (map[string]item, error) {
	out := make(map[string]item, len(elems))
	keyLen := kind.keyLen(f)
	for _, e := range elems {
		if len(e.Key) != keyLen {
			return nil, fmt.Errorf("set element key of %d bytes, want %d", len(e.Key), keyLen)
		}
	}
	switch kind {
	case kindAddr:
		for _, e := range elems {
			it := addrItem(addrFrom(e.Key))
			out[it.id] = it
		}
	case kindIfname:
		for _, e := range elems {
			it := item{id: string(e.Key), elems: []nftables.SetElement{{Key: e.Key}}, text: ifnameText(e.Key)}
			out[it.id] = it
		}
	case kindIfnameAddr:
		for _, e := range elems {
			it := ifnameAddrItem(string(bytes.TrimRight(e.Key[:16], "\x00")), addrFrom(e.Key[16:]))
			if it.id != string(e.Key) {
				return nil, fmt.Errorf("interface name with bytes after NUL: %q", e.Key[:16])
			}
			out[it.id] = it
		}
	case kindPrefix:
		es := slices.Clone(elems)
		// Ascending keys; at equal keys an interval end (closing the
		// previous interval) comes before a start.
		sort.SliceStable(es, func(i, j int) bool {
			if c := bytes.Compare(es[i].Key, es[j].Key); c != 0 {
				return c < 0
			}
			return es[i].IntervalEnd && !es[j].IntervalEnd
		})
		var open []byte
		for _, e := range es {
			switch {
			case !e.IntervalEnd && open == nil:
				open = e.Key
			case e.IntervalEnd && open != nil:
				if bytes.Compare(e.Key, open) <= 0 {
					return nil, fmt.Errorf("empty interval at %v", e.Key)
				}
				it := rangeItem(addrFrom(open), addrFrom(e.Key).Prev())
				out[it.id] = it
				open = nil
			case e.IntervalEnd && open == nil:
				// A lone interval end at the zero address is what some
				// nft versions write as a sentinel; anything else is
				// foreign.
				if addrFrom(e.Key) != netip.IPv4Unspecified() && addrFrom(e.Key) != netip.IPv6Unspecified() {
					return nil, fmt.Errorf("interval end %v without a start", e.Key)
				}
			default:
				return nil, fmt.Errorf("interval start %v inside an open interval", e.Key)
			}
		}
		if open != nil {
			it := rangeItem(addrFrom(open), f.maxAddr())
			out[it.id] = it
		}
	default:
		return nil, fmt.Errorf("invalid set kind %d", kind)
	}
	return out, nil
}

func sortedItems(m map[string]item) []item {
	out := make([]item, 0, len(m))
	for _, it := range m {
		out = append(out, it)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// ---------------------------------------------------------------- build

// ---------------------------------------------------------------- build

// build validates d and returns one ruleset per family that has a pool.
func build(cfg Config, d Desired) (*plan, error) {
	if len(d.Pools) == 0 {
		return nil, &ValidationError{Field: "Pools", Value: "[]", Err: ErrNoPools}
	}
	for i, p := range d.Pools {
		if err := checkPrefix(fmt.Sprintf("Pools[%d].CIDR", i), p.CIDR); err != nil {
			return nil, err
		}
	}
	has := func(f family) bool {
		return slices.ContainsFunc(d.Pools, func(p Pool) bool { return f.of(p.CIDR.Addr()) })
	}
	// Every other address must be valid and of a family that has a pool
	// (there is no table for the other family).
	check := func(field string, a netip.Addr) error {
		if !a.IsValid() {
			return &ValidationError{Field: field, Value: a.String(), Err: ErrInvalidPrefix}
		}
		if a.Is4In6() || !(has(fam4()) && a.Is4() || has(fam6()) && a.Is6()) {
			return &ValidationError{Field: field, Value: a.String() + " (no pool of its family)", Err: ErrWrongFamily}
		}
		return nil
	}
	for i, p := range d.ExcludeDestinations {
		field := fmt.Sprintf("ExcludeDestinations[%d]", i)
		if err := checkPrefix(field, p); err != nil {
			return nil, err
		}
		if err := check(field, p.Addr()); err != nil {
			return nil, err
		}
	}
	if d.SNATTo.IsValid() {
		if err := check("SNATTo", d.SNATTo); err != nil {
			return nil, err
		}
		if !d.SNATTo.Is4() {
			return nil, &ValidationError{Field: "SNATTo", Value: d.SNATTo.String() + " (IPv6: use SNATTo6)", Err: ErrWrongFamily}
		}
	}
	if d.SNATTo6.IsValid() {
		if err := check("SNATTo6", d.SNATTo6); err != nil {
			return nil, err
		}
		if d.SNATTo6.Is4() {
			return nil, &ValidationError{Field: "SNATTo6", Value: d.SNATTo6.String() + " (IPv4: use SNATTo)", Err: ErrWrongFamily}
		}
	}
	if !cfg.DisableVXLANGuard {
		for i, a := range d.VXLANPeers {
			if err := check(fmt.Sprintf("VXLANPeers[%d]", i), a); err != nil {
				return nil, err
			}
		}
	}
	if !cfg.DisableWorkloadGuard {
		for i, w := range d.Workloads {
			if w.Interface == "" || len(w.Interface) > 15 || strings.ContainsRune(w.Interface, 0) {
				return nil, &ValidationError{Field: fmt.Sprintf("Workloads[%d].Interface", i), Value: w.Interface, Err: ErrInvalidInterface}
			}
			for j, a := range w.Addrs {
				if err := check(fmt.Sprintf("Workloads[%d].Addrs[%d]", i, j), a); err != nil {
					return nil, err
				}
			}
		}
	}
	p := &plan{}
	for _, f := range families() {
		if has(f) {
			p.tables = append(p.tables, buildFamily(cfg, d, f))
		}
	}
	return p, nil
}

// buildFamily is the table of family f for d, already validated.
func buildFamily(cfg Config, d Desired, f family) *ruleset {
	var natPools, allPools, exclude []netip.Prefix
	for _, p := range d.Pools {
		if !f.of(p.CIDR.Addr()) {
			continue
		}
		allPools = append(allPools, p.CIDR)
		if p.NATOutgoing {
			natPools = append(natPools, p.CIDR)
		}
	}
	for _, p := range d.ExcludeDestinations {
		if f.of(p.Addr()) {
			exclude = append(exclude, p)
		}
	}
	rs := &ruleset{fam: f, table: cfg.Table}
	add := func(name string, kind setKind, items []item) {
		s := &setModel{name: name, kind: kind, items: make(map[string]item, len(items))}
		for _, it := range items {
			s.items[it.id] = it
		}
		rs.sets = append(rs.sets, s)
	}
	add(SetAllPools, kindPrefix, prefixItems(allPools))
	add(SetNATPools, kindPrefix, prefixItems(natPools))
	add(SetNATExclude, kindPrefix, prefixItems(exclude))

	if !cfg.DisableVXLANGuard {
		var peers []item
		for _, a := range d.VXLANPeers {
			if f.of(a) {
				peers = append(peers, addrItem(a))
			}
		}
		add(SetVXLANPeers, kindAddr, peers)
	}
	if !cfg.DisableWorkloadGuard {
		// Every workload interface is guarded in both tables: a pod with
		// no address of a family may send nothing of that family.
		var ifaces, pairs []item
		for _, w := range d.Workloads {
			ifaces = append(ifaces, ifnameItem(w.Interface))
			for _, a := range w.Addrs {
				if f.of(a) {
					pairs = append(pairs, ifnameAddrItem(w.Interface, a))
				}
			}
		}
		add(SetWorkloadIfaces, kindIfname, ifaces)
		add(SetWorkloadAddrs, kindIfnameAddr, pairs)
	}
	sort.Slice(rs.sets, func(i, j int) bool { return rs.sets[i].name < rs.sets[j].name })

	snat, tunnel := d.SNATTo, cfg.TunnelInterface
	if f.addrLen == 16 {
		snat, tunnel = d.SNATTo6, cfg.TunnelInterface6
	}
	rs.chains = append(rs.chains, &chainModel{
		name: ChainPostrouting, typ: nftables.ChainTypeNAT,
		hook: *nftables.ChainHookPostrouting, prio: *nftables.ChainPriorityNATSource,
		rules: natRules(cfg, f, tunnel, snat),
	}, &chainModel{
		name: ChainPortGuard, typ: nftables.ChainTypeFilter,
		hook: *nftables.ChainHookPostrouting, prio: *nftables.ChainPriorityNATSource + 1,
		rules: portGuardRules(cfg.VXLANPort, cfg.PortGuardMark),
	})
	if !cfg.DisableVXLANGuard {
		rs.chains = append(rs.chains, &chainModel{
			name: ChainInput, typ: nftables.ChainTypeFilter,
			hook: *nftables.ChainHookInput, prio: *nftables.ChainPriorityFilter,
			rules: []ruleModel{vxlanGuardRule(f, cfg.VXLANPort)},
		})
	}
	if !cfg.DisableWorkloadGuard {
		rs.chains = append(rs.chains, &chainModel{
			name: ChainPrerouting, typ: nftables.ChainTypeFilter,
			hook: *nftables.ChainHookPrerouting, prio: *nftables.ChainPriorityRaw,
			rules: []ruleModel{workloadGuardRule(f)},
		})
	}
	return rs
}

func checkPrefix(field string, p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return &ValidationError{Field: field, Value: p.String(), Err: ErrInvalidPrefix}
	case p.Addr().Is4In6():
		return &ValidationError{Field: field, Value: p.String() + " (IPv4-mapped)", Err: ErrWrongFamily}
	case p.Masked() != p:
		return &ValidationError{Field: field, Value: p.String() + " (host bits set)", Err: ErrInvalidPrefix}
	}
	return nil
}

// prefixItems drops prefixes contained in another one (the kernel rejects
// overlapping intervals) and returns one item per remaining prefix.
func prefixItems(ps []netip.Prefix) []item {
	ps = slices.Clone(ps)
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Bits() != ps[j].Bits() {
			return ps[i].Bits() < ps[j].Bits()
		}
		return ps[i].Addr().Less(ps[j].Addr())
	})
	var kept []netip.Prefix
	var out []item
	for _, p := range ps {
		if slices.ContainsFunc(kept, func(k netip.Prefix) bool { return k.Contains(p.Addr()) }) {
			continue
		}
		kept = append(kept, p)
		out = append(out, prefixItem(p))
	}
	return out
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func loadSaddr(f family, reg uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddrOff, Len: uint32(f.addrLen)}
}

func loadDaddr(f family, reg uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: uint32(f.addrLen)}
}

func lookup(sets map[string]*nftables.Set, name string, reg uint32, invert bool) *expr.Lookup {
	s := sets[name]
	return &expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID, Invert: invert}
}

// natMatch: ip saddr @nat_pools ip daddr != @all_pools ip daddr != @nat_exclude
// meta mark set meta mark | <mark>
func natMatch(f family, sets map[string]*nftables.Set, mark uint32) []expr.Any {
	return []expr.Any{
		loadSaddr(f, 1), lookup(sets, SetNATPools, 1, false),
		loadDaddr(f, 1), lookup(sets, SetAllPools, 1, true),
		lookup(sets, SetNATExclude, 1, true),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(^mark), Xor: ne32(mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
	}
}

// ne32 encodes v as the meta and ct expressions load it: host byte order.
func ne32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func natRules(cfg Config, f family, tunnel string, snat netip.Addr) []ruleModel {
	var rules []ruleModel
	if tunnel != "" {
		rules = append(rules, tunnelRule(tunnel, cfg.PortGuardMark))
	}
	return append(rules, poolRules(cfg, f, snat)...)
}

const rtnLocal = 2 // RTN_LOCAL

// tunnelRule: oifname "<tunnel>" fib saddr . oif type != local
// fib saddr type local meta mark set meta mark | <mark> masquerade fully-random
// (the same expressions in both families).
func tunnelRule(ifname string, mark uint32) ruleModel {
	return newRule("nat-tunnel", func(map[string]*nftables.Set) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameKey(ifname)},
			&expr.Fib{Register: 1, FlagSADDR: true, FlagOIF: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ne32(rtnLocal)},
			&expr.Fib{Register: 1, FlagSADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(rtnLocal)},
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(^mark), Xor: ne32(mark)},
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
			&expr.Masq{FullyRandom: true},
		}
	})
}

func poolRules(cfg Config, f family, snat netip.Addr) []ruleModel {
	if !snat.IsValid() {
		// Masquerade: one rule, fully random ports for every protocol.
		// google/nftables v0.3.0 cannot express "masquerade to :lo-hi
		// fully-random": its masq expression drops the flags, and with
		// them NF_NAT_RANGE_PROTO_SPECIFIED, whenever a port range is
		// given, and the kernel then ignores the range. The VXLAN port is
		// kept off translated flows by portGuardRule instead.
		return []ruleModel{newRule("nat", func(sets map[string]*nftables.Set) []expr.Any {
			return append(natMatch(f, sets, cfg.PortGuardMark), &expr.Masq{FullyRandom: true})
		})}
	}
	// SNAT to a fixed address: the nat expression carries both a port range
	// and flags, so UDP gets a range without the VXLAN port.
	lo, hi := SNATPortRange(cfg.VXLANPort)
	a := snat.AsSlice()
	udp := newRule("nat-udp", func(sets map[string]*nftables.Set) []expr.Any {
		return append(natMatch(f, sets, cfg.PortGuardMark),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Immediate{Register: 1, Data: a},
			&expr.Immediate{Register: 2, Data: be16(lo)},
			&expr.Immediate{Register: 3, Data: be16(hi)},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: f.proto,
				RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: 2, RegProtoMax: 3,
				FullyRandom: true, Specified: true})
	})
	other := newRule("nat", func(sets map[string]*nftables.Set) []expr.Any {
		return append(natMatch(f, sets, cfg.PortGuardMark),
			&expr.Immediate{Register: 1, Data: a},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: f.proto,
				RegAddrMin: 1, RegAddrMax: 1, FullyRandom: true})
	})
	return []ruleModel{udp, other}
}

// portGuardRules run after source NAT. The first drops a UDP packet that
// tabby's NAT rule marked (it is the packet that created the translation)
// if the translation put it on the VXLAN source port: its conntrack entry is
// not yet confirmed and dies with it, so the flow's next packet gets a fresh
// random port. With fully random ports that is one datagram in about 64,500
// new UDP flows. The second clears the mark bit again.
func portGuardRules(port uint16, mark uint32) []ruleModel {
	marked := func() []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(mark), Xor: ne32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ne32(0)},
		}
	}
	drop := newRule("nat-port-guard", func(map[string]*nftables.Set) []expr.Any {
		return append(marked(),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(port)},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		)
	})
	clear := newRule("nat-mark-clear", func(map[string]*nftables.Set) []expr.Any {
		return append(marked(),
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(^mark), Xor: ne32(0)},
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
		)
	})
	return []ruleModel{drop, clear}
}

func vxlanGuardRule(f family, port uint16) ruleModel {
	return newRule("vxlan-guard", func(sets map[string]*nftables.Set) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(port)},
			loadSaddr(f, 1), lookup(sets, SetVXLANPeers, 1, true),
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}
	})
}

// Registers for the concatenation iifname . ip saddr: the 16-byte name fills
// NFT_REG32_00..03 (the same storage as NFT_REG_1), the address NFT_REG32_04
// (..07 for IPv6).
const (
	regConcat0 = unix.NFT_REG32_00
	regConcat4 = unix.NFT_REG32_04
)

// workloadGuardRule drops what a workload interface sends from an address
// that is not the workload's. In IPv6 the unspecified source (duplicate
// address detection) and link-local sources (neighbour discovery, router
// solicitation, MLD) are exempt: the pod needs them to resolve its gateway
// (see the proxyarp package), and the kernel never forwards them off the
// link.
func workloadGuardRule(f family) ruleModel {
	return newRule("workload-guard", func(sets map[string]*nftables.Set) []expr.Any {
		es := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			lookup(sets, SetWorkloadIfaces, 1, false),
		}
		if f.addrLen == 16 {
			zero := make([]byte, 16)
			ll := netip.MustParseAddr("fe80::").AsSlice()
			mask := netip.MustParseAddr("ffc0::").AsSlice()
			es = append(es,
				loadSaddr(f, 1),
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero},
				loadSaddr(f, 1),
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16, Mask: mask, Xor: zero},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ll},
			)
		}
		return append(es,
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regConcat0},
			loadSaddr(f, regConcat4),
			lookup(sets, SetWorkloadAddrs, regConcat0, true),
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		)
	})
}

// newRule names a rule by a comment carrying a hash of its rendered text, so
// that Sync recognises its own rules, and any change of them, by comment.
func newRule(name string, exprs func(map[string]*nftables.Set) []expr.Any) ruleModel {
	sets := map[string]*nftables.Set{}
	for _, n := range []string{SetNATPools, SetAllPools, SetNATExclude, SetVXLANPeers, SetWorkloadIfaces, SetWorkloadAddrs} {
		sets[n] = &nftables.Set{Name: n}
	}
	text := exprText(exprs(sets))
	h := fnv.New32a()
	h.Write([]byte(text))
	return ruleModel{exprs: exprs, text: text, comment: fmt.Sprintf("tabby:%s:%08x", name, h.Sum32())}
}

func ruleComment(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

// ---------------------------------------------------------------- render

func (r *ruleset) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", r.fam.name, r.table)
	for _, s := range r.sets {
		renderSet(&b, r.fam, s.name, s.kind, s.items)
	}
	for i, c := range r.chains {
		if i > 0 || len(r.sets) > 0 {
			b.WriteString("\n")
		}
		var lines []string
		for _, rm := range c.rules {
			lines = append(lines, rm.text+fmt.Sprintf(" comment %q", rm.comment))
		}
		renderChain(&b, c.name, c.typ, c.hook, c.prio, lines)
	}
	b.WriteString("}\n")
	return b.String()
}

func renderSet(b *strings.Builder, f family, name string, kind setKind, items map[string]item) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n", name, kind.typeText(f))
	if kind == kindPrefix {
		b.WriteString("\t\tflags interval\n")
	}
	if len(items) > 0 {
		b.WriteString("\t\telements = { ")
		for i, it := range sortedItems(items) {
			if i > 0 {
				b.WriteString(",\n\t\t\t     ")
			}
			b.WriteString(it.text)
		}
		b.WriteString(" }\n")
	}
	b.WriteString("\t}\n")
}

func renderChain(b *strings.Builder, name string, typ nftables.ChainType, hook nftables.ChainHook, prio nftables.ChainPriority, rules []string) {
	fmt.Fprintf(b, "\tchain %s {\n\t\ttype %s hook %s priority %s; policy accept;\n", name, typ, hookText(hook), prioText(prio))
	for _, r := range rules {
		fmt.Fprintf(b, "\t\t%s\n", r)
	}
	b.WriteString("\t}\n")
}

func hookText(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprintf("hook%d", h)
}

func prioText(p nftables.ChainPriority) string {
	switch p {
	case *nftables.ChainPriorityRaw:
		return "raw"
	case *nftables.ChainPriorityFilter:
		return "filter"
	case *nftables.ChainPriorityNATSource:
		return "srcnat"
	case *nftables.ChainPriorityNATSource + 1:
		return "srcnat + 1"
	case *nftables.ChainPriorityNATDest:
		return "dstnat"
	}
	return fmt.Sprint(int32(p))
}

func commentData(c string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, c)
}
