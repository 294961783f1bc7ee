package ipam

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tabbynet/tabby/datastore"
)

// GCOptions says what GC may release. A plain value.
type GCOptions struct {
	// Valid reports whether a handle is still in use (for pods: the
	// container exists; include the tunnel handles of live nodes).
	// Allocations whose handle is not valid and that are older than
	// GracePeriod are released. nil releases no allocation.
	Valid func(handle string) bool
	// GracePeriod protects fresh allocations (an ADD in flight whose
	// container is not yet visible to the caller).
	GracePeriod time.Duration
	// MinEmptyAge: a block's affinity is released once the block has been
	// empty this long (0: never by age). Independently, a block found empty
	// by two GC passes in a row is released. A host's last block is never
	// released.
	MinEmptyAge time.Duration
	// LiveHosts, if not nil, are the hosts still in the cluster: every
	// other host that has a host record or a block affinity is released as
	// by ReleaseHost (its tunnel address, its affinities and its host
	// record) before anything else, so that Check(ctx, LiveHosts) then
	// reports no unknown host. nil, the default, releases no host; an empty
	// non-nil list releases every host, so pass nil when the list of nodes
	// is not known. A host with an allocation made for it less than
	// GracePeriod ago (a node that joined after the list was taken) is
	// kept for a later pass.
	LiveHosts []string
}

// GCResult says what one GC pass did. A plain value.
type GCResult struct {
	// Released are the addresses freed.
	Released []netip.Addr
	// ReleasedBlocks are the empty blocks whose affinity was released (the
	// blocks were deleted and can be claimed again).
	ReleasedBlocks []netip.Prefix
	// MarkedEmpty counts blocks seen empty for the first time.
	MarkedEmpty int
	// Confirmed counts pending affinities resolved (confirmed or dropped).
	Confirmed int
	// ReleasedHosts are the hosts not in GCOptions.LiveHosts that were
	// released, with what was released for each (their tunnel addresses
	// and blocks are listed there, not in Released and ReleasedBlocks).
	ReleasedHosts []HostRelease
}

// GC releases leaked allocations and idle block affinities, and completes
// interrupted claims. It lists the blocks (GC is a periodic, cluster-wide
// task, not on the assignment path). Every change is conditional on what GC
// read, so it never frees an allocation made after it looked.
func (m *IPAM) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	var res GCResult
	now := m.now()
	// 0. Hosts gone from the cluster.
	if opts.LiveHosts != nil {
		rels, err := m.releaseDeadHosts(ctx, opts.LiveHosts, now, opts.GracePeriod)
		res.ReleasedHosts = rels
		if err != nil {
			return res, wrap("gc", err)
		}
	}
	// 1. Leaked allocations.
	kvs, _, err := m.st.List(ctx, m.k.blocksAll())
	if err != nil {
		return res, wrap("gc", err)
	}
	if opts.Valid != nil {
		for _, kv := range kvs {
			b, err := decodeBlock(kv.Value)
			if err != nil {
				m.log.Warn("ipam: gc: skipping corrupt block", "key", kv.Key, "err", err)
				continue
			}
			b.materialize()
			var rels []Release
			for ord, a := range b.Allocs {
				if !opts.Valid(a.Handle) && now.Sub(a.Time) >= opts.GracePeriod {
					rels = append(rels, Release{Addr: addrAt(b.CIDR, ord), Handle: a.Handle, Seq: a.Seq})
				}
			}
			if len(rels) == 0 {
				continue
			}
			slices.SortFunc(rels, func(x, y Release) int { return x.Addr.Compare(y.Addr) })
			got, err := m.ReleaseIPs(ctx, rels...)
			if err != nil {
				return res, wrap("gc", err)
			}
			res.Released = append(res.Released, got...)
		}
	}
	// 2. Interrupted claims.
	hkvs, _, err := m.st.List(ctx, m.k.hostsAll())
	if err != nil {
		return res, wrap("gc", err)
	}
	for _, kv := range hkvs {
		if !strings.Contains(string(kv.Value), `"pending":true`) {
			continue
		}
		host := kv.Key[len(m.k.hostsAll()):]
		if err := m.confirm(ctx, host); err != nil {
			return res, wrap("gc", err)
		}
		res.Confirmed++
	}
	// 3. Idle blocks.
	if opts.Valid != nil {
		if kvs, _, err = m.st.List(ctx, m.k.blocksAll()); err != nil {
			return res, wrap("gc", err)
		}
	}
	idle := func(b *blockRec) bool {
		return b.nallocs() == 0 && (b.SeenEmpty ||
			opts.MinEmptyAge > 0 && !b.EmptySince.IsZero() && now.Sub(b.EmptySince) >= opts.MinEmptyAge)
	}
	for _, kv := range kvs {
		b, err := decodeBlock(kv.Value)
		if err != nil || b.nallocs() > 0 {
			continue
		}
		if !idle(b) {
			b.SeenEmpty = true
			_, err := m.st.Txn(ctx, datastore.Update(kv.Key, encode(b), kv.Revision))
			if err != nil && !isConflict(err) {
				return res, wrap("gc", err)
			}
			if err == nil {
				res.MarkedEmpty++
			}
			continue
		}
		done, err := m.unaffine(ctx, b.Pool, b.CIDR, b.Affinity, func(fb *blockRec, hr *hostRec) bool {
			return fb.Affinity == b.Affinity && idle(fb) && (hr == nil || len(hr.Blocks) > 1)
		})
		if err != nil {
			return res, wrap("gc", err)
		}
		if done {
			res.ReleasedBlocks = append(res.ReleasedBlocks, b.CIDR)
			m.log.Debug("ipam: gc released block", "block", b.CIDR, "host", b.Affinity)
		}
	}
	return res, nil
}

// releaseDeadHosts releases every host not in live that has a host record
// or a block affine to it: the same set Check(ctx, live) reports as unknown
// hosts, except those with an allocation younger than grace.
func (m *IPAM) releaseDeadHosts(ctx context.Context, live []string, now time.Time, grace time.Duration) ([]HostRelease, error) {
	alive := make(map[string]bool, len(live))
	for _, h := range live {
		alive[h] = true
	}
	dead := map[string][]hostBlock{}
	fresh := map[string]bool{}
	hkvs, _, err := m.st.List(ctx, m.k.hostsAll())
	if err != nil {
		return nil, err
	}
	for _, kv := range hkvs {
		if h := kv.Key[len(m.k.hostsAll()):]; !alive[h] {
			dead[h] = nil
		}
	}
	kvs, _, err := m.st.List(ctx, m.k.blocksAll())
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		b, err := decodeBlock(kv.Value)
		if err != nil {
			m.log.Warn("ipam: gc: skipping corrupt block", "key", kv.Key, "err", err)
			continue
		}
		if b.Affinity != "" && !alive[b.Affinity] {
			dead[b.Affinity] = append(dead[b.Affinity], hostBlock{Pool: b.Pool, CIDR: b.CIDR})
		}
		if grace > 0 {
			b.materialize()
			for _, a := range b.Allocs {
				if a.Host != "" && !alive[a.Host] && now.Sub(a.Time) < grace {
					fresh[a.Host] = true
				}
			}
		}
	}
	var out []HostRelease
	for _, h := range slices.Sorted(maps.Keys(dead)) {
		if fresh[h] {
			m.log.Debug("ipam: gc: keeping a host with fresh allocations", "host", h)
			continue
		}
		if !validRef(h) {
			m.log.Warn("ipam: gc: skipping invalid host name", "host", h)
			continue
		}
		r, err := m.releaseHost(ctx, h, dead[h])
		if errors.Is(err, ErrCorrupt) {
			m.log.Warn("ipam: gc: cannot release host", "host", h, "err", err)
			continue
		}
		if err != nil {
			return out, err
		}
		if r.Changed() {
			out = append(out, r)
			m.log.Debug("ipam: gc released host", "host", h, "deleted", len(r.DeletedBlocks), "unaffined", len(r.UnaffinedBlocks))
		}
	}
	return out, nil
}
