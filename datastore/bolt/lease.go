package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tabbynet/tabby/datastore"
)

// Leases live in the file, so every process that opens it shares them:
//
//	leases    id(8)                -> ttl ns(8) deadline unix ns(8)
//	leaseexp  deadline(8) id(8)    -> (empty)  earliest expiry first
//	leasekeys id(8) key            -> (empty)  keys attached to a lease
//	keylease  key                  -> id(8)
//
// Deadlines are wall-clock times: every process on one host shares the
// clock. Expired leases are swept (their keys deleted, with delete events
// in the log) by the first write transaction after the deadline, by a read
// that would otherwise see an expired key, and by any running Watch, in
// whichever process notices first: each write publishes the earliest
// deadline in the lock file next to the revision, which watches poll
// without taking the lock.
var (
	bucketLeases    = []byte("leases")
	bucketLeaseExp  = []byte("leaseexp")
	bucketLeaseKeys = []byte("leasekeys")
	bucketKeyLease  = []byte("keylease")

	metaLeaseSeq = []byte("leaseseq")
)

var _ datastore.Leaser = (*Store)(nil)

// errSweep: a read met an expired lease; sweep and read again.
var errSweep = errors.New("expired lease to sweep")

func leaseBuckets(tx *bbolt.Tx) error {
	for _, b := range [][]byte{bucketLeases, bucketLeaseExp, bucketLeaseKeys, bucketKeyLease} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

func expKey(deadline int64, id datastore.LeaseID) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(deadline))
	binary.BigEndian.PutUint64(k[8:], uint64(id))
	return k
}

func leaseKeyKey(id datastore.LeaseID, key string) []byte {
	return append(be(int64(id)), key...)
}

// earliest returns the earliest lease deadline (unix ns), 0 if none.
func earliest(tx *bbolt.Tx) int64 {
	b := tx.Bucket(bucketLeaseExp)
	if b == nil {
		return 0
	}
	k, _ := b.Cursor().First()
	if len(k) != 16 {
		return 0
	}
	return u64(k[:8])
}

// expiredPending reports whether a lease has passed its deadline.
func expiredPending(tx *bbolt.Tx, now time.Time) bool {
	d := earliest(tx)
	return d != 0 && d <= now.UnixNano()
}

// Grant implements datastore.Leaser. The TTL is kept as given (nanosecond
// precision).
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (datastore.LeaseID, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("bolt: grant lease of %v: %w", ttl, datastore.ErrInvalid)
	}
	var id datastore.LeaseID
	err := s.write(ctx, "grant lease", func(tx *bbolt.Tx, _ *lock) error {
		meta := tx.Bucket(bucketMeta)
		id = datastore.LeaseID(getMeta(tx, metaLeaseSeq) + 1)
		if err := meta.Put(metaLeaseSeq, be(int64(id))); err != nil {
			return err
		}
		return putLease(tx, id, ttl, time.Now().Add(ttl).UnixNano())
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

func putLease(tx *bbolt.Tx, id datastore.LeaseID, ttl time.Duration, deadline int64) error {
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, uint64(ttl))
	binary.BigEndian.PutUint64(v[8:], uint64(deadline))
	if err := tx.Bucket(bucketLeases).Put(be(int64(id)), v); err != nil {
		return err
	}
	return tx.Bucket(bucketLeaseExp).Put(expKey(deadline, id), nil)
}

// getLease returns a lease's TTL and deadline; ok is false if it does not
// exist.
func getLease(tx *bbolt.Tx, id datastore.LeaseID) (ttl time.Duration, deadline int64, ok bool) {
	b := tx.Bucket(bucketLeases)
	if b == nil {
		return 0, 0, false
	}
	v := b.Get(be(int64(id)))
	if len(v) != 16 {
		return 0, 0, false
	}
	return time.Duration(u64(v[:8])), u64(v[8:]), true
}

// KeepAlive implements datastore.Leaser. It changes no key and no revision.
func (s *Store) KeepAlive(ctx context.Context, id datastore.LeaseID) error {
	return s.write(ctx, "keep lease alive", func(tx *bbolt.Tx, _ *lock) error {
		ttl, old, ok := getLease(tx, id)
		if !ok {
			return fmt.Errorf("lease %d: %w", id, datastore.ErrLeaseNotFound)
		}
		if err := tx.Bucket(bucketLeaseExp).Delete(expKey(old, id)); err != nil {
			return err
		}
		return putLease(tx, id, ttl, time.Now().Add(ttl).UnixNano())
	})
}

// Revoke implements datastore.Leaser.
func (s *Store) Revoke(ctx context.Context, id datastore.LeaseID) error {
	return s.write(ctx, "revoke lease", func(tx *bbolt.Tx, l *lock) error {
		if _, _, ok := getLease(tx, id); !ok {
			return fmt.Errorf("lease %d: %w", id, datastore.ErrLeaseNotFound)
		}
		return s.endLeases(tx, l, []datastore.LeaseID{id})
	})
}

// write runs fn in a write transaction after sweeping expired leases.
func (s *Store) write(ctx context.Context, op string, fn func(*bbolt.Tx, *lock) error) error {
	err := s.do(ctx, op, true, func(tx *bbolt.Tx, l *lock) error {
		if err := leaseBuckets(tx); err != nil {
			return err
		}
		if err := s.sweep(tx, l, time.Now()); err != nil {
			return err
		}
		return fn(tx, l)
	})
	if err == nil {
		s.wake()
	}
	return err
}

// sweepNow ends every expired lease in its own transaction.
func (s *Store) sweepNow(ctx context.Context) error {
	return s.write(ctx, "expire leases", func(*bbolt.Tx, *lock) error { return nil })
}

// sweep ends every lease whose deadline has passed.
func (s *Store) sweep(tx *bbolt.Tx, l *lock, now time.Time) error {
	var ids []datastore.LeaseID
	c := tx.Bucket(bucketLeaseExp).Cursor()
	for k, _ := c.First(); len(k) == 16 && u64(k[:8]) <= now.UnixNano(); k, _ = c.Next() {
		ids = append(ids, datastore.LeaseID(u64(k[8:])))
	}
	if len(ids) == 0 {
		return nil
	}
	return s.endLeases(tx, l, ids)
}

// endLeases deletes the leases and their keys, all at one new revision
// (none if they hold no keys).
func (s *Store) endLeases(tx *bbolt.Tx, l *lock, ids []datastore.LeaseID) error {
	var ops []datastore.Op
	lk := tx.Bucket(bucketLeaseKeys)
	for _, id := range ids {
		_, deadline, ok := getLease(tx, id)
		if !ok {
			continue
		}
		p := be(int64(id))
		c := lk.Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			ops = append(ops, datastore.Op{Type: datastore.OpDelete, Key: string(k[8:])})
		}
		if err := tx.Bucket(bucketLeaseExp).Delete(expKey(deadline, id)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketLeases).Delete(p); err != nil {
			return err
		}
	}
	if len(ops) == 0 {
		return nil
	}
	_, err := s.commitOps(tx, l, ops)
	return err
}

// attach records that key belongs to lease id (0: to none).
func attach(tx *bbolt.Tx, key string, id datastore.LeaseID) error {
	kl := tx.Bucket(bucketKeyLease)
	if kl == nil {
		if id == 0 {
			return nil
		}
		return fmt.Errorf("lease %d: %w", id, datastore.ErrLeaseNotFound)
	}
	lk := tx.Bucket(bucketLeaseKeys)
	if v := kl.Get([]byte(key)); len(v) == 8 {
		old := datastore.LeaseID(u64(v))
		if old == id {
			return nil
		}
		if err := lk.Delete(leaseKeyKey(old, key)); err != nil {
			return err
		}
		if err := kl.Delete([]byte(key)); err != nil {
			return err
		}
	}
	if id == 0 {
		return nil
	}
	if err := kl.Put([]byte(key), be(int64(id))); err != nil {
		return err
	}
	return lk.Put(leaseKeyKey(id, key), nil)
}

// publishDeadline records the earliest lease deadline in the lock file
// (after the revision) for watches in every process.
func (l *lock) publishDeadline(d int64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(d))
	l.f.WriteAt(b[:], 8)
}

// readDeadline reads what publishDeadline wrote (0: no lease, or unknown).
func readDeadline(f *os.File) int64 {
	if f == nil {
		return 0
	}
	var b [8]byte
	if n, _ := f.ReadAt(b[:], 8); n != 8 {
		return 0
	}
	return u64(b[:])
}
