package ipam

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tabbynet/tabby/datastore"
)

// Errors returned by IPAM. They are wrapped with the operation and matched
// with errors.Is. Errors from the datastore (datastore.ErrUnavailable, ...)
// are wrapped and passed through.
var (
	// ErrInvalid: bad input (empty handle or host, Num4/Num6 out of range, a
	// malformed pool, ...). Nothing was written.
	ErrInvalid = errors.New("invalid argument")
	// ErrExhausted: no address (or block) is available under the request's
	// constraints.
	ErrExhausted = errors.New("no addresses available")
	// ErrInUse: the requested address is already allocated.
	ErrInUse = errors.New("address in use")
	// ErrNotInPool: the address lies outside every pool.
	ErrNotInPool = errors.New("address not in any pool")
	// ErrPoolNotFound: no pool has the given name.
	ErrPoolNotFound = errors.New("pool not found")
	// ErrPoolExists: a pool with that name already exists.
	ErrPoolExists = errors.New("pool already exists")
	// ErrPoolOverlap: the pool's CIDR overlaps another pool.
	ErrPoolOverlap = errors.New("pool overlaps an existing pool")
	// ErrPoolInUse: the pool still holds allocations and cannot be deleted.
	ErrPoolInUse = errors.New("pool has allocations")
	// ErrPoolDisabled: the address's pool is disabled (or being deleted).
	ErrPoolDisabled = errors.New("pool disabled")
	// ErrContention: a write kept conflicting with concurrent writers until
	// the retry budget (Config.MaxRetries) ran out. Nothing was written by
	// the failed operation.
	ErrContention = errors.New("too much contention, retries exhausted")
	// ErrCorrupt: a record in the datastore could not be decoded or violates
	// the model's invariants.
	// It also matches datastore.ErrCorrupt, so that callers that only know
	// the datastore (the CNI plugin's error codes) see a damaged store.
	ErrCorrupt = fmt.Errorf("corrupt record: %w", datastore.ErrCorrupt)
	// ErrNotOwned: a node announced a block or address that IPAM does not
	// give it (see Owns).
	ErrNotOwned = errors.New("not owned by the node")
	// ErrNoPool: no usable pool of the requested family exists.
	ErrNoPool = errors.New("no pool of the family")
)

// opError is an error of one IPAM operation. Its text starts with "ipam: "
// exactly once, whatever it wraps (another operation's error, a sentinel).
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string {
	return "ipam: " + e.op + ": " + strings.TrimPrefix(e.err.Error(), "ipam: ")
}

func (e *opError) Unwrap() error { return e.err }

// wrap returns err as an error of op (nil for nil).
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return &opError{op: op, err: err}
}
