package datastore

import (
	"context"
	"errors"
	"time"
)

// ErrLeaseNotFound: the lease does not exist (never granted, revoked, or
// expired). A KeepAlive that returns it is too late: the keys attached to
// the lease are gone (or going) and the caller grants a new lease.
var ErrLeaseNotFound = errors.New("datastore: lease not found")

// LeaseID names a lease. The zero value means "no lease".
type LeaseID int64

// Leaser is the optional lease capability of a Store: keys attached to a
// lease are deleted by the store itself, each with an EventDelete to
// watchers, when the lease expires (its TTL passes without a KeepAlive) or
// is revoked. Granting and keeping a lease alive are not writes: they
// change no key and no revision, so watchers see nothing. Detect it with
//
//	if l, ok := store.(datastore.Leaser); ok { ... }
//
// A key is attached with an OpCreate or OpUpdate whose Lease field is set
// (CreateWithLease, UpdateWithLease); an update with Lease 0 detaches it.
// Writing with a lease that does not exist fails with ErrLeaseNotFound and
// writes nothing. All keys attached to one lease are deleted at one new
// revision.
//
// The memory, bolt and etcd stores implement it (etcd natively with v3
// leases; bolt across every process that opens the file). Implementations
// are safe for concurrent use.
type Leaser interface {
	// Grant creates a lease that expires ttl from now unless kept alive.
	// A store may round ttl up (etcd: to whole seconds and at least its
	// minimum TTL, typically 2s) but never down. ttl <= 0 is ErrInvalid.
	Grant(ctx context.Context, ttl time.Duration) (LeaseID, error)
	// KeepAlive restarts the lease's TTL from now; ErrLeaseNotFound if it
	// has expired or was revoked. Callers typically call it every TTL/3.
	KeepAlive(ctx context.Context, id LeaseID) error
	// Revoke ends the lease now and deletes its keys; ErrLeaseNotFound if
	// it does not exist.
	Revoke(ctx context.Context, id LeaseID) error
}

// CreateWithLease builds an OpCreate whose key is attached to lease.
func CreateWithLease(key string, value []byte, lease LeaseID) Op {
	return Op{Type: OpCreate, Key: key, Value: value, Lease: lease}
}

// UpdateWithLease builds an OpUpdate conditioned on rev whose key is
// attached to lease (a key attached to another lease moves to this one).
func UpdateWithLease(key string, value []byte, rev int64, lease LeaseID) Op {
	return Op{Type: OpUpdate, Key: key, Value: value, Revision: rev, Lease: lease}
}
