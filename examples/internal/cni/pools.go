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

// EnsurePools returns the names of the pools with the given CIDRs,
// creating the missing ones (named PoolName(cidr), with blockSize, VXLAN
// Always, NAT outgoing). With no CIDRs it returns nil (every enabled pool),
// after creating the default pool 10.244.0.0/16 named "default" if the
// datastore has no pool at all. A CIDR that overlaps a different pool is a
// *ConfigError.
func EnsurePools(ctx context.Context, m *ipam.IPAM, cidrs []netip.Prefix, blockSize int) ([]string, error) {
	pools, err := m.ListPools(ctx)
	if err != nil {
		return nil, fmt.Errorf("ipam: list pools: %w", err)
	}
	if len(cidrs) == 0 {
		if len(pools) > 0 {
			return nil, nil
		}
		err := m.CreatePool(ctx, ipam.Pool{Name: "default", CIDR: defaultPool, BlockSize: blockSize, NATOutgoing: true, VXLANMode: ipam.VXLANAlways})
		if err != nil && !errors.Is(err, ipam.ErrPoolExists) && !errors.Is(err, ipam.ErrPoolOverlap) {
			return nil, fmt.Errorf("ipam: create default pool: %w", err)
		}
		return nil, nil
	}
	names := make([]string, 0, len(cidrs))
	for _, p := range cidrs {
		name, err := ensurePool(ctx, m, pools, p, blockSize)
		if err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	return names, nil
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
