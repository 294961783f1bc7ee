package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/datastore"
)

// ReleaseHostOptions tunes ReleaseHost. A plain value; the zero value reads
// only the host's own records.
type ReleaseHostOptions struct {
	// Scan also lists every block to find blocks affine to the host that
	// its host record does not list (a store damaged by hand; Check reports
	// them as affinity-mismatch). It costs one List of all blocks.
	Scan bool
}

// HostRelease says what ReleaseHost did. A plain value.
type HostRelease struct {
	Host string
	// TunnelAddrs are the freed addresses of the host's tunnel handle
	// (TunnelHandle(Host)).
	TunnelAddrs []netip.Addr
	// DeletedBlocks were affine to the host and empty: they are deleted
	// and can be claimed again.
	DeletedBlocks []netip.Prefix
	// UnaffinedBlocks were affine to the host and still hold addresses:
	// they are now affine to no host. Their Remaining addresses stay
	// allocated until their handles are released (or GC releases them);
	// GC then deletes the emptied blocks.
	UnaffinedBlocks []netip.Prefix
	Remaining       int
	// RecordRemoved: the host's record (its affinity list) was deleted.
	RecordRemoved bool
}

// Changed reports whether the release changed anything.
func (r HostRelease) Changed() bool {
	return len(r.TunnelAddrs)+len(r.DeletedBlocks)+len(r.UnaffinedBlocks) > 0 || r.RecordRemoved
}

// ReleaseHost cleans up after a node removed from the cluster for good:
// it frees the host's tunnel address, deletes the empty blocks affine to
// it, makes the others affine to no host (their addresses stay valid; see
// HostRelease.UnaffinedBlocks), drops its pending and confirmed affinities
// and deletes its host record. Addresses the host borrowed from other
// blocks, and its pods' addresses, are left to their handles (or GC with
// GCOptions.Valid). Releasing an unknown or already released host is not
// an error and changes nothing.
//
// Every change is a transaction conditioned on the host record and the
// blocks it touches, at most maxTxnBlocks blocks each (etcd allows 128
// operations per transaction). An assignment for the host running at the
// same time either commits before (and its block is released) or claims a
// new block afterwards, listed in a new host record: there is never a block
// affine to the host that its record does not list. A host that keeps
// claiming blocks while it is released (it is not gone) makes ReleaseHost
// give up after Config.MaxRetries rounds with ErrContention.
func (m *IPAM) ReleaseHost(ctx context.Context, host string, opts ReleaseHostOptions) (HostRelease, error) {
	if err := checkHost(host); err != nil {
		return HostRelease{}, fmt.Errorf("ipam: release host: %w", err)
	}
	var extra []hostBlock
	if opts.Scan {
		kvs, _, err := m.st.List(ctx, m.k.blocksAll())
		if err != nil {
			return HostRelease{}, fmt.Errorf("ipam: release host %s: %w", host, err)
		}
		for _, kv := range kvs {
			b, err := decodeBlock(kv.Value)
			if err != nil {
				m.log.Warn("ipam: release host: skipping corrupt block", "key", kv.Key, "err", err)
				continue
			}
			if b.Affinity == host {
				extra = append(extra, hostBlock{Pool: b.Pool, CIDR: b.CIDR})
			}
		}
	}
	return m.releaseHost(ctx, host, extra)
}

// releaseHost is ReleaseHost; extra are blocks (believed) affine to host
// besides those its record lists.
func (m *IPAM) releaseHost(ctx context.Context, host string, extra []hostBlock) (HostRelease, error) {
	op := "release host " + host
	res := HostRelease{Host: host}
	// The tunnel address first, so that its block may be deleted below.
	if th := TunnelHandle(host); validRef(th) {
		got, err := m.ReleaseByHandle(ctx, th)
		if err != nil {
			return res, wrap(op, err)
		}
		res.TunnelAddrs = got
	}
	seen := map[netip.Prefix]bool{}
	for _, hb := range extra {
		seen[hb.CIDR] = true
	}
	first, fresh := true, 0
	for done := false; !done; {
		err := m.retry(ctx, op, func() error {
			hr, hrev, err := m.loadHost(ctx, host)
			if err != nil {
				return err
			}
			// Blocks the host claimed since we started: the host is
			// still assigning. Allowed, within the retry budget.
			for _, hb := range hr.Blocks {
				if !seen[hb.CIDR] {
					seen[hb.CIDR] = true
					if !first {
						fresh++
					}
				}
			}
			first = false
			if fresh >= m.tries {
				return fmt.Errorf("%w: host %s keeps claiming blocks", ErrContention, host)
			}
			todo := slices.Clone(hr.Blocks)
			for _, hb := range extra {
				if hr.index(hb.CIDR) < 0 {
					todo = append(todo, hostBlock{Pool: hb.Pool, CIDR: hb.CIDR})
				}
			}
			if len(todo) == 0 && hrev == 0 {
				done = true
				return nil
			}
			batch := todo[:min(len(todo), maxTxnBlocks)]
			var ops []datastore.Op
			var deleted, unaffined []netip.Prefix
			remaining := 0
			for _, hb := range batch {
				b, brev, err := m.loadBlock(ctx, hb.Pool, hb.CIDR)
				if err != nil {
					return err
				}
				if b == nil || b.Affinity != host {
					continue // only the stale entry goes
				}
				key := m.k.block(hb.Pool, hb.CIDR)
				if n := b.nallocs(); n == 0 {
					ops = append(ops, datastore.Delete(key, brev))
					deleted = append(deleted, hb.CIDR)
				} else {
					b.Affinity = ""
					ops = append(ops, datastore.Update(key, encode(b), brev))
					unaffined = append(unaffined, hb.CIDR)
					remaining += n
				}
			}
			// The host record loses the batch's entries, in the same
			// transaction; without a record, its absence is the
			// condition (a claim would create it).
			left := &hostRec{Host: host}
			for _, hb := range hr.Blocks {
				if !slices.ContainsFunc(batch, func(x hostBlock) bool { return x.CIDR == hb.CIDR }) {
					left.Blocks = append(left.Blocks, hb)
				}
			}
			hkey := m.k.host(host)
			switch {
			case hrev == 0:
				ops = append(ops, datastore.Check(hkey, 0))
			case len(left.Blocks) == 0:
				ops = append(ops, datastore.Delete(hkey, hrev))
			default:
				ops = append(ops, datastore.Update(hkey, encode(left), hrev))
			}
			if _, err := m.st.Txn(ctx, ops...); err != nil {
				return err
			}
			extra = slices.DeleteFunc(extra, func(x hostBlock) bool {
				return slices.ContainsFunc(batch, func(y hostBlock) bool { return x.CIDR == y.CIDR })
			})
			res.DeletedBlocks = append(res.DeletedBlocks, deleted...)
			res.UnaffinedBlocks = append(res.UnaffinedBlocks, unaffined...)
			res.Remaining += remaining
			if hrev != 0 && len(left.Blocks) == 0 {
				res.RecordRemoved = true
			}
			m.log.Debug("ipam: released host blocks", "host", host, "deleted", len(deleted), "unaffined", len(unaffined))
			return nil
		})
		if err != nil {
			return res, wrap(op, err)
		}
	}
	return res, nil
}
