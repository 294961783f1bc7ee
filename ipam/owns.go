package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/datastore"
)

// ownsGetLimit: up to this many distinct blocks are read one by one when
// checking addresses; more are read with one List of every block.
const ownsGetLimit = 8

// Owns is a reflector Validator (it has the signature of
// reflector.Validator.Owns; ipam does not import reflector): it returns nil
// if every block is a confirmed affinity of node and every address is
// allocated for node (by AutoAssign, AssignIP or AssignTunnelAddress naming
// it), and otherwise an error wrapping ErrNotOwned that names (the first
// few of) what is not owned. Datastore failures are returned as they are,
// not as ErrNotOwned.
//
// It costs a bounded number of datastore round trips whatever the size of
// the announcement: one Get of node's affinity record for all blocks, and
// for the addresses one Get per distinct block up to 8, else one List of
// every block. Trust model: it checks the announcement against what IPAM
// stores, so a writer of the datastore can make any announcement pass (it
// can write IPAM records too); the node IP and VTEP MAC of an announcement
// are not IPAM data and are not checked. Safe for concurrent use.
func (m *IPAM) Owns(ctx context.Context, node string, blocks []netip.Prefix, addrs []netip.Addr) error {
	op := "owns " + node
	if err := checkHost(node); err != nil {
		return wrap("owns", err)
	}
	var bad []string
	nbad := 0
	note := func(format string, a ...any) {
		nbad++
		if len(bad) < 5 {
			bad = append(bad, fmt.Sprintf(format, a...))
		}
	}
	if len(blocks) > 0 {
		hr, _, err := m.loadHost(ctx, node)
		if err != nil {
			return wrap(op, err)
		}
		mine := make(map[netip.Prefix]bool, len(hr.Blocks))
		for _, hb := range hr.Blocks {
			if !hb.Pending {
				mine[hb.CIDR] = true
			}
		}
		for _, b := range blocks {
			if !mine[b] {
				note("block %s", b)
			}
		}
	}
	if len(addrs) > 0 {
		pr, _, err := m.loadPools(ctx)
		if err != nil {
			return wrap(op, err)
		}
		byBlock := map[string][]netip.Addr{}
		var keys []string
		for _, a := range addrs {
			i := pr.containing(a)
			if i < 0 {
				note("address %s (in no pool)", a)
				continue
			}
			p := pr.Pools[i]
			k := m.k.block(p.Name, blockOf(a, p.BlockSize))
			if byBlock[k] == nil {
				keys = append(keys, k)
			}
			byBlock[k] = append(byBlock[k], a)
		}
		recs := map[string][]byte{}
		if len(keys) <= ownsGetLimit {
			for _, k := range keys {
				kv, err := m.st.Get(ctx, k)
				if errors.Is(err, datastore.ErrNotFound) {
					continue
				}
				if err != nil {
					return wrap(op, err)
				}
				recs[k] = kv.Value
			}
		} else {
			kvs, _, err := m.st.List(ctx, m.k.blocksAll())
			if err != nil {
				return wrap(op, err)
			}
			for _, kv := range kvs {
				if byBlock[kv.Key] != nil {
					recs[kv.Key] = kv.Value
				}
			}
		}
		for _, k := range keys {
			var b *blockRec
			if v, ok := recs[k]; ok {
				if b, err = decodeBlock(v); err != nil {
					return wrap(op, fmt.Errorf("%s: %w", k, err))
				}
			}
			for _, a := range byBlock[k] {
				if b == nil {
					note("address %s (free)", a)
					continue
				}
				if al := b.alloc(ordinal(b.CIDR, a)); al == nil || al.Host != node {
					note("address %s", a)
				}
			}
		}
	}
	if nbad == 0 {
		return nil
	}
	more := ""
	if nbad > len(bad) {
		more = fmt.Sprintf(" and %d more", nbad-len(bad))
	}
	return wrap(op, fmt.Errorf("%w: %s%s", ErrNotOwned, strings.Join(bad, ", "), more))
}

// BorrowedAddrs returns the addresses allocated for host in blocks not
// affine to it (borrowed: each needs its own /32 or /128 route, announced
// by the host), sorted. It lists every block (one List), so it is a
// periodic query, not one for every assignment.
func (m *IPAM) BorrowedAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	op := "borrowed addresses of " + host
	if err := checkHost(host); err != nil {
		return nil, wrap("borrowed addresses", err)
	}
	kvs, _, err := m.st.List(ctx, m.k.blocksAll())
	if err != nil {
		return nil, wrap(op, err)
	}
	var out []netip.Addr
	for _, kv := range kvs {
		b, err := decodeBlock(kv.Value)
		if err != nil {
			m.log.Warn("ipam: borrowed addresses: skipping corrupt block", "key", kv.Key, "err", err)
			continue
		}
		if b.Affinity == host {
			continue
		}
		b.materialize()
		for ord, a := range b.Allocs {
			if a.Host == host {
				out = append(out, addrAt(b.CIDR, ord))
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}
