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

// setKind is the key type of a set. The zero value is invalid.
type setKind int

const (
	kindPrefix     setKind = iota + 1 // ipv4_addr, flags interval
	kindAddr                          // ipv4_addr
	kindIfname                        // ifname
	kindIfnameAddr                    // ifname . ipv4_addr
)

func ifnameAddrType() nftables.SetDatatype {
	return nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr)
}

func (k setKind) set(t *nftables.Table, name string) *nftables.Set {
	s := &nftables.Set{Table: t, Name: name}
	switch k {
	case kindPrefix:
		s.KeyType, s.Interval = nftables.TypeIPAddr, true
	case kindAddr:
		s.KeyType = nftables.TypeIPAddr
	case kindIfname:
		s.KeyType = nftables.TypeIFName
	case kindIfnameAddr:
		s.KeyType, s.Concatenation = ifnameAddrType(), true
	}
	return s
}

// matches reports whether a set read from the kernel has kind k.
func (k setKind) matches(s *nftables.Set) bool {
	want := k.set(nil, s.Name)
	return s.KeyType.GetNFTMagic() == want.KeyType.GetNFTMagic() &&
		s.KeyType.Bytes == want.KeyType.Bytes &&
		s.Interval == want.Interval && !s.IsMap && !s.Constant && !s.Anonymous && !s.HasTimeout
}

func (k setKind) typeText() string {
	switch k {
	case kindPrefix, kindAddr:
		return "ipv4_addr"
	case kindIfname:
		return "ifname"
	case kindIfnameAddr:
		return "ifname . ipv4_addr"
	}
	return "invalid"
}

// item is one logical member of a set: an address, an interface name, a
// pair, or an interval (two kernel elements: start, and end+1 flagged
// IntervalEnd; an interval reaching 255.255.255.255 has no end element).
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

// ruleset is the complete content of the table.
type ruleset struct {
	table  string
	sets   []*setModel // sorted by name
	chains []*chainModel
}

func (r *ruleset) set(name string) *setModel {
	for _, s := range r.sets {
		if s.name == name {
			return s
		}
	}
	return nil
}

func prefixItem(p netip.Prefix) item {
	start := p.Addr().As4()
	last := binary.BigEndian.Uint32(start[:]) | (1<<(32-p.Bits()) - 1)
	if p.Bits() == 0 {
		last = ^uint32(0)
	}
	return rangeItem(start, last)
}

func rangeItem(start [4]byte, last uint32) item {
	it := item{elems: []nftables.SetElement{{Key: start[:]}}}
	it.id = string(start[:])
	if last != ^uint32(0) {
		end := binary.BigEndian.AppendUint32(nil, last+1)
		it.elems = append(it.elems, nftables.SetElement{Key: end, IntervalEnd: true})
		it.id += string(end)
	}
	it.text = rangeText(binary.BigEndian.Uint32(start[:]), last)
	return it
}

// rangeText renders [first, last] as a prefix when it is one.
func rangeText(first, last uint32) string {
	a := func(u uint32) netip.Addr { return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, u))) }
	size := uint64(last) - uint64(first) + 1
	if size&(size-1) == 0 && uint64(first)%size == 0 {
		bits := 32
		for s := size; s > 1; s >>= 1 {
			bits--
		}
		return netip.PrefixFrom(a(first), bits).String()
	}
	return a(first).String() + "-" + a(last).String()
}

func addrItem(a netip.Addr) item {
	k := a.As4()
	return item{id: string(k[:]), elems: []nftables.SetElement{{Key: k[:]}}, text: a.String()}
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
	a4 := a.As4()
	k := append(ifnameKey(name), a4[:]...)
	return item{id: string(k), elems: []nftables.SetElement{{Key: k}}, text: ifnameText(k[:16]) + " . " + a.String()}
}

// itemsFromKernel groups the elements of a kernel set into items. It fails
// on elements that tabby cannot have written (wrong length, a dangling
// interval end), so that Sync rebuilds the table.
func itemsFromKernel(kind setKind, elems []nftables.SetElement) (map[string]item, error) {
	out := make(map[string]item, len(elems))
	keyLen := map[setKind]int{kindPrefix: 4, kindAddr: 4, kindIfname: 16, kindIfnameAddr: 20}[kind]
	for _, e := range elems {
		if len(e.Key) != keyLen {
			return nil, fmt.Errorf("set element key of %d bytes, want %d", len(e.Key), keyLen)
		}
	}
	switch kind {
	case kindAddr:
		for _, e := range elems {
			it := addrItem(netip.AddrFrom4([4]byte(e.Key)))
			out[it.id] = it
		}
	case kindIfname:
		for _, e := range elems {
			it := item{id: string(e.Key), elems: []nftables.SetElement{{Key: e.Key}}, text: ifnameText(e.Key)}
			out[it.id] = it
		}
	case kindIfnameAddr:
		for _, e := range elems {
			it := ifnameAddrItem(string(bytes.TrimRight(e.Key[:16], "\x00")), netip.AddrFrom4([4]byte(e.Key[16:])))
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
				last := binary.BigEndian.Uint32(e.Key) - 1
				if bytes.Compare(e.Key, open) <= 0 {
					return nil, fmt.Errorf("empty interval at %v", e.Key)
				}
				it := rangeItem([4]byte(open), last)
				out[it.id] = it
				open = nil
			case e.IntervalEnd && open == nil:
				// A lone interval end at 0.0.0.0 is what some nft
				// versions write as a sentinel; anything else is foreign.
				if binary.BigEndian.Uint32(e.Key) != 0 {
					return nil, fmt.Errorf("interval end %v without a start", e.Key)
				}
			default:
				return nil, fmt.Errorf("interval start %v inside an open interval", e.Key)
			}
		}
		if open != nil {
			it := rangeItem([4]byte(open), ^uint32(0))
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

func build(cfg Config, d Desired) (*ruleset, error) {
	if len(d.Pools) == 0 {
		return nil, &ValidationError{Field: "Pools", Value: "[]", Err: ErrNoPools}
	}
	var natPools, allPools, exclude []netip.Prefix
	for i, p := range d.Pools {
		if err := checkPrefix(fmt.Sprintf("Pools[%d].CIDR", i), p.CIDR); err != nil {
			return nil, err
		}
		allPools = append(allPools, p.CIDR)
		if p.NATOutgoing {
			natPools = append(natPools, p.CIDR)
		}
	}
	for i, p := range d.ExcludeDestinations {
		if err := checkPrefix(fmt.Sprintf("ExcludeDestinations[%d]", i), p); err != nil {
			return nil, err
		}
		exclude = append(exclude, p)
	}
	if d.SNATTo.IsValid() {
		if err := checkAddr("SNATTo", d.SNATTo); err != nil {
			return nil, err
		}
	}
	rs := &ruleset{table: cfg.Table}
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
		for i, a := range d.VXLANPeers {
			if err := checkAddr(fmt.Sprintf("VXLANPeers[%d]", i), a); err != nil {
				return nil, err
			}
			peers = append(peers, addrItem(a))
		}
		add(SetVXLANPeers, kindAddr, peers)
	}
	if !cfg.DisableWorkloadGuard {
		var ifaces, pairs []item
		for i, w := range d.Workloads {
			if w.Interface == "" || len(w.Interface) > 15 || strings.ContainsRune(w.Interface, 0) {
				return nil, &ValidationError{Field: fmt.Sprintf("Workloads[%d].Interface", i), Value: w.Interface, Err: ErrInvalidInterface}
			}
			ifaces = append(ifaces, ifnameItem(w.Interface))
			for j, a := range w.Addrs {
				if err := checkAddr(fmt.Sprintf("Workloads[%d].Addrs[%d]", i, j), a); err != nil {
					return nil, err
				}
				pairs = append(pairs, ifnameAddrItem(w.Interface, a))
			}
		}
		add(SetWorkloadIfaces, kindIfname, ifaces)
		add(SetWorkloadAddrs, kindIfnameAddr, pairs)
	}
	sort.Slice(rs.sets, func(i, j int) bool { return rs.sets[i].name < rs.sets[j].name })

	rs.chains = append(rs.chains, &chainModel{
		name: ChainPostrouting, typ: nftables.ChainTypeNAT,
		hook: *nftables.ChainHookPostrouting, prio: *nftables.ChainPriorityNATSource,
		rules: natRules(cfg, d.SNATTo),
	}, &chainModel{
		name: ChainPortGuard, typ: nftables.ChainTypeFilter,
		hook: *nftables.ChainHookPostrouting, prio: *nftables.ChainPriorityNATSource + 1,
		rules: portGuardRules(cfg.VXLANPort, cfg.PortGuardMark),
	})
	if !cfg.DisableVXLANGuard {
		rs.chains = append(rs.chains, &chainModel{
			name: ChainInput, typ: nftables.ChainTypeFilter,
			hook: *nftables.ChainHookInput, prio: *nftables.ChainPriorityFilter,
			rules: []ruleModel{vxlanGuardRule(cfg.VXLANPort)},
		})
	}
	if !cfg.DisableWorkloadGuard {
		rs.chains = append(rs.chains, &chainModel{
			name: ChainPrerouting, typ: nftables.ChainTypeFilter,
			hook: *nftables.ChainHookPrerouting, prio: *nftables.ChainPriorityRaw,
			rules: []ruleModel{workloadGuardRule()},
		})
	}
	return rs, nil
}

func checkPrefix(field string, p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return &ValidationError{Field: field, Value: p.String(), Err: ErrInvalidPrefix}
	case !p.Addr().Is4():
		return &ValidationError{Field: field, Value: p.String(), Err: ErrWrongFamily}
	case p.Masked() != p:
		return &ValidationError{Field: field, Value: p.String() + " (host bits set)", Err: ErrInvalidPrefix}
	}
	return nil
}

func checkAddr(field string, a netip.Addr) error {
	switch {
	case !a.IsValid():
		return &ValidationError{Field: field, Value: a.String(), Err: ErrInvalidPrefix}
	case !a.Is4():
		return &ValidationError{Field: field, Value: a.String(), Err: ErrWrongFamily}
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

func loadSaddr(reg uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
}

func loadDaddr(reg uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}

func lookup(sets map[string]*nftables.Set, name string, reg uint32, invert bool) *expr.Lookup {
	s := sets[name]
	return &expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID, Invert: invert}
}

// natMatch: ip saddr @nat_pools ip daddr != @all_pools ip daddr != @nat_exclude
// meta mark set meta mark | <mark>
func natMatch(sets map[string]*nftables.Set, mark uint32) []expr.Any {
	return []expr.Any{
		loadSaddr(1), lookup(sets, SetNATPools, 1, false),
		loadDaddr(1), lookup(sets, SetAllPools, 1, true),
		lookup(sets, SetNATExclude, 1, true),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(^mark), Xor: ne32(mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
	}
}

// ne32 encodes v as the meta and ct expressions load it: host byte order.
func ne32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func natRules(cfg Config, snat netip.Addr) []ruleModel {
	var rules []ruleModel
	if cfg.TunnelInterface != "" {
		rules = append(rules, tunnelRule(cfg.TunnelInterface, cfg.PortGuardMark))
	}
	return append(rules, poolRules(cfg, snat)...)
}

const rtnLocal = 2 // RTN_LOCAL

// tunnelRule: oifname "<tunnel>" fib saddr . oif type != local
// fib saddr type local meta mark set meta mark | <mark> masquerade fully-random
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

func poolRules(cfg Config, snat netip.Addr) []ruleModel {
	if !snat.IsValid() {
		// Masquerade: one rule, fully random ports for every protocol.
		// google/nftables v0.3.0 cannot express "masquerade to :lo-hi
		// fully-random": its masq expression drops the flags, and with
		// them NF_NAT_RANGE_PROTO_SPECIFIED, whenever a port range is
		// given, and the kernel then ignores the range. The VXLAN port is
		// kept off translated flows by portGuardRule instead.
		return []ruleModel{newRule("nat", func(sets map[string]*nftables.Set) []expr.Any {
			return append(natMatch(sets, cfg.PortGuardMark), &expr.Masq{FullyRandom: true})
		})}
	}
	// SNAT to a fixed address: the nat expression carries both a port range
	// and flags, so UDP gets a range without the VXLAN port.
	lo, hi := SNATPortRange(cfg.VXLANPort)
	a := snat.As4()
	udp := newRule("nat-udp", func(sets map[string]*nftables.Set) []expr.Any {
		return append(natMatch(sets, cfg.PortGuardMark),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Immediate{Register: 1, Data: a[:]},
			&expr.Immediate{Register: 2, Data: be16(lo)},
			&expr.Immediate{Register: 3, Data: be16(hi)},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4,
				RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: 2, RegProtoMax: 3,
				FullyRandom: true, Specified: true})
	})
	other := newRule("nat", func(sets map[string]*nftables.Set) []expr.Any {
		return append(natMatch(sets, cfg.PortGuardMark),
			&expr.Immediate{Register: 1, Data: a[:]},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4,
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

func vxlanGuardRule(port uint16) ruleModel {
	return newRule("vxlan-guard", func(sets map[string]*nftables.Set) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(port)},
			loadSaddr(1), lookup(sets, SetVXLANPeers, 1, true),
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}
	})
}

// Registers for the concatenation iifname . ip saddr: the 16-byte name fills
// NFT_REG32_00..03 (the same storage as NFT_REG_1), the address NFT_REG32_04.
const (
	regConcat0 = unix.NFT_REG32_00
	regConcat4 = unix.NFT_REG32_04
)

func workloadGuardRule() ruleModel {
	return newRule("workload-guard", func(sets map[string]*nftables.Set) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			lookup(sets, SetWorkloadIfaces, 1, false),
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regConcat0},
			loadSaddr(regConcat4),
			lookup(sets, SetWorkloadAddrs, regConcat0, true),
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}
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
	fmt.Fprintf(&b, "table ip %s {\n", r.table)
	for _, s := range r.sets {
		renderSet(&b, s.name, s.kind, s.items)
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

func renderSet(b *strings.Builder, name string, kind setKind, items map[string]item) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n", name, kind.typeText())
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
