package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sync/semaphore"

	"github.com/tabbynet/tabby/datastore"
)

// Defaults used when Options (or one of its fields) is zero.
const (
	DefaultLockTimeout  = 10 * time.Second
	DefaultLogSize      = 10000
	DefaultPollInterval = 100 * time.Millisecond
	DefaultWatchBuffer  = 64
	// DefaultBackupInterval is how old path+".bak" may get before Open
	// takes a new one.
	DefaultBackupInterval = time.Hour
)

// Options tunes a Store. A nil *Options means defaults. It is a plain value,
// read only by Open.
type Options struct {
	// LockTimeout bounds how long an operation waits for the file lock
	// (another process's operation) on top of the caller's context deadline
	// (default 10s). Running out of either is ErrUnavailable. Each holder
	// keeps the lock for one small transaction, so waits this long mean a
	// stuck process or an overloaded disk.
	LockTimeout time.Duration
	// LogSize is how many change events the file keeps for Watch (default
	// 10000). Older ones are trimmed; a watch that needs them gets
	// ErrCompacted. The log holds between LogSize and 1.25*LogSize events,
	// or more while the newest transaction alone is larger.
	LogSize int
	// PollInterval is how often a watch checks for writes made by other
	// processes (default 100ms). Writes made through this Store wake its
	// watches at once.
	PollInterval time.Duration
	// WatchBuffer is the capacity of each watch channel (default 64).
	WatchBuffer int
	// NoSync skips fsync on commit: faster, but a power loss (not a process
	// crash) can lose or corrupt recent writes. For tests and benchmarks.
	NoSync bool
	// Logger receives watch errors that are retried. Nil discards.
	Logger *slog.Logger
	// NoCreate makes Open fail (wrapping fs.ErrNotExist) instead of
	// creating a missing file.
	NoCreate bool
	// NoBackup stops Open from snapshotting the file to path+".bak".
	NoBackup bool
	// BackupInterval: Open checks the whole file and refreshes path+".bak"
	// when the backup is older than this (default 1h).
	BackupInterval time.Duration
}

// Store is a datastore.Store in one bbolt file, shared safely by every
// process that opens the same path with this package. It is safe for
// concurrent use.
type Store struct {
	path     string
	lockPath string
	opts     Options
	log      *slog.Logger

	// sem admits, within this process, one writer or up to maxReaders
	// readers at a time, in arrival order.
	sem  *semaphore.Weighted
	done chan struct{}

	mu       sync.Mutex
	closed   bool
	watchers map[chan struct{}]struct{}
	held     *held // set while Hold runs
}

// held is the lock and the open bbolt file of a Hold, shared by the
// operations made meanwhile, one at a time.
type held struct {
	mu     sync.Mutex
	l      *lock
	db     *bbolt.DB
	f      *os.File
	broken error // bbolt panicked: every later operation fails with it
}

var _ datastore.Store = (*Store)(nil)

var (
	bucketMeta = []byte("meta")
	bucketKV   = []byte("kv")
	bucketLog  = []byte("log")

	metaRev       = []byte("rev")
	metaCompacted = []byte("compacted")
	metaLogCount  = []byte("logcount")
)

// Open opens the store at path. The lock file path+".lock" sits next to
// it.
//
// A missing file is created (mode 0600, the parent directory with mode
// 0700), unless Options.NoCreate is set or a backup (path+".bak") exists:
// then the store was lost and Open fails with datastore.ErrCorrupt rather
// than start afresh. The new file is built under a temporary name and
// renamed into place, so a crash never leaves an empty file behind.
//
// An existing file must be a healthy store: an empty, truncated or damaged
// file is datastore.ErrCorrupt, never re-initialised (see the package
// documentation's failure model). When Options.BackupInterval (default 1h)
// has passed since the last backup, Open also runs the full Check and, if it
// passes, snapshots the file to path+".bak"; a failing Check fails Open.
func Open(ctx context.Context, path string, opts *Options) (*Store, error) {
	s, err := newStore(path, opts)
	if err != nil {
		return nil, err
	}
	// Usually the store exists: check it without a write transaction (whose
	// commit would cost an fsync on every CNI plugin start).
	ready := false
	err = s.do(ctx, "open", false, func(tx *bbolt.Tx, _ *lock) error {
		var err error
		ready, err = hasBuckets(tx)
		return err
	})
	switch {
	case errors.Is(err, errMissing):
		if err := s.create(ctx); err != nil {
			return nil, err
		}
		ready = true
	case err != nil:
		return nil, err
	}
	if !ready {
		// A valid bbolt file that never held a store (bbolt initialised it,
		// the process died before the buckets were made).
		err = s.do(ctx, "open", true, func(tx *bbolt.Tx, _ *lock) error {
			if ok, err := hasBuckets(tx); ok || err != nil {
				return err
			}
			return makeBuckets(tx)
		})
		if err != nil {
			return nil, err
		}
	}
	if !s.opts.NoBackup {
		if err := s.backupIfStale(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func newStore(path string, opts *Options) (*Store, error) {
	if path == "" || strings.ContainsRune(path, 0) {
		return nil, fmt.Errorf("bolt: open %q: %w", path, datastore.ErrInvalid)
	}
	s := &Store{
		path:     filepath.Clean(path),
		sem:      semaphore.NewWeighted(maxReaders),
		done:     make(chan struct{}),
		watchers: make(map[chan struct{}]struct{}),
		opts: Options{
			LockTimeout:    DefaultLockTimeout,
			LogSize:        DefaultLogSize,
			PollInterval:   DefaultPollInterval,
			WatchBuffer:    DefaultWatchBuffer,
			BackupInterval: DefaultBackupInterval,
		},
	}
	s.lockPath = s.path + ".lock"
	if opts != nil {
		if opts.LockTimeout > 0 {
			s.opts.LockTimeout = opts.LockTimeout
		}
		if opts.LogSize > 0 {
			s.opts.LogSize = opts.LogSize
		}
		if opts.PollInterval > 0 {
			s.opts.PollInterval = opts.PollInterval
		}
		if opts.WatchBuffer > 0 {
			s.opts.WatchBuffer = opts.WatchBuffer
		}
		if opts.BackupInterval > 0 {
			s.opts.BackupInterval = opts.BackupInterval
		}
		s.opts.NoSync = opts.NoSync
		s.opts.NoCreate = opts.NoCreate
		s.opts.NoBackup = opts.NoBackup
		s.log = opts.Logger
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", s.path, err)
	}
	return s, nil
}

// hasBuckets reports whether the store's buckets exist: all (true), none
// (false, a file that never held a store) or some (ErrCorrupt).
func hasBuckets(tx *bbolt.Tx) (bool, error) {
	n := 0
	for _, b := range [][]byte{bucketMeta, bucketKV, bucketLog} {
		if tx.Bucket(b) != nil {
			n++
		}
	}
	switch n {
	case 3:
		return true, nil
	case 0:
		return false, nil
	}
	return false, fmt.Errorf("%w: %d of the 3 buckets missing", datastore.ErrCorrupt, 3-n)
}

func makeBuckets(tx *bbolt.Tx) error {
	for _, b := range [][]byte{bucketMeta, bucketKV, bucketLog} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// create makes a new store where no file exists, under the exclusive lock:
// built as path+".new" and renamed into place.
func (s *Store) create(ctx context.Context) error {
	fail := func(err error) error { return fmt.Errorf("bolt: create %s: %w", s.path, err) }
	if s.opts.NoCreate {
		return fail(fmt.Errorf("%w (Options.NoCreate)", fs.ErrNotExist))
	}
	l, err := s.acquire(ctx, true)
	if err != nil {
		return fail(err)
	}
	defer s.release(l)
	if _, err := os.Lstat(s.path); err == nil {
		return nil // another process created it meanwhile
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fail(err)
	}
	if _, err := os.Lstat(s.backupPath()); err == nil {
		return fail(fmt.Errorf("%w: the file is missing but its backup %s exists: the store was lost; restore it (tabbyctl ipam restore) or remove the backup to start an empty store", datastore.ErrCorrupt, s.backupPath()))
	}
	tmp := s.path + ".new"
	os.Remove(tmp)
	db, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: s.opts.LockTimeout, NoSync: s.opts.NoSync})
	if err != nil {
		return fail(err)
	}
	err = db.Update(makeBuckets)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fail(err)
	}
	syncDir(filepath.Dir(s.path))
	return nil
}

// syncDir makes a rename in dir durable (best effort; not on Windows).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// maxReaders is how many reads of one process may run at once.
const maxReaders = 16

// lock is the cross-process file lock held for one operation.
type lock struct {
	f      *os.File
	weight int64
	rev    int64 // set by a committing write: published after the commit
	file   fileState
}

// publish records rev in the lock file so that watches in other processes
// notice the write without taking the lock.
func (l *lock) publish(rev int64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(rev))
	l.f.WriteAt(b[:], 0)
}

// acquire takes this process's semaphore and then the file lock (see
// lockFile) on the lock file, exclusive to write and shared to read,
// waiting at most until ctx ends or LockTimeout passes.
func (s *Store) acquire(ctx context.Context, write bool) (*lock, error) {
	lctx, cancel := context.WithTimeout(ctx, s.opts.LockTimeout)
	defer cancel()
	weight := int64(1)
	if write {
		weight = maxReaders
	}
	if err := s.sem.Acquire(lctx, weight); err != nil {
		return nil, unavailable(ctx, "waiting for other operations of this process")
	}
	f, err := os.OpenFile(s.lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		s.sem.Release(weight)
		return nil, err
	}
	if err := lockFile(f, write, false); err == nil {
		return &lock{f: f, weight: weight}, nil
	}
	// Block in the kernel (woken as soon as the holder unlocks) on another
	// goroutine, so that the deadline can still end the wait.
	res := make(chan error, 1)
	go func() {
		res <- lockFile(f, write, true)
	}()
	select {
	case err := <-res:
		if err != nil {
			unlockClose(f)
			s.sem.Release(weight)
			return nil, err
		}
		return &lock{f: f, weight: weight}, nil
	case <-lctx.Done():
		// Whoever gets the lock later releases it and the semaphore.
		go func() {
			<-res
			unlockClose(f)
			s.sem.Release(weight)
		}()
		return nil, unavailable(ctx, "waiting for the file lock")
	}
}

func (s *Store) release(l *lock) {
	unlockClose(l.f)
	s.sem.Release(l.weight)
}

func unavailable(ctx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w: %w", what, datastore.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, datastore.ErrUnavailable)
}

// errMissing: the file does not exist (Open creates it; any other
// operation reports the store as lost).
var errMissing = errors.New("bolt: store file missing")

// do runs fn in a bbolt transaction on the file, opened for this operation
// only, under the lock. The file is validated first (validateFile), and a
// panic or memory fault inside bbolt (a damaged page that validation could
// not see, or a file truncated by someone else while mapped) is recovered
// as ErrCorrupt rather than crashing the process.
func (s *Store) do(ctx context.Context, op string, write bool, fn func(*bbolt.Tx, *lock) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	s.mu.Lock()
	closed, h := s.closed, s.held
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("bolt: %s: %w", op, datastore.ErrClosed)
	}
	if h != nil {
		if err := s.execHeld(h, write, fn); err != nil {
			return fmt.Errorf("bolt: %s: %w", op, err)
		}
		return nil
	}
	l, err := s.acquire(ctx, write)
	if err != nil {
		return fmt.Errorf("bolt: %s %s: %w", op, s.path, err)
	}
	defer s.release(l)
	if err := s.exec(op, write, l, fn); err != nil {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	return nil
}

// exec is do's part under the lock.
func (s *Store) exec(op string, write bool, l *lock, fn func(*bbolt.Tx, *lock) error) (err error) {
	var f *os.File // bbolt's descriptor: closed (dropping its flock) if bbolt panics
	defer func() {
		if r := recover(); r != nil {
			if f != nil {
				f.Close()
			}
			err = fmt.Errorf("%s: %w: bbolt failed on a damaged page: %v", s.path, datastore.ErrCorrupt, r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err := s.openDB(op, write, l, &f)
	if err != nil {
		return err
	}
	defer db.Close()
	return s.runTx(db, write, l, fn)
}

// Hold runs fn with the store held for this process: the file lock taken
// (exclusively) and the file opened, validated and mapped once, for all
// the operations made through s until fn returns, instead of once per
// operation. Each operation is still its own transaction and each write is
// committed (and synced, unless NoSync) before it returns, so what is
// durable and what other processes see is the same as without Hold. Other
// processes' operations wait for the lock until fn returns: keep fn to a
// few operations (the CNI plugin holds the store for one assignment). The
// operations of other goroutines of this process run on the held file too,
// one at a time. A Hold inside a Hold runs fn in the outer one.
func (s *Store) Hold(ctx context.Context, fn func() error) (err error) {
	s.mu.Lock()
	closed, nested := s.closed, s.held != nil
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("bolt: hold: %w", datastore.ErrClosed)
	}
	if nested {
		return fn()
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: hold: %w", err)
	}
	l, err := s.acquire(ctx, true)
	if err != nil {
		return fmt.Errorf("bolt: hold %s: %w", s.path, err)
	}
	defer s.release(l)
	h := &held{l: l}
	if err := s.openHeld(h); err != nil {
		return fmt.Errorf("bolt: hold: %w", err)
	}
	s.mu.Lock()
	s.held = h
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.held = nil
		s.mu.Unlock()
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.broken == nil {
			if cerr := h.db.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("bolt: hold: close: %w", cerr)
			}
		}
	}()
	return fn()
}

// openHeld opens the file for a Hold, recovering bbolt's panics as exec
// does.
func (s *Store) openHeld(h *held) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if h.f != nil {
				h.f.Close()
			}
			err = fmt.Errorf("%s: %w: bbolt failed on a damaged page: %v", s.path, datastore.ErrCorrupt, r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	h.db, err = s.openDB("hold", true, h.l, &h.f)
	return err
}

// execHeld is exec on the file a Hold opened.
func (s *Store) execHeld(h *held, write bool, fn func(*bbolt.Tx, *lock) error) (err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.broken != nil {
		return h.broken
	}
	defer func() {
		if r := recover(); r != nil {
			// The mapping cannot be trusted any more: drop it (and
			// bbolt's flock with the descriptor) and fail the rest.
			h.f.Close()
			h.broken = fmt.Errorf("%s: %w: bbolt failed on a damaged page: %v", s.path, datastore.ErrCorrupt, r)
			err = h.broken
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return s.runTx(h.db, write, h.l, fn)
}

// openDB opens the bbolt file for one operation (or one Hold), validating
// it first; *f is set to bbolt's descriptor as soon as it exists.
func (s *Store) openDB(op string, write bool, l *lock, f **os.File) (*bbolt.DB, error) {
	db, err := bbolt.Open(s.path, 0o600, &bbolt.Options{
		Timeout:  s.opts.LockTimeout,
		NoSync:   s.opts.NoSync,
		ReadOnly: !write,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			// Never create: a missing file is a lost store, not a new one
			// (Open creates stores). Validate before bbolt reads a byte.
			fd, err := os.OpenFile(name, flag&^os.O_CREATE, mode)
			if err != nil {
				return nil, err
			}
			st, err := validateOpen(fd, name, false)
			if err != nil {
				fd.Close()
				return nil, err
			}
			l.file, *f = st, fd
			return fd, nil
		},
	})
	if errors.Is(err, fs.ErrNotExist) {
		if op == "open" {
			return nil, errMissing
		}
		return nil, fmt.Errorf("%w: %w: %s was removed while the store was open (restore it with tabbyctl ipam restore)", errMissing, datastore.ErrCorrupt, s.path)
	}
	if errors.Is(err, bberrors.ErrTimeout) {
		return nil, fmt.Errorf("%s: file locked by another program: %w", s.path, datastore.ErrUnavailable)
	}
	if err != nil {
		return nil, classify(s.path, err)
	}
	return db, nil
}

// runTx runs fn in one transaction on db (a write commits and publishes its
// revision under the lock).
func (s *Store) runTx(db *bbolt.DB, write bool, l *lock, fn func(*bbolt.Tx, *lock) error) error {
	var err error
	if write {
		deadline := int64(-1)
		l.rev = 0
		err = db.Update(func(tx *bbolt.Tx) error {
			if err := fn(tx, l); err != nil {
				return err
			}
			deadline = earliest(tx)
			return nil
		})
		if err == nil && l.rev > 0 {
			// Still under the lock, so revisions are published in order.
			l.publish(l.rev)
		}
		if err == nil && deadline >= 0 {
			l.publishDeadline(deadline)
		}
	} else {
		err = db.View(func(tx *bbolt.Tx) error { return fn(tx, l) })
	}
	return classify(s.path, err)
}

// read runs fn in a read transaction. If a lease has expired but its keys
// are not yet deleted, it sweeps first (a write) and reads again, so that
// no read returns a key whose lease is over.
func (s *Store) read(ctx context.Context, op string, fn func(*bbolt.Tx) error) error {
	view := func(tx *bbolt.Tx, _ *lock) error {
		if expiredPending(tx, time.Now()) {
			return errSweep
		}
		return fn(tx)
	}
	err := s.do(ctx, op, false, view)
	if !errors.Is(err, errSweep) {
		return err
	}
	if err := s.sweepNow(ctx); err != nil {
		return err
	}
	return s.do(ctx, op, false, func(tx *bbolt.Tx, l *lock) error { return fn(tx) })
}

func u64(b []byte) int64 {
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

func be(v int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(v))
	return b
}

func getMeta(tx *bbolt.Tx, key []byte) int64 {
	b := tx.Bucket(bucketMeta)
	if b == nil {
		return 0
	}
	return u64(b.Get(key))
}

// A kv bucket value is the 8-byte big-endian revision then the value.
func decodeKV(key, v []byte) (datastore.KV, error) {
	if len(v) < 8 {
		return datastore.KV{}, fmt.Errorf("key %q: %w: record of %d bytes (at least 8)", key, datastore.ErrCorrupt, len(v))
	}
	return datastore.KV{Key: string(key), Revision: u64(v[:8]), Value: append([]byte{}, v[8:]...)}, nil
}

// Get implements datastore.Store.
func (s *Store) Get(ctx context.Context, key string) (datastore.KV, error) {
	if !datastore.ValidKey(key) {
		return datastore.KV{}, fmt.Errorf("bolt: get %q: %w", key, datastore.ErrInvalid)
	}
	var kv datastore.KV
	err := s.read(ctx, "get", func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketKV).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("%q: %w", key, datastore.ErrNotFound)
		}
		var err error
		kv, err = decodeKV([]byte(key), v)
		return err
	})
	return kv, err
}

// List implements datastore.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]datastore.KV, int64, error) {
	if err := datastore.ValidatePrefix(prefix); err != nil {
		return nil, 0, fmt.Errorf("bolt: list: %w", err)
	}
	var out []datastore.KV
	var rev int64
	err := s.read(ctx, "list", func(tx *bbolt.Tx) error {
		out = nil
		rev = getMeta(tx, metaRev)
		p := []byte(prefix)
		c := tx.Bucket(bucketKV).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			kv, err := decodeKV(k, v)
			if err != nil {
				return err
			}
			out = append(out, kv)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, rev, nil
}

// Create implements datastore.Store.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	return s.Txn(ctx, datastore.Create(key, value))
}

// Update implements datastore.Store.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	return s.txn(ctx, true, []datastore.Op{datastore.Update(key, value, rev)})
}

// Delete implements datastore.Store.
func (s *Store) Delete(ctx context.Context, key string, rev int64) error {
	_, err := s.txn(ctx, true, []datastore.Op{datastore.Delete(key, rev)})
	return err
}

// Txn implements datastore.Store.
func (s *Store) Txn(ctx context.Context, ops ...datastore.Op) (int64, error) {
	return s.txn(ctx, false, ops)
}

// txn applies ops; single says a missing key is ErrNotFound rather than
// ErrConflict (Update and Delete outside a Txn).
func (s *Store) txn(ctx context.Context, single bool, ops []datastore.Op) (int64, error) {
	if err := datastore.ValidateOps(ops); err != nil {
		return 0, fmt.Errorf("bolt: txn: %w", err)
	}
	var rev int64
	err := s.write(ctx, "txn", func(tx *bbolt.Tx, l *lock) error {
		kvb := tx.Bucket(bucketKV)
		cur := getMeta(tx, metaRev)
		writes := 0
		for _, op := range ops {
			v := kvb.Get([]byte(op.Key))
			var at int64
			if v != nil {
				if len(v) < 8 {
					return fmt.Errorf("key %q: %w: record of %d bytes (at least 8)", op.Key, datastore.ErrCorrupt, len(v))
				}
				at = u64(v[:8])
			}
			if op.Lease != 0 {
				if _, _, ok := getLease(tx, op.Lease); !ok {
					return fmt.Errorf("%s %q: lease %d: %w", op.Type, op.Key, op.Lease, datastore.ErrLeaseNotFound)
				}
			}
			switch op.Type {
			case datastore.OpCreate:
				if v != nil {
					return fmt.Errorf("create %q: %w", op.Key, datastore.ErrExists)
				}
				writes++
			default:
				if single && v == nil {
					return fmt.Errorf("%s %q: %w", op.Type, op.Key, datastore.ErrNotFound)
				}
				if at != op.Revision {
					return fmt.Errorf("%s %q at revision %d (is %d): %w", op.Type, op.Key, op.Revision, at, datastore.ErrConflict)
				}
				if op.Type != datastore.OpCheck {
					writes++
				}
			}
		}
		if writes == 0 {
			rev = cur
			return nil
		}
		var err error
		rev, err = s.commitOps(tx, l, ops)
		return err
	})
	if err != nil {
		return 0, err
	}
	return rev, nil
}

// commitOps writes the creates, updates and deletes among ops (without
// checking conditions) at one new revision, with their log events and
// lease attachments, and returns that revision.
func (s *Store) commitOps(tx *bbolt.Tx, l *lock, ops []datastore.Op) (int64, error) {
	kvb := tx.Bucket(bucketKV)
	rev := getMeta(tx, metaRev) + 1
	logb := tx.Bucket(bucketLog)
	meta := tx.Bucket(bucketMeta)
	seq := uint32(0)
	for _, op := range ops {
		var ev byte
		switch op.Type {
		case datastore.OpCreate, datastore.OpUpdate:
			rec := make([]byte, 8+len(op.Value))
			binary.BigEndian.PutUint64(rec, uint64(rev))
			copy(rec[8:], op.Value)
			if err := kvb.Put([]byte(op.Key), rec); err != nil {
				return 0, err
			}
			ev = byte(datastore.EventPut)
		case datastore.OpDelete:
			if err := kvb.Delete([]byte(op.Key)); err != nil {
				return 0, err
			}
			ev = byte(datastore.EventDelete)
		default:
			continue
		}
		if err := attach(tx, op.Key, op.Lease); err != nil {
			return 0, err
		}
		if err := logb.Put(logKey(rev, seq), encodeEvent(ev, op)); err != nil {
			return 0, err
		}
		seq++
	}
	if err := meta.Put(metaRev, be(rev)); err != nil {
		return 0, err
	}
	count := getMeta(tx, metaLogCount) + int64(seq)
	if max := int64(s.opts.LogSize); count > max+max/4 {
		var err error
		if count, err = trimLog(tx, count, count-max, 0, rev); err != nil {
			return 0, err
		}
	}
	if err := meta.Put(metaLogCount, be(count)); err != nil {
		return 0, err
	}
	l.rev = rev
	return rev, nil
}

func logKey(rev int64, seq uint32) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, uint64(rev))
	binary.BigEndian.PutUint32(k[8:], seq)
	return k
}

// A log record is the event type, the key length (uvarint), the key, then
// the value.
func encodeEvent(typ byte, op datastore.Op) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(op.Key)+len(op.Value))
	b = append(b, typ)
	b = binary.AppendUvarint(b, uint64(len(op.Key)))
	b = append(b, op.Key...)
	if typ == byte(datastore.EventPut) {
		b = append(b, op.Value...)
	}
	return b
}

func decodeEvent(k, v []byte) (datastore.Event, error) {
	if len(k) != 12 || len(v) < 2 {
		return datastore.Event{}, fmt.Errorf("%w: log record %x", datastore.ErrCorrupt, k)
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || uint64(len(v)-1-w) < n {
		return datastore.Event{}, fmt.Errorf("%w: log record %x", datastore.ErrCorrupt, k)
	}
	ev := datastore.Event{
		Type:     datastore.EventType(v[0]),
		Revision: u64(k[:8]),
		Key:      string(v[1+w : 1+w+int(n)]),
	}
	if ev.Type == datastore.EventPut {
		ev.Value = append([]byte{}, v[1+w+int(n):]...)
	}
	return ev, nil
}

// trimLog deletes at least n of the oldest log events, always whole
// revisions, and at least everything up to upTo, but never an event at
// keep or later. It returns the new count and records the compaction
// revision.
func trimLog(tx *bbolt.Tx, count, n, upTo, keep int64) (int64, error) {
	c := tx.Bucket(bucketLog).Cursor()
	last := getMeta(tx, metaCompacted)
	for k, _ := c.First(); k != nil; k, _ = c.First() {
		rev := u64(k[:8])
		if rev >= keep || (n <= 0 && rev > upTo && rev != last) {
			break
		}
		if err := c.Delete(); err != nil {
			return 0, err
		}
		last = rev
		n--
		count--
	}
	if upTo > last {
		last = upTo
	}
	if err := tx.Bucket(bucketMeta).Put(metaCompacted, be(last)); err != nil {
		return 0, err
	}
	return count, nil
}

// Compact forgets the change log up to and including rev: a Watch from an
// older revision then fails with ErrCompacted. A rev beyond the current
// revision is ErrInvalid.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	return s.do(ctx, "compact", true, func(tx *bbolt.Tx, _ *lock) error {
		if cur := getMeta(tx, metaRev); rev < 0 || rev > cur {
			return fmt.Errorf("revision %d (current %d): %w", rev, cur, datastore.ErrInvalid)
		}
		if rev <= getMeta(tx, metaCompacted) {
			return nil
		}
		count, err := trimLog(tx, getMeta(tx, metaLogCount), 0, rev, math.MaxInt64)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaLogCount, be(count))
	})
}

// Check verifies the file: both meta pages, bbolt's own page consistency
// check, and that every key and log event decodes and has a revision between
// the compaction revision and the store revision. Any problem is
// datastore.ErrCorrupt. It is what `tabbyctl ipam check` and a test that
// killed a writer run.
func (s *Store) Check(ctx context.Context) error {
	return s.do(ctx, "check", false, func(tx *bbolt.Tx, l *lock) error {
		if err := l.file.verify(s.path); err != nil {
			return err
		}
		return checkTx(tx)
	})
}

func checkTx(tx *bbolt.Tx) error {
	// Drain the channel: the check runs on its own goroutine, which must end
	// before the transaction does.
	var first error
	for err := range tx.Check() {
		if first == nil {
			first = fmt.Errorf("%w: %v", datastore.ErrCorrupt, err)
		}
	}
	if first != nil {
		return first
	}
	for _, b := range [][]byte{bucketMeta, bucketKV, bucketLog} {
		if tx.Bucket(b) == nil {
			return fmt.Errorf("%w: bucket %s missing", datastore.ErrCorrupt, b)
		}
	}
	rev := getMeta(tx, metaRev)
	compacted := getMeta(tx, metaCompacted)
	err := tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
		kv, err := decodeKV(k, v)
		if err != nil {
			return err
		}
		if kv.Revision < 1 || kv.Revision > rev {
			return fmt.Errorf("%w: key %q at revision %d, store at %d", datastore.ErrCorrupt, k, kv.Revision, rev)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var count int64
	err = tx.Bucket(bucketLog).ForEach(func(k, v []byte) error {
		ev, err := decodeEvent(k, v)
		if err != nil {
			return err
		}
		if ev.Revision <= compacted || ev.Revision > rev {
			return fmt.Errorf("%w: log event at revision %d outside (%d, %d]", datastore.ErrCorrupt, ev.Revision, compacted, rev)
		}
		count++
		return nil
	})
	if err != nil {
		return err
	}
	if c := getMeta(tx, metaLogCount); c != count {
		return fmt.Errorf("%w: log count %d, %d events", datastore.ErrCorrupt, c, count)
	}
	return nil
}

func (s *Store) wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Close implements datastore.Store. Operations already running finish.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("bolt: close: %w", datastore.ErrClosed)
	}
	s.closed = true
	close(s.done)
	return nil
}

// readRev reads the revision the last writer published in the lock file.
func readRev(f *os.File) int64 {
	if f == nil {
		return -1
	}
	var b [8]byte
	if _, err := f.ReadAt(b[:], 0); err != nil && err != io.EOF {
		return -1
	}
	return u64(b[:])
}
