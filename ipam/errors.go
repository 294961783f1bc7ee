package ipam

import "errors"

// Errors returned by IPAM. They are wrapped with the operation and matched
// with errors.Is. Errors from the datastore (datastore.ErrUnavailable, ...)
// are wrapped and passed through.
var (
	// ErrInvalid: bad input (empty handle or host, Num4/Num6 out of range, a
	// malformed pool, ...). Nothing was written.
	ErrInvalid = errors.New("ipam: invalid argument")
	// ErrExhausted: no address (or block) is available under the request's
	// constraints.
	ErrExhausted = errors.New("ipam: no addresses available")
	// ErrInUse: the requested address is already allocated.
	ErrInUse = errors.New("ipam: address in use")
	// ErrNotInPool: the address lies outside every pool.
	ErrNotInPool = errors.New("ipam: address not in any pool")
	// ErrPoolNotFound: no pool has the given name.
	ErrPoolNotFound = errors.New("ipam: pool not found")
	// ErrPoolExists: a pool with that name already exists.
	ErrPoolExists = errors.New("ipam: pool already exists")
	// ErrPoolOverlap: the pool's CIDR overlaps another pool.
	ErrPoolOverlap = errors.New("ipam: pool overlaps an existing pool")
	// ErrPoolInUse: the pool still holds allocations and cannot be deleted.
	ErrPoolInUse = errors.New("ipam: pool has allocations")
	// ErrPoolDisabled: the address's pool is disabled (or being deleted).
	ErrPoolDisabled = errors.New("ipam: pool disabled")
	// ErrContention: a write kept conflicting with concurrent writers until
	// the retry budget (Config.MaxRetries) ran out. Nothing was written by
	// the failed operation.
	ErrContention = errors.New("ipam: too much contention, retries exhausted")
	// ErrCorrupt: a record in the datastore could not be decoded or violates
	// the model's invariants.
	ErrCorrupt = errors.New("ipam: corrupt record")
)
