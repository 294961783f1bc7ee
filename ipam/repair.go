package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/datastore"
)

// RepairResult says what Repair did. A plain value.
type RepairResult struct {
	// Fixed are the problems repaired.
	Fixed []Problem
	// Unfixed are the problems Repair cannot fix on its own, each with
	// the reason and what to do in Detail.
	Unfixed []Problem
}

// Repair fixes the problems Check reported, each in one conditional
// transaction on fresh reads (a problem gone meanwhile is skipped).
// Blocks are the source of truth and the other records are rebuilt from
// them, so no allocation of a live pod is freed:
//
//   - a corrupt or dangling handle record is rebuilt from the allocations
//     the blocks hold for the handle (deleted if there are none), and an
//     orphan allocation is added back to its handle's record: the pod's
//     DEL (ReleaseByHandle) then frees it, or GC does;
//   - a corrupt block is rebuilt from the handle records that list
//     addresses in it, affine to the host whose record lists it
//     (attributes and allocation times are lost);
//   - a corrupt or mismatched host record is rebuilt from the blocks
//     affine to the host; a block or record of an unknown host is released
//     as by ReleaseHost;
//   - an empty block outside every pool is deleted;
//   - a corrupt pools record is deleted: the pools must be created again
//     (with the same CIDRs and block sizes; the blocks are kept).
//
// A block outside every pool that still holds addresses is left (Unfixed):
// create a pool covering it, or restore the store.
func (m *IPAM) Repair(ctx context.Context, problems []Problem) (RepairResult, error) {
	var res RepairResult
	done := map[string]bool{}
	for _, p := range problems {
		id := p.Kind.String() + " " + p.Key
		if done[id] {
			continue
		}
		done[id] = true
		why := ""
		err := m.retry(ctx, "repair "+p.Key, func() error {
			var err error
			why, err = m.repairOne(ctx, p)
			return err
		})
		if err != nil {
			return res, wrap("repair "+p.Key, err)
		}
		if why != "" {
			q := p
			q.Detail = why
			res.Unfixed = append(res.Unfixed, q)
		} else {
			res.Fixed = append(res.Fixed, p)
		}
	}
	return res, nil
}

// rawState is every IPAM record with its revision.
type rawState struct {
	kvs     map[string]datastore.KV
	blocks  map[string]*blockRec // decodable blocks by key
	handles map[string]*handleRec
	hosts   map[string]*hostRec
}

func (m *IPAM) rawState(ctx context.Context) (*rawState, error) {
	kvs, _, err := m.st.List(ctx, m.k.prefix)
	if err != nil {
		return nil, err
	}
	s := &rawState{kvs: map[string]datastore.KV{}, blocks: map[string]*blockRec{}, handles: map[string]*handleRec{}, hosts: map[string]*hostRec{}}
	for _, kv := range kvs {
		s.kvs[kv.Key] = kv
		rest := kv.Key[len(m.k.prefix):]
		switch {
		case strings.HasPrefix(rest, "blocks/"):
			if b, err := decodeBlock(kv.Value); err == nil {
				b.materialize()
				s.blocks[kv.Key] = b
			}
		case strings.HasPrefix(rest, "handles/"):
			if h, err := decode[handleRec]("handle", kv.Value); err == nil {
				s.handles[rest[len("handles/"):]] = h
			}
		case strings.HasPrefix(rest, "hosts/"):
			if h, err := decode[hostRec]("host", kv.Value); err == nil {
				s.hosts[rest[len("hosts/"):]] = h
			}
		}
	}
	return s, nil
}

// setOp writes rec at key as read in s (create, update, or delete when
// rec is nil); nil when nothing changes.
func (s *rawState) setOp(key string, rec any) *datastore.Op {
	kv, exists := s.kvs[key]
	var op datastore.Op
	switch {
	case rec == nil && !exists:
		return nil
	case rec == nil:
		op = datastore.Delete(key, kv.Revision)
	case !exists:
		op = datastore.Create(key, encode(rec))
	default:
		v := encode(rec)
		if string(v) == string(kv.Value) {
			return nil
		}
		op = datastore.Update(key, v, kv.Revision)
	}
	return &op
}

// handleFromBlocks is handle h's record as the blocks say (nil if none).
func (s *rawState) handleFromBlocks(h string) *handleRec {
	r := &handleRec{Handle: h}
	for _, b := range s.blocks {
		for ord, a := range b.Allocs {
			if a.Handle == h {
				r.Addrs = append(r.Addrs, handleAddr{Pool: b.Pool, Block: b.CIDR, Addr: addrAt(b.CIDR, ord), Seq: a.Seq})
			}
		}
	}
	if len(r.Addrs) == 0 {
		return nil
	}
	slices.SortFunc(r.Addrs, func(x, y handleAddr) int { return x.Addr.Compare(y.Addr) })
	return r
}

// hostFromBlocks is host h's record as the blocks say, keeping the order,
// pending claims and tunnel addresses of the old record when it decodes.
func (s *rawState) hostFromBlocks(h string) *hostRec {
	r := &hostRec{Host: h}
	affine := map[netip.Prefix]*blockRec{}
	for _, b := range s.blocks {
		if b.Affinity == h {
			affine[b.CIDR] = b
		}
	}
	if old := s.hosts[h]; old != nil {
		r.Tunnel4, r.Tunnel6 = old.Tunnel4, old.Tunnel6
		for _, hb := range old.Blocks {
			if b := affine[hb.CIDR]; b != nil && b.Pool == hb.Pool {
				hb.Pending = false
				r.Blocks = append(r.Blocks, hb)
				delete(affine, hb.CIDR)
			}
		}
	}
	var rest []hostBlock
	for c, b := range affine {
		rest = append(rest, hostBlock{Pool: b.Pool, CIDR: c})
	}
	slices.SortFunc(rest, func(x, y hostBlock) int { return x.CIDR.Addr().Compare(y.CIDR.Addr()) })
	r.Blocks = append(r.Blocks, rest...)
	if len(r.Blocks) == 0 {
		return nil
	}
	return r
}

func decodes[T any](v []byte) bool {
	_, err := decode[T]("", v)
	return err == nil
}

// repairOne fixes p on fresh state; it returns why not if it cannot.
func (m *IPAM) repairOne(ctx context.Context, p Problem) (string, error) {
	s, err := m.rawState(ctx)
	if err != nil {
		return "", err
	}
	if _, ok := s.kvs[p.Key]; !ok && p.Kind != ProblemUnknownHost {
		return "", nil // gone meanwhile
	}
	rest, _ := strings.CutPrefix(p.Key, m.k.prefix)
	var ops []datastore.Op
	add := func(op *datastore.Op) {
		if op != nil {
			ops = append(ops, *op)
		}
	}
	fixHost := func(h string) { add(s.setOp(m.k.host(h), s.hostFromBlocks(h))) }
	fixHandle := func(h string) {
		if r := s.handleFromBlocks(h); r != nil {
			add(s.setOp(m.k.handle(h), r))
		} else {
			add(s.setOp(m.k.handle(h), nil))
		}
	}
	switch {
	case rest == "pools":
		if _, err := decode[poolsRec]("pools", s.kvs[p.Key].Value); err == nil {
			return "", nil
		}
		add(s.setOp(p.Key, nil))
	case p.Kind == ProblemUnknownHost:
		h, isHost := strings.CutPrefix(rest, "hosts/")
		if !isHost {
			b := s.blocks[p.Key]
			if b == nil || b.Affinity == "" {
				return "", nil
			}
			h = b.Affinity
		}
		_, err := m.ReleaseHost(ctx, h, ReleaseHostOptions{Scan: true})
		return "", err
	case strings.HasPrefix(rest, "handles/"):
		fixHandle(rest[len("handles/"):])
	case strings.HasPrefix(rest, "hosts/"):
		fixHost(rest[len("hosts/"):])
	case strings.HasPrefix(rest, "blocks/"):
		b := s.blocks[p.Key]
		if b == nil {
			// Corrupt: rebuild it from the handles and hosts that name it.
			seg := rest[strings.LastIndexByte(rest, '/')+1:]
			pool := strings.TrimSuffix(strings.TrimPrefix(rest, "blocks/"), "/"+seg)
			cidr, err := parseBlockSegment(seg)
			if err != nil || p.Key != m.k.block(pool, cidr) || cidr.Addr().BitLen()-cidr.Bits() > 12 {
				return "the key does not name a block; delete it by hand (tabbyctl cannot know what it held)", nil
			}
			aff := ""
			for h, hr := range s.hosts {
				if hr.index(cidr) >= 0 && (aff == "" || h < aff) {
					aff = h
				}
			}
			nb := newBlock(pool, cidr, aff)
			for h, hr := range s.handles {
				for _, a := range hr.Addrs {
					if a.Block == cidr && a.Pool == pool && cidr.Contains(a.Addr) && a.Seq > 0 {
						if nb.alloc(ordinal(cidr, a.Addr)) != nil {
							continue
						}
						nb.takeOrd(ordinal(cidr, a.Addr), h, aff, nil, m.now())
						nb.Allocs[ordinal(cidr, a.Addr)].Seq = a.Seq
						nb.Seq = max(nb.Seq, a.Seq)
					}
				}
			}
			nb.Seq = max(nb.Seq, uint64(len(nb.Allocs)))
			add(s.setOp(p.Key, nb))
			break
		}
		switch p.Kind {
		case ProblemOrphanAllocation:
			hs := map[string]bool{}
			for _, a := range b.Allocs {
				hs[a.Handle] = true
			}
			for h := range hs {
				if validRef(h) {
					fixHandle(h)
				}
			}
		case ProblemAffinityMismatch:
			if b.Affinity != "" {
				fixHost(b.Affinity)
			}
		case ProblemNoPool:
			if kv, ok := s.kvs[m.k.pools()]; !ok || !decodes[poolsRec](kv.Value) {
				return "the pools record is missing or was dropped as corrupt: create the pools again (same CIDRs and block sizes)", nil
			}
			if b.nallocs() > 0 {
				return fmt.Sprintf("block %s holds %d addresses outside every pool: create a pool covering it, or restore the store", b.CIDR, b.nallocs()), nil
			}
			add(s.setOp(p.Key, nil))
			if b.Affinity != "" {
				delete(s.blocks, p.Key)
				fixHost(b.Affinity)
			}
		}
	}
	if len(ops) == 0 {
		return "", nil
	}
	_, err = m.st.Txn(ctx, ops...)
	return "", err
}

// releaseCorruptHandle frees what handle holds when its record does not
// decode: every allocation for handle found in the blocks (one List of
// all blocks), then the record. Blocks that do not decode either are
// reported (ErrCorrupt) with what was freed.
func (m *IPAM) releaseCorruptHandle(ctx context.Context, handle string) ([]netip.Addr, error) {
	s, err := m.rawState(ctx)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	var ops []datastore.Op
	var unreadable []string
	for key, kv := range s.kvs {
		if !strings.HasPrefix(key, m.k.blocksAll()) {
			continue
		}
		b := s.blocks[key]
		if b == nil {
			unreadable = append(unreadable, key)
			continue
		}
		freed := false
		for ord, a := range b.Allocs {
			if a.Handle == handle {
				b.release(ord, handle, a.Seq, m.now())
				out = append(out, addrAt(b.CIDR, ord))
				freed = true
			}
		}
		if freed {
			ops = append(ops, datastore.Update(key, encode(b), kv.Revision))
		}
	}
	if op := s.setOp(m.k.handle(handle), nil); op != nil {
		ops = append(ops, *op)
	}
	if len(ops) > 0 {
		if _, err := m.st.Txn(ctx, ops...); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	if len(unreadable) > 0 {
		slices.Sort(unreadable)
		return out, fmt.Errorf("%w: handle record corrupt; freed %v from the blocks, but blocks %v do not decode (tabbyctl ipam check --fix)", ErrCorrupt, out, unreadable)
	}
	return out, nil
}
