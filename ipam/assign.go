package ipam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/datastore"
)

// MaxNum4 is the most addresses of one family one AutoAssign may ask for
// (Num4 and Num6 each). One assignment also writes at most maxTxnBlocks
// blocks (one transaction), which limits it further in pools of very small
// blocks.
const MaxNum4 = 1024

const maxTxnBlocks = 64

// TunnelHandlePrefix starts the handle of a node's VXLAN tunnel address:
// "vxlan-tunnel-addr-<node>".
const TunnelHandlePrefix = "vxlan-tunnel-addr-"

// TunnelAttrType is the value of the "type" attribute of a tunnel address.
const TunnelAttrType = "vxlanTunnelAddress"

// TunnelHandle returns the handle of host's VXLAN tunnel address.
func TunnelHandle(host string) string { return TunnelHandlePrefix + host }

// AutoAssignArgs is a request for addresses. A plain value.
type AutoAssignArgs struct {
	// Handle names the holder (for a pod, typically "<network>.<container
	// id>"); it is how the addresses are released. Required.
	Handle string
	// Host is the node asking; addresses come from its blocks. Required.
	Host string
	// Num4 and Num6 are the numbers of IPv4 and IPv6 addresses, each
	// 0..MaxNum4, together at least 1.
	Num4 int
	Num6 int
	// Attrs are stored with each address (for example namespace and pod).
	Attrs map[string]string
	// Pools restricts the pools by name (empty: every enabled pool of the
	// family). An unknown name is ErrPoolNotFound, naming no pool of a
	// requested family is ErrInvalid; disabled pools are skipped.
	Pools []string
	// BeforeCommit, if set, is called with the addresses AutoAssign is
	// about to return (IPv4 first) just before the transaction that
	// allocates the new ones is sent, so that the caller can prepare their
	// use while the store commits (a bolt store spends most of an
	// assignment in fsync). The
	// addresses are not the caller's yet: AutoAssign may still fail, or
	// start over after a conflict and call BeforeCommit again with other
	// addresses; only what AutoAssign returns is allocated. It is not
	// called when the handle already held every requested family.
	BeforeCommit func([]Assigned)
}

// Assigned is one address handed out. Seq identifies this allocation of
// the address: pass it to ReleaseIPs so that a late release cannot free the
// address after it was handed to someone else. A plain value.
type Assigned struct {
	Addr  netip.Addr
	Block netip.Prefix
	Pool  string
	Seq   uint64
	// NewBlock is set when Block was claimed for the host by this call (it
	// must now be announced, as a route for the whole block).
	NewBlock bool
}

// Family is an IP address family. The zero value is invalid. A plain value.
type Family int

const (
	IPv4 Family = iota + 1
	IPv6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", int(f))
}

// FamilyOf returns the family of a (0 for an invalid address).
func FamilyOf(a netip.Addr) Family {
	switch {
	case !a.IsValid():
		return 0
	case a.Is4():
		return IPv4
	}
	return IPv6
}

// AutoAssign hands out args.Num4 IPv4 and args.Num6 IPv6 addresses to
// args.Handle on args.Host: first from the host's blocks with room, then from a newly
// claimed block (see ClaimBlock), then, unless Config.StrictAffinity, by
// borrowing from other blocks; else ErrExhausted. The addresses and the
// handle record are written in one transaction; nothing is allocated if it
// fails (blocks claimed on the way stay with the host, empty, for later
// assignments or GC).
//
// If the handle already holds addresses of a requested family, AutoAssign
// returns those and allocates none of that family: an ADD retried after a
// crash does not allocate twice. The result lists IPv4 addresses first.
func (m *IPAM) AutoAssign(ctx context.Context, args AutoAssignArgs) ([]Assigned, error) {
	return m.autoAssign(ctx, args, m.strict, false)
}

// AssignTunnelAddress returns host's VXLAN tunnel address of family fam,
// allocating it on first use from a block affine to host (never borrowed)
// with handle TunnelHandle(host) (one handle holds both families) and
// attributes type=vxlanTunnelAddress, node=host. Repeated calls return the
// same address. pools restricts the pools as in AutoAssignArgs; pools of the
// other family are ignored. With no usable pool of the family the error
// wraps ErrNoPool (and ErrExhausted): never an address of the other family.
//
// The tunnel address is the first address of the host's first block of the
// family, whatever the order of calls, as in Calico (the seed's
// 10.244.235.128 of 10.244.235.128/26): until the host has a tunnel address
// of a family, AutoAssign does not hand out the first address of the
// host's first affine block of that family. If that address is taken anyway
// (borrowed by another host, or assigned explicitly with AssignIP) the
// tunnel gets the first free address of the host's blocks.
func (m *IPAM) AssignTunnelAddress(ctx context.Context, host string, fam Family, pools ...string) (netip.Addr, error) {
	if err := checkHost(host); err != nil {
		return netip.Addr{}, fmt.Errorf("ipam: tunnel address: %w", err)
	}
	args := AutoAssignArgs{
		Handle: TunnelHandle(host), Host: host, Pools: pools,
		Attrs: map[string]string{"type": TunnelAttrType, "node": host},
	}
	switch fam {
	case IPv4:
		args.Num4 = 1
	case IPv6:
		args.Num6 = 1
	default:
		return netip.Addr{}, fmt.Errorf("ipam: tunnel address of %s: %w: family %v", host, ErrInvalid, fam)
	}
	as, err := m.autoAssign(ctx, args, true, true)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range as {
		if FamilyOf(a.Addr) == fam {
			return a.Addr, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("ipam: tunnel address of %s: %w: no %s address assigned", host, ErrNoPool, fam)
}

// selectPools resolves names to usable IPv4 pools.
func selectPools(pr *poolsRec, names []string, is4 bool) ([]poolRec, error) {
	var sel []poolRec
	var disabled []string
	fam := "IPv4"
	if !is4 {
		fam = "IPv6"
	}
	if len(names) == 0 {
		exists := false
		for _, p := range pr.Pools {
			if p.CIDR.Addr().Is4() == is4 {
				exists = true
				if p.usable() {
					sel = append(sel, p)
				}
			}
		}
		if !exists {
			return nil, fmt.Errorf("%w: %w: no %s pool", ErrExhausted, ErrNoPool, fam)
		}
		return sel, nil
	}
	for _, n := range names {
		i := pr.find(n)
		if i < 0 {
			return nil, fmt.Errorf("%w: %q", ErrPoolNotFound, n)
		}
		p := pr.Pools[i]
		if p.CIDR.Addr().Is4() != is4 {
			continue
		}
		if !p.usable() {
			disabled = append(disabled, n)
			continue
		}
		if !slices.ContainsFunc(sel, func(q poolRec) bool { return q.Name == n }) {
			sel = append(sel, p)
		}
	}
	if len(sel) == 0 && len(disabled) == 0 {
		return nil, fmt.Errorf("%w: %w: no %s pool among %v", ErrInvalid, ErrNoPool, fam, names)
	}
	if len(sel) == 0 {
		return nil, fmt.Errorf("%w: %w: %v", ErrExhausted, ErrPoolDisabled, disabled)
	}
	return sel, nil
}

func (m *IPAM) autoAssign(ctx context.Context, args AutoAssignArgs, strict, tunnel bool) ([]Assigned, error) {
	op := "auto-assign " + args.Handle
	if err := checkHandle(args.Handle); err != nil {
		return nil, fmt.Errorf("ipam: auto-assign: %w", err)
	}
	if err := checkHost(args.Host); err != nil {
		return nil, fmt.Errorf("ipam: auto-assign: %w", err)
	}
	if args.Num4 < 0 || args.Num4 > MaxNum4 || args.Num6 < 0 || args.Num6 > MaxNum4 || args.Num4+args.Num6 < 1 {
		return nil, fmt.Errorf("ipam: auto-assign: %w: Num4 %d, Num6 %d (each 0..%d, at least one address)", ErrInvalid, args.Num4, args.Num6, MaxNum4)
	}
	var out []Assigned
	err := m.retry(ctx, op, func() error {
		var err error
		out, err = m.autoAssignOnce(ctx, args, strict, tunnel, true)
		switch {
		case err == nil:
		case isConflict(err):
			m.dropPools()
		default:
			// Maybe a stale pools record (a pool created or enabled
			// since): decide on a fresh one.
			m.dropPools()
			out, err = m.autoAssignOnce(ctx, args, strict, tunnel, false)
		}
		return err
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

func held(h *handleRec, is4 bool) []Assigned {
	var out []Assigned
	for _, a := range h.Addrs {
		if a.Addr.Is4() == is4 {
			out = append(out, Assigned{Addr: a.Addr, Block: a.Block, Pool: a.Pool, Seq: a.Seq})
		}
	}
	return out
}

func (m *IPAM) autoAssignOnce(ctx context.Context, args AutoAssignArgs, strict, tunnel, useCache bool) ([]Assigned, error) {
	pr, prev, err := m.assignPools(ctx, useCache)
	if err != nil {
		return nil, err
	}
	c := m.newChange()
	lh, err := c.handle(ctx, args.Handle)
	if err != nil {
		return nil, err
	}
	held4, held6 := held(lh.rec, true), held(lh.rec, false)
	need4, need6 := args.Num4, args.Num6
	if len(held4) > 0 {
		need4 = 0
	}
	if len(held6) > 0 {
		need6 = 0
	}
	var result []Assigned
	if args.Num4 > 0 {
		result = append(result, held4...)
	}
	if args.Num6 > 0 {
		result = append(result, held6...)
	}
	if need4 == 0 && need6 == 0 {
		return result, nil
	}
	var sel4, sel6 []poolRec
	if need4 > 0 {
		if sel4, err = selectPools(pr, args.Pools, true); err != nil {
			return nil, err
		}
	}
	if need6 > 0 {
		if sel6, err = selectPools(pr, args.Pools, false); err != nil {
			return nil, err
		}
	}
	hr, hrev, err := m.loadHost(ctx, args.Host)
	if err != nil {
		return nil, err
	}
	if slices.ContainsFunc(hr.Blocks, func(b hostBlock) bool { return b.Pending }) {
		if err := m.confirm(ctx, args.Host); err != nil {
			return nil, err
		}
		return nil, errRetry
	}
	now := m.now()
	var out []Assigned
	hostDirty := false
	// allocate takes need addresses from the pools in sel (one family).
	allocate := func(sel []poolRec, want int, fam string) error {
		need := want
		inSel := func(pool string) bool {
			return slices.ContainsFunc(sel, func(p poolRec) bool { return p.Name == pool })
		}
		// reserved: the first address of the host's first block of the
		// family is kept for the tunnel until the host has one.
		lift := false // set when nothing else is left
		reserved := func(lb *loadedBlock) bool {
			return !tunnel && !lift && keepsTunnelSlot(hr, lb.rec, args.Host)
		}
		takeFrom := func(lb *loadedBlock, fresh bool) {
			if lb.rec == nil || need == 0 || len(lb.rec.Free) == 0 {
				return
			}
			lb.dirty = true // records in a change are private copies, decoded for it
			for need > 0 {
				var a netip.Addr
				var seq uint64
				ok := false
				switch {
				case tunnel:
					if a, seq, ok = lb.rec.takeOrd(0, args.Handle, args.Host, args.Attrs, now); !ok {
						a, seq, ok = lb.rec.take(args.Handle, args.Host, args.Attrs, now)
					}
				case reserved(lb):
					a, seq, ok = lb.rec.takeAvoiding(0, args.Handle, args.Host, args.Attrs, now)
				default:
					a, seq, ok = lb.rec.take(args.Handle, args.Host, args.Attrs, now)
				}
				if !ok {
					break
				}
				need--
				out = append(out, Assigned{Addr: a, Block: lb.rec.CIDR, Pool: lb.rec.Pool, Seq: seq, NewBlock: fresh})
				lh.rec.Addrs = append(lh.rec.Addrs, handleAddr{Pool: lb.rec.Pool, Block: lb.rec.CIDR, Addr: a, Seq: seq})
				lh.dirty = true
				if tunnel {
					hr.setTunnel(a)
					hostDirty = true
				}
			}
		}
		// 1. The host's own blocks: those not known to be full first.
		ownBlocks := func() error {
			for _, full := range []bool{false, true} {
				for _, hb := range hr.Blocks {
					if need == 0 {
						break
					}
					if hb.Pending || hb.Full != full || !inSel(hb.Pool) {
						continue
					}
					lb, err := c.block(ctx, hb.Pool, hb.CIDR)
					if err != nil {
						return err
					}
					if lb.rec != nil && lb.rec.Affinity == args.Host {
						takeFrom(lb, false)
					}
				}
			}
			return nil
		}
		if err := ownBlocks(); err != nil {
			return err
		}
		// 2. New blocks for the host.
		capped := false
		for need > 0 {
			if m.maxBPH > 0 && len(hr.Blocks) >= m.maxBPH {
				capped = true
				break
			}
			claimed := false
			for _, p := range sel {
				b, err := m.claimIn(ctx, prev, hr, hrev, p)
				if errors.Is(err, errNoFreeBlock) {
					continue
				}
				if err != nil {
					return err
				}
				if hr, hrev, err = m.loadHost(ctx, args.Host); err != nil {
					return err
				}
				lb, err := c.block(ctx, p.Name, b)
				if err != nil {
					return err
				}
				takeFrom(lb, true)
				claimed = true
				break
			}
			if !claimed {
				break
			}
		}
		// 2b. The first address of the host's first block, kept for a
		// tunnel that does not exist yet, rather than borrowing or failing.
		if need > 0 {
			lift = true
			if err := ownBlocks(); err != nil {
				return err
			}
		}
		// 3. Borrow.
		if need > 0 && !strict {
			for _, p := range sel {
				if need == 0 {
					break
				}
				kvs, _, err := m.st.List(ctx, m.k.blocks(p.Name))
				if err != nil {
					return err
				}
				start := int(m.randN(uint64(len(kvs))))
				for j := range kvs {
					if need == 0 {
						break
					}
					kv := kvs[(start+j)%len(kvs)]
					if _, seen := c.blocks[kv.Key]; seen {
						continue
					}
					b, err := decodeBlock(kv.Value)
					if err != nil {
						return fmt.Errorf("%s: %w", kv.Key, err)
					}
					if len(b.Free) == 0 {
						continue
					}
					lb := &loadedBlock{key: kv.Key, rec: b, rev: kv.Revision}
					c.blocks[kv.Key] = lb
					c.order = append(c.order, kv.Key)
					takeFrom(lb, false)
				}
			}
		}
		if need > 0 {
			why := "pools full"
			if capped {
				why = fmt.Sprintf("host %s at MaxBlocksPerHost %d", args.Host, m.maxBPH)
			}
			if strict {
				why += ", borrowing not allowed"
			}
			return fmt.Errorf("%w: %d of %d %s addresses (%s)", ErrExhausted, want-need, want, fam, why)
		}
		return nil
	}
	if need4 > 0 {
		if err := allocate(sel4, need4, "IPv4"); err != nil {
			return nil, err
		}
	}
	if need6 > 0 {
		if err := allocate(sel6, need6, "IPv6"); err != nil {
			return nil, err
		}
	}
	ops := append([]datastore.Op{datastore.Check(m.k.pools(), prev)}, c.ops()...)
	if len(ops) > maxTxnBlocks+2 {
		// etcd limits a transaction to 128 operations by default.
		return nil, fmt.Errorf("%w: %d addresses span %d blocks (at most %d per assignment)", ErrInvalid, args.Num4+args.Num6, len(ops)-2, maxTxnBlocks)
	}
	// Keep the host's full-block hints current.
	for i, hb := range hr.Blocks {
		if lb := c.blocks[m.k.block(hb.Pool, hb.CIDR)]; lb != nil && lb.rec != nil && lb.rec.Affinity == args.Host {
			// A block whose only free address waits for the tunnel counts
			// as full for pods.
			full := len(lb.rec.Free) == 0 || !tunnel && len(lb.rec.Free) == 1 && lb.rec.Free[0] == 0 && keepsTunnelSlot(hr, lb.rec, args.Host)
			if full != hb.Full {
				hr.Blocks[i].Full = full
				hostDirty = true
			}
		}
	}
	if hostDirty {
		ops = append(ops, putOp(m.k.host(args.Host), hr, hrev))
	}
	result = append(result, out...)
	slices.SortStableFunc(result, func(a, b Assigned) int {
		switch {
		case a.Addr.Is4() == b.Addr.Is4():
			return 0
		case a.Addr.Is4():
			return -1
		}
		return 1
	})
	if args.BeforeCommit != nil {
		args.BeforeCommit(slices.Clone(result))
	}
	if _, err := m.st.Txn(ctx, ops...); err != nil {
		return nil, err
	}
	return result, nil
}

// keepsTunnelSlot reports whether ordinal 0 of b is kept for host's tunnel
// address: b is host's first block of its family and host has no tunnel
// address of that family yet.
func keepsTunnelSlot(hr *hostRec, b *blockRec, host string) bool {
	is4 := b.CIDR.Addr().Is4()
	if b.Affinity != host || hr.tunnel(is4).IsValid() {
		return false
	}
	first, ok := hr.firstBlock(is4)
	return ok && first == b.CIDR
}

// AssignIPArgs asks for one specific address. A plain value.
type AssignIPArgs struct {
	Addr   netip.Addr
	Handle string // required
	Host   string // required
	Attrs  map[string]string
}

// AssignIP allocates args.Addr to args.Handle. ErrNotInPool if no pool
// holds it, ErrPoolDisabled if its pool is disabled, ErrInUse if it is
// allocated to another handle (if args.Handle already holds it, AssignIP
// returns it again). If the address's block does not exist yet it is created
// affine to args.Host (unaffine if the host is at MaxBlocksPerHost).
func (m *IPAM) AssignIP(ctx context.Context, args AssignIPArgs) (Assigned, error) {
	op := "assign " + args.Addr.String()
	if err := checkHandle(args.Handle); err != nil {
		return Assigned{}, wrap(op, err)
	}
	if err := checkHost(args.Host); err != nil {
		return Assigned{}, wrap(op, err)
	}
	if !args.Addr.IsValid() || args.Addr.Zone() != "" || args.Addr.Is4In6() {
		return Assigned{}, fmt.Errorf("ipam: %s: %w: address", op, ErrInvalid)
	}
	var out Assigned
	claimedFor := ""
	err := m.retry(ctx, op, func() error {
		claimedFor = ""
		pr, prev, err := m.loadPools(ctx)
		if err != nil {
			return err
		}
		i := pr.containing(args.Addr)
		if i < 0 {
			return ErrNotInPool
		}
		p := pr.Pools[i]
		if !p.usable() {
			return fmt.Errorf("%w: %s", ErrPoolDisabled, p.Name)
		}
		c := m.newChange()
		lh, err := c.handle(ctx, args.Handle)
		if err != nil {
			return err
		}
		for _, a := range lh.rec.Addrs {
			if a.Addr == args.Addr {
				out = Assigned{Addr: a.Addr, Block: a.Block, Pool: a.Pool, Seq: a.Seq}
				return nil
			}
		}
		bc := blockOf(args.Addr, p.BlockSize)
		lb, err := c.block(ctx, p.Name, bc)
		if err != nil {
			return err
		}
		ops := []datastore.Op{datastore.Check(m.k.pools(), prev)}
		if lb.rec == nil {
			hr, hrev, err := m.loadHost(ctx, args.Host)
			if err != nil {
				return err
			}
			aff := ""
			if m.maxBPH == 0 || len(hr.Blocks) < m.maxBPH {
				aff = args.Host
				hr.Blocks = append(hr.Blocks, hostBlock{Pool: p.Name, CIDR: bc, Pending: true})
				ops = append(ops, putOp(m.k.host(args.Host), hr, hrev))
			}
			b := newBlock(p.Name, bc, aff)
			a, seq, _ := b.takeOrd(ordinal(bc, args.Addr), args.Handle, args.Host, args.Attrs, m.now())
			ops = append(ops, datastore.Create(lb.key, encode(b)))
			out = Assigned{Addr: a, Block: bc, Pool: p.Name, Seq: seq, NewBlock: aff != ""}
			claimedFor = aff
		} else {
			lb.dirty = true
			a, seq, ok := lb.rec.takeOrd(ordinal(bc, args.Addr), args.Handle, args.Host, args.Attrs, m.now())
			if !ok {
				return fmt.Errorf("%w: held by %s", ErrInUse, lb.rec.alloc(ordinal(bc, args.Addr)).Handle)
			}
			out = Assigned{Addr: a, Block: bc, Pool: p.Name, Seq: seq}
		}
		lh.rec.Addrs = append(lh.rec.Addrs, handleAddr{Pool: out.Pool, Block: out.Block, Addr: out.Addr, Seq: out.Seq})
		lh.dirty = true
		ops = append(ops, c.ops()...)
		_, err = m.st.Txn(ctx, ops...)
		return err
	})
	if err != nil {
		return Assigned{}, wrap(op, err)
	}
	if claimedFor != "" {
		if err := m.confirm(ctx, claimedFor); err != nil {
			return out, fmt.Errorf("ipam: %s: assigned, but confirming the block affinity: %w", op, err)
		}
	}
	return out, nil
}

// cloneAttrs is used by reports so callers cannot alias stored maps.
func cloneAttrs(a map[string]string) map[string]string {
	if len(a) == 0 {
		return nil
	}
	return maps.Clone(a)
}
