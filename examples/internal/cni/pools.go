package cni

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/ipam"
)

// DefaultPool is created when the configuration names no pool and the
// datastore has none.
var defaultPool = netip.MustParsePrefix("10.244.0.0/16")

// Request is what an ADD asks IPAM for: the pool names (nil: every
// enabled pool) and one address of each family that has a pool.
type Request struct {
	Pools      []string
	Num4, Num6 int
}

// EnsurePools returns the names of the pools with the given CIDRs,
// creating the missing ones (named PoolName(cidr), with blockSize for
// IPv4 and blockSize6 for IPv6, VXLAN Always, NAT outgoing), and one
// address per family among them. With no CIDRs it names no pool (every
// enabled pool) and asks for one address of each family that has an
// enabled pool, after creating the default pool 10.244.0.0/16 named
// "default" if the datastore has no pool at all. A CIDR that overlaps a
// different pool is a *ConfigError.
func EnsurePools(ctx context.Context, m *ipam.IPAM, cidrs []netip.Prefix, blockSize, blockSize6 int) (Request, error) {
	pools, err := m.ListPools(ctx)
	if err != nil {
		return Request{}, fmt.Errorf("ipam: list pools: %w", err)
	}
	var r Request
	if len(cidrs) == 0 {
		if len(pools) == 0 {
			err := m.CreatePool(ctx, ipam.Pool{Name: "default", CIDR: defaultPool, BlockSize: blockSize, NATOutgoing: true, VXLANMode: ipam.VXLANAlways})
			if err != nil && !errors.Is(err, ipam.ErrPoolExists) && !errors.Is(err, ipam.ErrPoolOverlap) {
				return Request{}, fmt.Errorf("ipam: create default pool: %w", err)
			}
			return Request{Num4: 1}, nil
		}
		for _, p := range pools {
			if p.Disabled {
				continue
			}
			if p.CIDR.Addr().Is4() {
				r.Num4 = 1
			} else {
				r.Num6 = 1
			}
		}
		if r.Num4+r.Num6 == 0 {
			r.Num4 = 1 // IPAM says why not (no enabled pool)
		}
		return r, nil
	}
	r.Pools = make([]string, 0, len(cidrs))
	for _, p := range cidrs {
		bs := blockSize
		if p.Addr().Is6() {
			bs, r.Num6 = blockSize6, 1
		} else {
			r.Num4 = 1
		}
		name, err := ensurePool(ctx, m, pools, p, bs)
		if err != nil {
			return Request{}, err
		}
		r.Pools = append(r.Pools, name)
	}
	return r, nil
}

func ensurePool(ctx context.Context, m *ipam.IPAM, pools []ipam.Pool, cidr netip.Prefix, blockSize int) (string, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		for _, p := range pools {
			if p.CIDR == cidr {
				return p.Name, nil
			}
		}
		err := m.CreatePool(ctx, ipam.Pool{Name: PoolName(cidr), CIDR: cidr, BlockSize: blockSize, NATOutgoing: true, VXLANMode: ipam.VXLANAlways})
		switch {
		case err == nil:
			return PoolName(cidr), nil
		case errors.Is(err, ipam.ErrPoolOverlap), errors.Is(err, ipam.ErrPoolExists):
			// Maybe created concurrently by another ADD: list again.
			lastErr = err
			pools, err = m.ListPools(ctx)
			if err != nil {
				return "", fmt.Errorf("ipam: list pools: %w", err)
			}
		default:
			return "", fmt.Errorf("ipam: create pool %v: %w", cidr, err)
		}
	}
	return "", confErr("ipam.pools", "%v conflicts with an existing pool: %v", cidr, lastErr)
}
