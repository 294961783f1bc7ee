package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
)

// ReleaseByHandle frees every address held by handle and deletes the
// handle, in one transaction. It reads only the handle's record and the
// blocks it names (no scan). Releasing an unknown handle is not an error:
// it returns no addresses. If the handle's record is corrupt it lists every
// block instead and frees the allocations they hold for handle, then
// deletes the record; only blocks that do not decode either make it fail
// (ErrCorrupt, with the addresses it did free).
func (m *IPAM) ReleaseByHandle(ctx context.Context, handle string) ([]netip.Addr, error) {
	op := "release handle " + handle
	if err := checkHandle(handle); err != nil {
		return nil, fmt.Errorf("ipam: release handle: %w", err)
	}
	var out []netip.Addr
	err := m.retry(ctx, op, func() error {
		out = nil
		c := m.newChange()
		lh, err := c.handle(ctx, handle)
		if errors.Is(err, ErrCorrupt) {
			out, err = m.releaseCorruptHandle(ctx, handle)
			return err
		}
		if err != nil {
			return err
		}
		if lh.rev == 0 {
			return nil
		}
		for _, a := range append([]handleAddr(nil), lh.rec.Addrs...) {
			lb, err := c.block(ctx, a.Pool, a.Block)
			if err != nil {
				return err
			}
			ok, err := c.releaseAddr(ctx, lb, a.Addr, handle, a.Seq)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, a.Addr)
			}
		}
		// Entries that pointed at nothing are dropped with the handle.
		lh.rec.Addrs = nil
		lh.dirty = true
		_, err = m.st.Txn(ctx, c.ops()...)
		return err
	})
	if err != nil {
		return out, wrap(op, err)
	}
	return out, nil
}

// Release names one address to free (a plain value). Handle and Seq are optional
// conditions: when set, the address is freed only if its current allocation
// has that handle and that sequence number (as returned in Assigned), so a
// late release cannot free an address that was meanwhile handed out again.
type Release struct {
	Addr   netip.Addr
	Handle string
	Seq    uint64
}

// ReleaseIPs frees the given addresses (and removes them from their
// handles) in one transaction, and returns those actually freed; addresses
// not allocated, or whose conditions do not hold, are skipped. An address
// outside every pool is ErrNotInPool and nothing is released.
func (m *IPAM) ReleaseIPs(ctx context.Context, rels ...Release) ([]netip.Addr, error) {
	for _, r := range rels {
		if !r.Addr.IsValid() || r.Addr.Zone() != "" || r.Addr.Is4In6() {
			return nil, fmt.Errorf("ipam: release: %w: address %v", ErrInvalid, r.Addr)
		}
		if r.Handle != "" {
			if err := checkHandle(r.Handle); err != nil {
				return nil, fmt.Errorf("ipam: release %s: %w", r.Addr, err)
			}
		}
	}
	var out []netip.Addr
	err := m.retry(ctx, "release", func() error {
		out = nil
		pr, _, err := m.loadPools(ctx)
		if err != nil {
			return err
		}
		c := m.newChange()
		for _, r := range rels {
			i := pr.containing(r.Addr)
			if i < 0 {
				return fmt.Errorf("%w: %s", ErrNotInPool, r.Addr)
			}
			p := pr.Pools[i]
			lb, err := c.block(ctx, p.Name, blockOf(r.Addr, p.BlockSize))
			if err != nil {
				return err
			}
			ok, err := c.releaseAddr(ctx, lb, r.Addr, r.Handle, r.Seq)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, r.Addr)
			}
		}
		ops := c.ops()
		if len(ops) == 0 {
			return nil
		}
		_, err = m.st.Txn(ctx, ops...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ipam: release: %w", err)
	}
	return out, nil
}
