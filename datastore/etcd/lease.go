package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tabbynet/tabby/datastore"
)

// Grant implements datastore.Leaser with an etcd v3 lease. etcd counts TTLs
// in whole seconds, so ttl is rounded up; the server may raise it to its
// minimum TTL (1.5 x the election timeout, 2s with etcd's defaults).
// Leases are cluster-wide: Prefix does not apply to them.
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (datastore.LeaseID, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("etcd: grant lease of %v: %w", ttl, datastore.ErrInvalid)
	}
	rctx, cancel, err := s.reqCtx(ctx, "grant lease")
	if err != nil {
		return 0, err
	}
	defer cancel()
	secs := int64((ttl + time.Second - 1) / time.Second)
	resp, err := s.client.Lease.Grant(rctx, secs)
	if err != nil {
		return 0, s.mapErr(rctx, "grant lease", err)
	}
	return datastore.LeaseID(resp.ID), nil
}

// KeepAlive implements datastore.Leaser with one keep-alive request (no
// stream is left running).
func (s *Store) KeepAlive(ctx context.Context, id datastore.LeaseID) error {
	op := fmt.Sprintf("keep lease %x alive", int64(id))
	rctx, cancel, err := s.reqCtx(ctx, op)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.client.Lease.KeepAliveOnce(rctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd: %s: %w", op, datastore.ErrLeaseNotFound)
	}
	return s.mapErr(rctx, op, err)
}

// Revoke implements datastore.Leaser.
func (s *Store) Revoke(ctx context.Context, id datastore.LeaseID) error {
	op := fmt.Sprintf("revoke lease %x", int64(id))
	rctx, cancel, err := s.reqCtx(ctx, op)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.client.Lease.Revoke(rctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd: %s: %w", op, datastore.ErrLeaseNotFound)
	}
	return s.mapErr(rctx, op, err)
}
