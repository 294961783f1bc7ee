package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/datastore"
)

// errNoFreeBlock: every block of the pool exists already.
var errNoFreeBlock = errors.New("no free block in pool")

// ClaimBlock gives host the affinity of a free block of the named pool and
// returns the block. It does not allocate addresses. It respects
// MaxBlocksPerHost (ErrExhausted at the cap) and returns ErrExhausted when
// every block of the pool is taken.
//
// A claim is two steps. First one transaction creates the block record,
// affine to host, and adds the block to the host's affinity record as
// pending; the block's creation is conditional, so of two hosts racing for a
// block exactly one succeeds. Then the affinity is confirmed. Only confirmed
// affinities are allocated from; a claim interrupted between the steps is
// confirmed (or dropped) by the host's next assignment or by GC.
//
// A claim reads at most Config.ProbeReads random candidate blocks before it
// falls back to listing the pool's blocks, so its cost does not grow with the
// number of claimed blocks until the pool is nearly full.
func (m *IPAM) ClaimBlock(ctx context.Context, host, pool string) (netip.Prefix, error) {
	op := "claim block for " + host
	if err := checkHost(host); err != nil {
		return netip.Prefix{}, fmt.Errorf("ipam: claim block: %w", err)
	}
	var out netip.Prefix
	err := m.retry(ctx, op, func() error {
		pr, prev, err := m.loadPools(ctx)
		if err != nil {
			return err
		}
		i := pr.find(pool)
		if i < 0 {
			return fmt.Errorf("%w: %q", ErrPoolNotFound, pool)
		}
		if !pr.Pools[i].usable() {
			return fmt.Errorf("%w: %s", ErrPoolDisabled, pool)
		}
		hr, hrev, err := m.loadHost(ctx, host)
		if err != nil {
			return err
		}
		if m.maxBPH > 0 && len(hr.Blocks) >= m.maxBPH {
			return fmt.Errorf("%w: host %s holds %d blocks (max %d)", ErrExhausted, host, len(hr.Blocks), m.maxBPH)
		}
		out, err = m.claimIn(ctx, prev, hr, hrev, pr.Pools[i])
		if errors.Is(err, errNoFreeBlock) {
			return fmt.Errorf("%w: pool %s has no free block", ErrExhausted, pool)
		}
		return err
	})
	if err != nil {
		return netip.Prefix{}, wrap(op, err)
	}
	return out, nil
}

// claimIn claims a free block of p for hr.Host (both steps). Conflicts are
// returned for the caller to re-read and retry; errNoFreeBlock if p is full.
func (m *IPAM) claimIn(ctx context.Context, poolsRev int64, hr *hostRec, hrev int64, p poolRec) (netip.Prefix, error) {
	n := numBlocks(p.CIDR, p.BlockSize)
	try := func(b netip.Prefix) error {
		h2 := &hostRec{Host: hr.Host, Blocks: append(slices.Clone(hr.Blocks), hostBlock{Pool: p.Name, CIDR: b, Pending: true})}
		_, err := m.st.Txn(ctx,
			datastore.Check(m.k.pools(), poolsRev),
			datastore.Create(m.k.block(p.Name, b), encode(newBlock(p.Name, b, hr.Host))),
			putOp(m.k.host(hr.Host), h2, hrev))
		if err != nil {
			return err
		}
		m.log.Debug("ipam: block claimed (pending)", "host", hr.Host, "block", b)
		return m.confirm(ctx, hr.Host)
	}
	if n > uint64(m.probes) {
		for range m.probes {
			b := blockAt(p.CIDR, p.BlockSize, m.randN(n))
			_, err := m.st.Get(ctx, m.k.block(p.Name, b))
			if errors.Is(err, datastore.ErrNotFound) {
				return b, try(b)
			}
			if err != nil {
				return netip.Prefix{}, err
			}
		}
	}
	// Fallback: list the pool's blocks and take a gap.
	kvs, _, err := m.st.List(ctx, m.k.blocks(p.Name))
	if err != nil {
		return netip.Prefix{}, err
	}
	if uint64(len(kvs)) >= n {
		return netip.Prefix{}, errNoFreeBlock
	}
	taken := make(map[uint64]bool, len(kvs))
	for _, kv := range kvs {
		b, err := parseBlockSegment(kv.Key[len(m.k.blocks(p.Name)):])
		if err != nil {
			return netip.Prefix{}, err
		}
		taken[blockIndex(p.CIDR, b)] = true
	}
	start := m.randN(n)
	for j := uint64(0); j <= uint64(len(kvs)); j++ {
		idx := (start + j) % n
		if !taken[idx] {
			b := blockAt(p.CIDR, p.BlockSize, idx)
			return b, try(b)
		}
	}
	return netip.Prefix{}, errNoFreeBlock
}

// confirm completes the claims of host: every pending affinity whose block
// is affine to host becomes confirmed, the others are dropped.
func (m *IPAM) confirm(ctx context.Context, host string) error {
	return m.retry(ctx, "confirm affinity of "+host, func() error {
		hr, hrev, err := m.loadHost(ctx, host)
		if err != nil {
			return err
		}
		changed := false
		kept := hr.Blocks[:0:0]
		for _, hb := range hr.Blocks {
			if !hb.Pending {
				kept = append(kept, hb)
				continue
			}
			changed = true
			b, _, err := m.loadBlock(ctx, hb.Pool, hb.CIDR)
			if err != nil {
				return err
			}
			if b != nil && b.Affinity == host {
				hb.Pending = false
				kept = append(kept, hb)
				m.log.Debug("ipam: affinity confirmed", "host", host, "block", hb.CIDR)
			}
		}
		if !changed {
			return nil
		}
		hr.Blocks = kept
		_, err = m.st.Txn(ctx, datastore.Update(m.k.host(host), encode(hr), hrev))
		return err
	})
}

// ReleaseBlockAffinity gives up host's affinity for block. An empty block
// is deleted (and may be claimed again by anyone); a block that still holds
// addresses is kept without affinity, so its addresses stay valid and other
// hosts may borrow from it. Releasing an affinity that host does not hold is
// not an error.
func (m *IPAM) ReleaseBlockAffinity(ctx context.Context, host string, block netip.Prefix) error {
	if err := checkHost(host); err != nil {
		return fmt.Errorf("ipam: release affinity: %w", err)
	}
	pr, _, err := m.loadPools(ctx)
	if err != nil {
		return fmt.Errorf("ipam: release affinity %s: %w", block, err)
	}
	i := pr.containing(block.Addr())
	if i < 0 || pr.Pools[i].BlockSize != block.Bits() || block.Masked() != block {
		return fmt.Errorf("ipam: release affinity %s: %w", block, ErrNotInPool)
	}
	_, err = m.unaffine(ctx, pr.Pools[i].Name, block, host, func(*blockRec, *hostRec) bool { return true })
	if err != nil {
		return fmt.Errorf("ipam: release affinity of %s for %s: %w", block, host, err)
	}
	return nil
}

// unaffine removes block from host's affinities if ok(block, hostRec) holds
// on fresh state, in one transaction: an empty block is deleted, a non-empty
// one loses its affinity. It reports whether it changed anything.
func (m *IPAM) unaffine(ctx context.Context, pool string, block netip.Prefix, host string, ok func(*blockRec, *hostRec) bool) (bool, error) {
	done := false
	err := m.retry(ctx, "release affinity", func() error {
		done = false
		b, brev, err := m.loadBlock(ctx, pool, block)
		if err != nil {
			return err
		}
		var ops []datastore.Op
		var hr *hostRec
		var hrev int64
		if host != "" {
			if hr, hrev, err = m.loadHost(ctx, host); err != nil {
				return err
			}
			if b != nil && !ok(b, hr) {
				return nil
			}
			if i := hr.index(block); i >= 0 {
				hr.Blocks = slices.Delete(hr.Blocks, i, i+1)
				if len(hr.Blocks) == 0 {
					ops = append(ops, datastore.Delete(m.k.host(host), hrev))
				} else {
					ops = append(ops, datastore.Update(m.k.host(host), encode(hr), hrev))
				}
			}
		} else if b != nil && !ok(b, nil) {
			return nil
		}
		if b != nil && b.Affinity == host {
			if b.nallocs() == 0 {
				ops = append(ops, datastore.Delete(m.k.block(pool, block), brev))
			} else {
				b.Affinity = ""
				ops = append(ops, datastore.Update(m.k.block(pool, block), encode(b), brev))
			}
		}
		if len(ops) == 0 {
			return nil
		}
		if _, err := m.st.Txn(ctx, ops...); err != nil {
			return err
		}
		done = true
		return nil
	})
	return done, err
}

// dropBlock deletes an empty block and its affinity (used by DeletePool).
func (m *IPAM) dropBlock(ctx context.Context, pool string, block netip.Prefix, host string) error {
	_, err := m.unaffine(ctx, pool, block, host, func(b *blockRec, _ *hostRec) bool { return b.nallocs() == 0 })
	return err
}
