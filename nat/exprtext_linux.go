//go:build linux

package nat

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// exprText renders the expression shapes tabby writes in nft syntax. It is
// used both for the intended rules and for rules read back from the kernel,
// so that a dump shows what the kernel holds, not what tabby meant.
// Anything else is rendered as a bracketed Go type, never dropped.
func exprText(es []expr.Any) string {
	regs := map[uint32]string{} // 32-bit register index -> what it holds ("ip saddr")
	imm := map[uint32][]byte{}  // 32-bit register index -> immediate data
	// The load not yet consumed by a comparison or lookup: a load into the
	// register right after it continues a concatenation (iifname . ip saddr).
	var pending struct {
		idx, end uint32
		ok       bool
	}
	var out []string
	load := func(reg uint32, what string, n uint32) {
		idx := reg32(reg)
		if pending.ok && idx == pending.end {
			regs[pending.idx] += " . " + what
			pending.end += (n + 3) / 4
			return
		}
		regs[idx] = what
		pending.idx, pending.end, pending.ok = idx, idx+(n+3)/4, true
	}
	use := func(reg uint32) string {
		pending.ok = false
		return regs[reg32(reg)]
	}
	for _, e := range es {
		switch e := e.(type) {
		case *expr.Payload:
			load(e.DestRegister, payloadText(e), e.Len)
		case *expr.Meta:
			if e.SourceRegister {
				out = append(out, metaText(e.Key)+" set "+use(e.Register))
				break
			}
			load(e.Register, metaText(e.Key), metaLen(e.Key))
		case *expr.Bitwise:
			// (x & mask) ^ xor, in the forms nft prints.
			x, mask, xor := regs[reg32(e.SourceRegister)], ne32val(e.Mask), ne32val(e.Xor)
			var v string
			switch {
			case len(e.Mask) == 16 && bytes.Equal(e.Xor, make([]byte, 16)) && strings.HasPrefix(x, "ip6 "):
				v = fmt.Sprintf("%s & %s", x, addrText(e.Mask))
			case len(e.Mask) != 4 || len(e.Xor) != 4:
				v = fmt.Sprintf("%s & 0x%x ^ 0x%x", x, e.Mask, e.Xor)
			case xor == 0:
				v = fmt.Sprintf("%s & %#08x", x, mask)
			case mask == ^xor:
				v = fmt.Sprintf("%s | %#08x", x, xor)
			default:
				v = fmt.Sprintf("%s & %#08x ^ %#08x", x, mask, xor)
			}
			regs[reg32(e.DestRegister)] = v
		case *expr.Fib:
			load(e.Register, fibText(e), 4)
		case *expr.Cmp:
			op := " "
			switch e.Op {
			case expr.CmpOpEq:
			case expr.CmpOpNeq:
				op = " != "
			default:
				op = fmt.Sprintf(" cmp%d ", e.Op)
			}
			what := use(e.Register)
			out = append(out, what+op+valueText(what, e.Data))
		case *expr.Lookup:
			op := " "
			if e.Invert {
				op = " != "
			}
			out = append(out, use(e.SourceRegister)+op+"@"+e.SetName)
		case *expr.Immediate:
			imm[reg32(e.Register)] = e.Data
		case *expr.Counter:
			out = append(out, "counter")
		case *expr.Verdict:
			out = append(out, verdictText(e))
		case *expr.Masq:
			s := "masquerade"
			if e.ToPorts {
				s += " to :" + portRange(imm[reg32(e.RegProtoMin)], imm[reg32(e.RegProtoMax)])
			}
			s += natFlags(e.Random, e.FullyRandom, e.Persistent)
			out = append(out, s)
		case *expr.NAT:
			s := "nat"
			switch e.Type {
			case expr.NATTypeSourceNAT:
				s = "snat"
			case expr.NATTypeDestNAT:
				s = "dnat"
			}
			s += " to "
			if e.RegAddrMin != 0 {
				s += addrText(imm[reg32(e.RegAddrMin)])
				if e.RegAddrMax != 0 && e.RegAddrMax != e.RegAddrMin {
					s += "-" + addrText(imm[reg32(e.RegAddrMax)])
				}
			}
			if e.RegProtoMin != 0 {
				s += ":" + portRange(imm[reg32(e.RegProtoMin)], imm[reg32(e.RegProtoMax)])
			}
			s += natFlags(e.Random, e.FullyRandom, e.Persistent)
			out = append(out, s)
		default:
			out = append(out, fmt.Sprintf("[%T]", e))
		}
	}
	return strings.Join(out, " ")
}

// reg32 maps a register number to its 32-bit register index: the kernel
// reports NFT_REG32_00 as NFT_REG_1, NFT_REG32_04 as NFT_REG_2, and so on.
func reg32(r uint32) uint32 {
	if r >= unix.NFT_REG_1 && r <= unix.NFT_REG_4 {
		return unix.NFT_REG32_00 + (r-unix.NFT_REG_1)*4
	}
	return r
}

func ne32val(b []byte) uint32 {
	if len(b) != 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(b)
}

func fibText(e *expr.Fib) string {
	var in []string
	for _, f := range []struct {
		on   bool
		name string
	}{{e.FlagSADDR, "saddr"}, {e.FlagDADDR, "daddr"}, {e.FlagMARK, "mark"}, {e.FlagIIF, "iif"}, {e.FlagOIF, "oif"}} {
		if f.on {
			in = append(in, f.name)
		}
	}
	res := "type"
	switch {
	case e.ResultOIF:
		res = "oif"
	case e.ResultOIFNAME:
		res = "oifname"
	}
	return "fib " + strings.Join(in, " . ") + " " + res
}

func metaLen(k expr.MetaKey) uint32 {
	switch k {
	case expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME:
		return 16
	}
	return 4
}

func payloadText(e *expr.Payload) string {
	switch {
	case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 12 && e.Len == 4:
		return "ip saddr"
	case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 16 && e.Len == 4:
		return "ip daddr"
	case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 8 && e.Len == 16:
		return "ip6 saddr"
	case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 24 && e.Len == 16:
		return "ip6 daddr"
	case e.Base == expr.PayloadBaseTransportHeader && e.Offset == 0 && e.Len == 2:
		return "th sport"
	case e.Base == expr.PayloadBaseTransportHeader && e.Offset == 2 && e.Len == 2:
		return "th dport"
	}
	return fmt.Sprintf("@payload(base %d, off %d, len %d)", e.Base, e.Offset, e.Len)
}

func metaText(k expr.MetaKey) string {
	switch k {
	case expr.MetaKeyL4PROTO:
		return "meta l4proto"
	case expr.MetaKeyIIFNAME:
		return "iifname"
	case expr.MetaKeyOIFNAME:
		return "oifname"
	case expr.MetaKeyMARK:
		return "meta mark"
	}
	return fmt.Sprintf("meta key%d", k)
}

func valueText(what string, d []byte) string {
	switch {
	case what == "meta l4proto" && len(d) == 1:
		switch d[0] {
		case unix.IPPROTO_UDP:
			return "udp"
		case unix.IPPROTO_TCP:
			return "tcp"
		case unix.IPPROTO_ICMP:
			return "icmp"
		case unix.IPPROTO_ICMPV6:
			return "ipv6-icmp"
		}
		return fmt.Sprint(d[0])
	case strings.HasSuffix(what, "port") && len(d) == 2:
		return fmt.Sprint(binary.BigEndian.Uint16(d))
	case strings.HasPrefix(what, "fib ") && strings.HasSuffix(what, " type") && len(d) == 4:
		types := map[uint32]string{1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
		if n, ok := types[binary.NativeEndian.Uint32(d)]; ok {
			return n
		}
		return fmt.Sprint(binary.NativeEndian.Uint32(d))
	case strings.HasPrefix(what, "meta mark") && len(d) == 4:
		return fmt.Sprintf("%#x", binary.NativeEndian.Uint32(d))
	case strings.HasPrefix(what, "ip ") && len(d) == 4:
		return addrText(d)
	case strings.HasPrefix(what, "ip6 ") && len(d) == 16:
		return addrText(d)
	case strings.HasSuffix(what, "ifname"):
		return fmt.Sprintf("%q", string(bytes.TrimRight(d, "\x00")))
	}
	return fmt.Sprintf("0x%x", d)
}

func addrText(d []byte) string {
	if a, ok := netip.AddrFromSlice(d); ok {
		return a.String()
	}
	return fmt.Sprintf("0x%x", d)
}

func portRange(lo, hi []byte) string {
	p := func(d []byte) string {
		if len(d) != 2 {
			return fmt.Sprintf("0x%x", d)
		}
		return fmt.Sprint(binary.BigEndian.Uint16(d))
	}
	if hi == nil {
		return p(lo)
	}
	return p(lo) + "-" + p(hi)
}

func natFlags(random, fully, persistent bool) string {
	var f []string
	if random {
		f = append(f, "random")
	}
	if fully {
		f = append(f, "fully-random")
	}
	if persistent {
		f = append(f, "persistent")
	}
	if len(f) == 0 {
		return ""
	}
	return " " + strings.Join(f, ",")
}

func verdictText(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	}
	return fmt.Sprintf("verdict %d", v.Kind)
}
