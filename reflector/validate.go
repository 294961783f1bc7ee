package reflector

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Refusal says what of one node's announcement is not accepted, and why:
// what its Validator refused, or what it lost to another node under the
// conflict rule (see Snapshot). It is a plain value.
type Refusal struct {
	Node   string
	Blocks []netip.Prefix
	Addrs  []netip.Addr
	// IPv4 and IPv6: that family's VTEP is not accepted (its tunnel
	// address is not the node's own, or its tunnel IP or MAC is another
	// node's); peers program no route over it.
	IPv4, IPv6 bool
	// Ignored: nothing of the node is accepted (no family is left).
	Ignored bool
	// Reasons are human-readable, one per refused item (at most a few
	// dozen; the rest are counted).
	Reasons []string
}

// Empty reports whether nothing is refused.
func (f Refusal) Empty() bool {
	return len(f.Blocks) == 0 && len(f.Addrs) == 0 && !f.IPv4 && !f.IPv6 && !f.Ignored
}

func (f Refusal) clone() Refusal {
	f.Blocks, f.Addrs, f.Reasons = slices.Clone(f.Blocks), slices.Clone(f.Addrs), slices.Clone(f.Reasons)
	return f
}

func (f Refusal) equal(g Refusal) bool {
	return f.Node == g.Node && f.IPv4 == g.IPv4 && f.IPv6 == g.IPv6 && f.Ignored == g.Ignored &&
		slices.Equal(f.Blocks, g.Blocks) && slices.Equal(f.Addrs, g.Addrs) && slices.Equal(f.Reasons, g.Reasons)
}

const maxReasons = 32

func (f *Refusal) reason(format string, args ...any) {
	switch {
	case len(f.Reasons) < maxReasons:
		f.Reasons = append(f.Reasons, fmt.Sprintf(format, args...))
	case len(f.Reasons) == maxReasons:
		f.Reasons = append(f.Reasons, "more refused (not listed)")
	}
}

// notOwned is what a Validator's error may implement to name everything it
// refused in one call.
type notOwned interface {
	NotOwned() ([]netip.Prefix, []netip.Addr)
}

// vitem is one thing a Validator is asked about.
type vitem struct {
	block netip.Prefix // valid for a block
	addr  netip.Addr   // otherwise
}

// validate returns what of a the Validator lets through, and what it
// refuses. It calls the Validator once with everything and, if that fails,
// bisects the list (see Validator) within Limits.MaxValidatorCalls calls.
func (r *Reflector) validate(ctx context.Context, a Announcement) (Announcement, Refusal) {
	ref := Refusal{Node: a.Node}
	v := r.cfg.Validator
	if v == nil {
		return a, ref
	}
	covered := func(x netip.Addr) bool {
		return slices.ContainsFunc(a.Blocks, func(p netip.Prefix) bool { return p.Contains(x) }) || slices.Contains(a.Addrs, x)
	}
	addrs := slices.Clip(a.Addrs)
	for _, t := range []netip.Addr{a.TunnelIP, a.TunnelIPv6} {
		if t.IsValid() && !covered(t) {
			addrs = append(addrs, t)
		}
	}
	vctx, cancel := context.WithTimeout(ctx, max(r.cfg.HeartbeatInterval, time.Second))
	defer cancel()
	err := v.Owns(vctx, a.Node, a.Blocks, addrs)
	if err == nil {
		return a, ref
	}
	refused := map[vitem]error{}
	if no, ok := err.(notOwned); ok {
		bs, as := no.NotOwned()
		for _, b := range bs {
			refused[vitem{block: b}] = err
		}
		for _, x := range as {
			refused[vitem{addr: x}] = err
		}
	} else {
		items := make([]vitem, 0, len(a.Blocks)+len(addrs))
		for _, b := range a.Blocks {
			items = append(items, vitem{block: b})
		}
		for _, x := range addrs {
			items = append(items, vitem{addr: x})
		}
		budget := r.lim.MaxValidatorCalls - 1
		var bisect func(items []vitem, known error)
		bisect = func(items []vitem, known error) {
			if len(items) == 0 {
				return
			}
			if len(items) == 1 && known != nil {
				refused[items[0]] = known
				return
			}
			if known != nil {
				h := len(items) / 2
				bisect(items[:h], nil)
				bisect(items[h:], nil)
				return
			}
			if budget <= 0 {
				for _, it := range items {
					refused[it] = fmt.Errorf("not checked: more refusals than %d Validator calls can resolve", r.lim.MaxValidatorCalls)
				}
				return
			}
			budget--
			var bs []netip.Prefix
			var as []netip.Addr
			for _, it := range items {
				if it.block.IsValid() {
					bs = append(bs, it.block)
				} else {
					as = append(as, it.addr)
				}
			}
			if err := v.Owns(vctx, a.Node, bs, as); err != nil {
				bisect(items, err)
			}
		}
		bisect(items, err)
	}
	out := a.Clone()
	out.Blocks, out.Addrs = nil, nil
	for _, b := range a.Blocks {
		if e, bad := refused[vitem{block: b}]; bad {
			ref.Blocks = append(ref.Blocks, b)
			ref.reason("block %s: %v", b, e)
			continue
		}
		out.Blocks = append(out.Blocks, b)
	}
	for _, x := range a.Addrs {
		if e, bad := refused[vitem{addr: x}]; bad {
			ref.Addrs = append(ref.Addrs, x)
			ref.reason("address %s: %v", x, e)
			continue
		}
		out.Addrs = append(out.Addrs, x)
	}
	owned := func(t netip.Addr) bool {
		if slices.ContainsFunc(out.Blocks, func(p netip.Prefix) bool { return p.Contains(t) }) || slices.Contains(out.Addrs, t) {
			return true
		}
		_, bad := refused[vitem{addr: t}]
		return !covered(t) && !bad
	}
	if out.HasIPv4() && !owned(out.TunnelIP) {
		ref.IPv4 = true
		ref.reason("IPv4 VTEP ignored: tunnel address %s is not the node's", out.TunnelIP)
		out.NodeIP, out.TunnelIP, out.TunnelMAC = netip.Addr{}, netip.Addr{}, nil
	}
	if out.HasIPv6() && !owned(out.TunnelIPv6) {
		ref.IPv6 = true
		ref.reason("IPv6 VTEP ignored: tunnel address %s is not the node's", out.TunnelIPv6)
		out.NodeIPv6, out.TunnelIPv6, out.TunnelMACv6 = netip.Addr{}, netip.Addr{}, nil
	}
	if !out.HasIPv4() && !out.HasIPv6() {
		ref.Ignored = true
		ref.reason("whole node ignored: no VTEP with an owned tunnel address")
	}
	return out, ref
}
