package datastore

import (
	"context"
	"errors"
	"strings"
)

// Errors returned by every Store implementation. Wrap them with %w and match
// them with errors.Is.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("datastore: key not found")
	// ErrExists: Create found the key already present.
	ErrExists = errors.New("datastore: key already exists")
	// ErrConflict: a compare-and-swap condition (a revision) did not hold.
	ErrConflict = errors.New("datastore: revision conflict")
	// ErrCompacted: a watch asked for history the store no longer has; the
	// caller lists again and watches from the list's revision.
	ErrCompacted = errors.New("datastore: revision compacted")
	// ErrUnavailable: the store could not be reached within the caller's
	// deadline (etcd down, bolt file locked for too long). Nothing was written.
	ErrUnavailable = errors.New("datastore: unavailable")
	// ErrInvalid: a malformed key, value, operation or URL.
	ErrInvalid = errors.New("datastore: invalid argument")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("datastore: closed")
	// ErrCorrupt: the store's data cannot be trusted (a truncated, empty or
	// damaged file, a record that does not decode). Retrying will not help;
	// nothing was written. Repair or restore the store.
	ErrCorrupt = errors.New("datastore: corrupt")
)

// KV is one key with its value and the revision at which it was last
// modified. Revisions are store-wide, strictly increasing and never 0 for an
// existing key.
type KV struct {
	Key      string
	Value    []byte
	Revision int64
}

// OpType says what an Op does. The zero value is invalid.
type OpType int

const (
	// OpCreate creates Key with Value; fails with ErrExists if present.
	OpCreate OpType = iota + 1
	// OpUpdate sets Key to Value if its revision is Revision. Inside a Txn a
	// missing key is a conflict too (ErrConflict).
	OpUpdate
	// OpDelete deletes Key if its revision is Revision.
	OpDelete
	// OpCheck writes nothing; it asserts Key is at Revision (0: absent).
	OpCheck
)

func (t OpType) String() string {
	switch t {
	case OpCreate:
		return "create"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpCheck:
		return "check"
	}
	return "invalid"
}

// Op is one element of a transaction.
type Op struct {
	Type     OpType
	Key      string
	Value    []byte
	Revision int64
	// Lease attaches the key to a lease (OpCreate and OpUpdate only; see
	// Leaser). 0 means none: an OpUpdate without a lease detaches the key
	// from the lease it had. Only stores that implement Leaser accept a
	// non-zero Lease.
	Lease LeaseID
}

// Create, Update, Delete and Check build Ops.
func Create(key string, value []byte) Op { return Op{Type: OpCreate, Key: key, Value: value} }

// Update builds an OpUpdate conditioned on rev.
func Update(key string, value []byte, rev int64) Op {
	return Op{Type: OpUpdate, Key: key, Value: value, Revision: rev}
}

// Delete builds an OpDelete conditioned on rev.
func Delete(key string, rev int64) Op { return Op{Type: OpDelete, Key: key, Revision: rev} }

// Check builds an OpCheck: key must be at rev (0 means: must not exist).
func Check(key string, rev int64) Op { return Op{Type: OpCheck, Key: key, Revision: rev} }

// EventType says what happened to a key. The zero value is invalid.
type EventType int

const (
	EventPut EventType = iota + 1
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return "invalid"
}

// Event is one change seen by a watch. Revision is the store revision of the
// change (for EventPut also the KV's new revision). When Err is set the watch
// has ended (for example with ErrCompacted) and the channel is closed after
// this event.
type Event struct {
	Type     EventType
	Key      string
	Value    []byte
	Revision int64
	Err      error
}

// Store is a key-value store with revisions. Keys are non-empty strings of
// printable characters; the hierarchy is by "/" convention only. All
// implementations are safe for concurrent use.
type Store interface {
	// Get returns the key or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// List returns every key with the given prefix, sorted by key, and the
	// store revision at which the listing was consistent. Watching from that
	// revision misses nothing and repeats nothing.
	List(ctx context.Context, prefix string) ([]KV, int64, error)
	// Create stores a new key and returns its revision; ErrExists if present.
	Create(ctx context.Context, key string, value []byte) (int64, error)
	// Update replaces the value if the key is at rev and returns the new
	// revision; ErrConflict if it is at another revision, ErrNotFound if absent.
	Update(ctx context.Context, key string, value []byte, rev int64) (int64, error)
	// Delete removes the key if it is at rev; ErrConflict or ErrNotFound
	// otherwise.
	Delete(ctx context.Context, key string, rev int64) error
	// Txn applies all ops atomically or none of them. If any condition fails
	// it returns an error wrapping ErrConflict (or ErrExists for a failed
	// OpCreate) and writes nothing. It returns the store revision after the
	// transaction. Keys within one Txn are distinct.
	Txn(ctx context.Context, ops ...Op) (int64, error)
	// Watch delivers, in revision order, every change under prefix with a
	// revision greater than after. The channel is closed when ctx ends or the
	// watch fails; a failure is delivered first as an Event with Err set.
	Watch(ctx context.Context, prefix string, after int64) (<-chan Event, error)
	// Close releases the store. Further calls return ErrClosed.
	Close() error
}

// ValidKey reports whether key is acceptable to every Store: non-empty, at
// most 1024 bytes, printable ASCII without spaces.
func ValidKey(key string) bool {
	if key == "" || len(key) > 1024 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] > '~' {
			return false
		}
	}
	return !strings.Contains(key, "//")
}
