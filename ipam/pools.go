package ipam

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/datastore"
)

// CreatePool validates p (see Pool and Pool.Validate) and stores it.
// BlockSize 0 becomes the default. ErrPoolExists if the name is taken,
// ErrPoolOverlap if the CIDR overlaps another pool, ErrInvalid for a
// malformed pool or one that cannot carry pod traffic (loopback, multicast,
// link-local, unspecified, reserved). Nothing is written when it fails.
func (m *IPAM) CreatePool(ctx context.Context, p Pool) error {
	p = p.withDefaults()
	if err := p.Validate(); err != nil {
		return fmt.Errorf("ipam: create pool: %w", err)
	}
	return wrap("create pool "+p.Name, m.retry(ctx, "create pool "+p.Name, func() error {
		r, rev, err := m.loadPools(ctx)
		if err != nil {
			return err
		}
		for _, o := range r.Pools {
			if o.Name == p.Name {
				return ErrPoolExists
			}
			if o.CIDR.Overlaps(p.CIDR) {
				return fmt.Errorf("%w: %s overlaps pool %s (%s)", ErrPoolOverlap, p.CIDR, o.Name, o.CIDR)
			}
		}
		r.Pools = append(r.Pools, poolRec{Pool: p})
		slices.SortFunc(r.Pools, func(a, b poolRec) int { return strings.Compare(a.Name, b.Name) })
		_, err = m.st.Txn(ctx, putOp(m.k.pools(), r, rev))
		if err != nil {
			return err
		}
		m.log.Debug("ipam: pool created", "pool", p.Name, "cidr", p.CIDR, "blockSize", p.BlockSize)
		return nil
	}))
}

// ListPools returns every pool sorted by name. A pool being deleted is
// reported as disabled.
func (m *IPAM) ListPools(ctx context.Context) ([]Pool, error) {
	r, _, err := m.loadPools(ctx)
	if err != nil {
		return nil, fmt.Errorf("ipam: list pools: %w", err)
	}
	out := make([]Pool, 0, len(r.Pools))
	for _, p := range r.Pools {
		q := p.Pool
		q.Disabled = q.Disabled || p.Deleting
		out = append(out, q)
	}
	return out, nil
}

// GetPool returns one pool or ErrPoolNotFound.
func (m *IPAM) GetPool(ctx context.Context, name string) (Pool, error) {
	ps, err := m.ListPools(ctx)
	if err != nil {
		return Pool{}, err
	}
	for _, p := range ps {
		if p.Name == name {
			return p, nil
		}
	}
	return Pool{}, fmt.Errorf("ipam: get pool %q: %w", name, ErrPoolNotFound)
}

// UpdatePool changes the mutable fields (Disabled, NATOutgoing, VXLANMode) of
// the pool named p.Name. p.CIDR and p.BlockSize must match the stored pool
// (BlockSize 0 means unchanged); changing them is ErrInvalid.
func (m *IPAM) UpdatePool(ctx context.Context, p Pool) error {
	return wrap("update pool "+p.Name, m.retry(ctx, "update pool "+p.Name, func() error {
		r, rev, err := m.loadPools(ctx)
		if err != nil {
			return err
		}
		i := r.find(p.Name)
		if i < 0 {
			return ErrPoolNotFound
		}
		old := r.Pools[i]
		if r.Pools[i].Deleting {
			return fmt.Errorf("%w: being deleted", ErrPoolDisabled)
		}
		if p.BlockSize == 0 {
			p.BlockSize = old.BlockSize
		}
		if p.CIDR != old.CIDR || p.BlockSize != old.BlockSize {
			return fmt.Errorf("%w: CIDR and block size are immutable (%s /%d)", ErrInvalid, old.CIDR, old.BlockSize)
		}
		if err := p.Validate(); err != nil {
			return err
		}
		if old.Pool == p {
			return nil
		}
		r.Pools[i].Pool = p
		if _, err := m.st.Txn(ctx, datastore.Update(m.k.pools(), encode(r), rev)); err != nil {
			return err
		}
		return nil
	}))
}

// DeletePool removes a pool that holds no allocations, together with its
// (empty) blocks and their affinities. It first marks the pool as being
// deleted, so that no allocation can race with the deletion; if allocations
// remain it clears the mark and returns ErrPoolInUse. A DeletePool
// interrupted half way leaves the pool disabled; calling it again finishes.
func (m *IPAM) DeletePool(ctx context.Context, name string) error {
	op := "delete pool " + name
	var wasDeleting bool
	// 1. Mark the pool deleting: allocations check the pools record in their
	// transaction, so none can commit in this pool after this.
	err := m.retry(ctx, op, func() error {
		r, rev, err := m.loadPools(ctx)
		if err != nil {
			return err
		}
		i := r.find(name)
		if i < 0 {
			return fmt.Errorf("%w: %q", ErrPoolNotFound, name)
		}
		wasDeleting = r.Pools[i].Deleting
		if wasDeleting {
			return nil
		}
		r.Pools[i].Deleting = true
		_, err = m.st.Txn(ctx, datastore.Update(m.k.pools(), encode(r), rev))
		return err
	})
	if err != nil {
		return wrap(op, err)
	}
	unmark := func() {
		_ = m.retry(context.WithoutCancel(ctx), op, func() error {
			r, rev, err := m.loadPools(ctx)
			if err != nil {
				return err
			}
			if i := r.find(name); i >= 0 && r.Pools[i].Deleting {
				r.Pools[i].Deleting = false
				_, err = m.st.Txn(ctx, datastore.Update(m.k.pools(), encode(r), rev))
			}
			return err
		})
	}
	// 2. Refuse if allocations remain.
	kvs, _, err := m.st.List(ctx, m.k.blocks(name))
	if err != nil {
		if !wasDeleting {
			unmark()
		}
		return wrap(op, err)
	}
	for _, kv := range kvs {
		b, err := decodeBlock(kv.Value)
		if err != nil {
			return fmt.Errorf("ipam: %s: %s: %w", op, kv.Key, err)
		}
		if b.nallocs() > 0 {
			if !wasDeleting {
				unmark()
			}
			return fmt.Errorf("ipam: %s: %w: block %s holds %d", op, ErrPoolInUse, b.CIDR, b.nallocs())
		}
	}
	// 3. Remove the empty blocks with their affinities, one per transaction.
	for _, kv := range kvs {
		b, _ := decodeBlock(kv.Value)
		if err := m.dropBlock(ctx, b.Pool, b.CIDR, b.Affinity); err != nil {
			return wrap(op, err)
		}
	}
	// 4. Remove the pool.
	err = m.retry(ctx, op, func() error {
		r, rev, err := m.loadPools(ctx)
		if err != nil {
			return err
		}
		i := r.find(name)
		if i < 0 {
			return nil
		}
		r.Pools = slices.Delete(r.Pools, i, i+1)
		_, err = m.st.Txn(ctx, datastore.Update(m.k.pools(), encode(r), rev))
		return err
	})
	if err != nil {
		return wrap(op, err)
	}
	return nil
}
