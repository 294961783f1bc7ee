package memory

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/datastore"
)

// Defaults used when Options (or one of its fields) is zero.
const (
	DefaultHistorySize = 10000
	DefaultWatchBuffer = 64
)

// Options tunes a Store. A nil *Options means defaults. It is a plain value,
// read only by New.
type Options struct {
	// HistorySize is how many change events the store keeps for Watch to
	// start from an older revision and for slow watchers to catch up
	// (default 10000). Older revisions are compacted: a watch that needs them
	// gets ErrCompacted. The history holds between HistorySize and
	// 1.25*HistorySize events (it is trimmed in steps), or more while the
	// newest transaction alone is larger.
	HistorySize int
	// WatchBuffer is the capacity of each watch channel (default 64).
	WatchBuffer int
}

// Store is an in-process datastore.Store. It is safe for concurrent use.
type Store struct {
	mu        sync.Mutex
	root      *node
	count     int
	rev       int64
	hist      []datastore.Event // changes with Revision > compacted, in order
	compacted int64
	histMax   int
	buf       int
	watchers  map[*watcher]struct{}
	closed    bool
	done      chan struct{}

	leases    map[datastore.LeaseID]*lease
	keyLease  map[string]datastore.LeaseID // keys attached to a lease
	lastLease datastore.LeaseID
}

var (
	_ datastore.Store  = (*Store)(nil)
	_ datastore.Leaser = (*Store)(nil)
)

type watcher struct {
	prefix string
	after  int64         // every change up to this revision was scanned
	notify chan struct{} // capacity 1: "there may be news"
}

// New returns an empty store at revision 0.
func New(opts *Options) *Store {
	s := &Store{
		histMax:  DefaultHistorySize,
		buf:      DefaultWatchBuffer,
		watchers: make(map[*watcher]struct{}),
		done:     make(chan struct{}),
		leases:   make(map[datastore.LeaseID]*lease),
		keyLease: make(map[string]datastore.LeaseID),
	}
	if opts != nil {
		if opts.HistorySize > 0 {
			s.histMax = opts.HistorySize
		}
		if opts.WatchBuffer > 0 {
			s.buf = opts.WatchBuffer
		}
	}
	return s
}

func clone(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return append([]byte{}, b...)
}

func (s *Store) begin(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("memory: %s: %w", op, datastore.ErrClosed)
	}
	return nil
}

// Get implements datastore.Store.
func (s *Store) Get(ctx context.Context, key string) (datastore.KV, error) {
	if !datastore.ValidKey(key) {
		return datastore.KV{}, fmt.Errorf("memory: get %q: %w", key, datastore.ErrInvalid)
	}
	if err := s.begin(ctx, "get"); err != nil {
		return datastore.KV{}, err
	}
	defer s.mu.Unlock()
	n := find(s.root, key)
	if n == nil {
		return datastore.KV{}, fmt.Errorf("memory: get %q: %w", key, datastore.ErrNotFound)
	}
	return datastore.KV{Key: key, Value: clone(n.val), Revision: n.rev}, nil
}

// List implements datastore.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]datastore.KV, int64, error) {
	if err := datastore.ValidatePrefix(prefix); err != nil {
		return nil, 0, fmt.Errorf("memory: list: %w", err)
	}
	if err := s.begin(ctx, "list"); err != nil {
		return nil, 0, err
	}
	defer s.mu.Unlock()
	var out []datastore.KV
	ascend(s.root, prefix, func(n *node) bool {
		if !strings.HasPrefix(n.key, prefix) {
			return false
		}
		out = append(out, datastore.KV{Key: n.key, Value: clone(n.val), Revision: n.rev})
		return true
	})
	return out, s.rev, nil
}

// Create implements datastore.Store.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	rev, err := s.Txn(ctx, datastore.Create(key, value))
	if err != nil {
		return 0, err
	}
	return rev, nil
}

// Update implements datastore.Store.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	return s.single(ctx, datastore.Update(key, value, rev))
}

// Delete implements datastore.Store.
func (s *Store) Delete(ctx context.Context, key string, rev int64) error {
	_, err := s.single(ctx, datastore.Delete(key, rev))
	return err
}

// single runs an update or delete, reporting a missing key as ErrNotFound
// (a Txn reports it as ErrConflict).
func (s *Store) single(ctx context.Context, op datastore.Op) (int64, error) {
	if err := datastore.ValidateOps([]datastore.Op{op}); err != nil {
		return 0, fmt.Errorf("memory: %w", err)
	}
	if err := s.begin(ctx, op.Type.String()); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	if find(s.root, op.Key) == nil {
		return 0, fmt.Errorf("memory: %s %q: %w", op.Type, op.Key, datastore.ErrNotFound)
	}
	return s.apply([]datastore.Op{op})
}

// Txn implements datastore.Store.
func (s *Store) Txn(ctx context.Context, ops ...datastore.Op) (int64, error) {
	if err := datastore.ValidateOps(ops); err != nil {
		return 0, fmt.Errorf("memory: txn: %w", err)
	}
	if err := s.begin(ctx, "txn"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	return s.apply(ops)
}

// apply checks every condition, then writes every op at one new revision.
// s.mu is held.
func (s *Store) apply(ops []datastore.Op) (int64, error) {
	writes := 0
	for _, op := range ops {
		if op.Lease != 0 && s.leases[op.Lease] == nil {
			return 0, fmt.Errorf("memory: %s %q: lease %d: %w", op.Type, op.Key, op.Lease, datastore.ErrLeaseNotFound)
		}
		n := find(s.root, op.Key)
		var cur int64
		if n != nil {
			cur = n.rev
		}
		switch op.Type {
		case datastore.OpCreate:
			if n != nil {
				return 0, fmt.Errorf("memory: create %q: %w", op.Key, datastore.ErrExists)
			}
			writes++
		case datastore.OpUpdate, datastore.OpDelete, datastore.OpCheck:
			if cur != op.Revision {
				return 0, fmt.Errorf("memory: %s %q at revision %d (is %d): %w",
					op.Type, op.Key, op.Revision, cur, datastore.ErrConflict)
			}
			if op.Type != datastore.OpCheck {
				writes++
			}
		}
	}
	if writes == 0 {
		return s.rev, nil
	}
	s.rev++
	rev := s.rev
	for _, op := range ops {
		if op.Type != datastore.OpCheck {
			s.attach(op.Key, op.Lease)
		}
		switch op.Type {
		case datastore.OpCreate:
			v := clone(op.Value)
			s.root = insert(s.root, newNode(op.Key, v, rev))
			s.count++
			s.hist = append(s.hist, datastore.Event{Type: datastore.EventPut, Key: op.Key, Value: v, Revision: rev})
		case datastore.OpUpdate:
			v := clone(op.Value)
			n := find(s.root, op.Key)
			n.val, n.rev = v, rev
			s.hist = append(s.hist, datastore.Event{Type: datastore.EventPut, Key: op.Key, Value: v, Revision: rev})
		case datastore.OpDelete:
			s.root = remove(s.root, op.Key)
			s.count--
			s.hist = append(s.hist, datastore.Event{Type: datastore.EventDelete, Key: op.Key, Revision: rev})
		}
	}
	if len(s.hist) > s.histMax+s.histMax/4 {
		s.trim(len(s.hist) - s.histMax)
	}
	for w := range s.watchers {
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
	return rev, nil
}

// trim drops at least n of the oldest events, always whole revisions, but
// never the newest revision (so a transaction larger than the history can
// still be watched from just before it). s.mu is held.
func (s *Store) trim(n int) {
	if n <= 0 || len(s.hist) == 0 {
		return
	}
	newest := s.hist[len(s.hist)-1].Revision
	if n > len(s.hist) {
		n = len(s.hist)
	}
	last := s.hist[n-1].Revision
	if last == newest {
		n = sort.Search(len(s.hist), func(i int) bool { return s.hist[i].Revision == newest })
		if n == 0 {
			return
		}
		last = s.hist[n-1].Revision
	}
	for n < len(s.hist) && s.hist[n].Revision == last {
		n++
	}
	s.compacted = last
	s.hist = append([]datastore.Event(nil), s.hist[n:]...)
}

// Compact forgets the history up to and including rev: a Watch from an
// older revision then fails with ErrCompacted. A rev beyond the current
// revision is ErrInvalid.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	if err := s.begin(ctx, "compact"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if rev > s.rev || rev < 0 {
		return fmt.Errorf("memory: compact %d (revision %d): %w", rev, s.rev, datastore.ErrInvalid)
	}
	if rev <= s.compacted {
		return nil
	}
	i := sort.Search(len(s.hist), func(i int) bool { return s.hist[i].Revision > rev })
	s.hist = append([]datastore.Event(nil), s.hist[i:]...)
	s.compacted = rev
	return nil
}

// Len returns the number of keys in the store.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Watch implements datastore.Store. If after is already compacted, Watch
// returns ErrCompacted itself. A watcher that falls so far behind that the
// history it still needs is trimmed receives an Event with ErrCompacted and
// its channel is closed: writers never wait for watchers and a slow watcher
// costs at most one batch of events.
func (s *Store) Watch(ctx context.Context, prefix string, after int64) (<-chan datastore.Event, error) {
	if err := datastore.ValidatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("memory: watch: %w", err)
	}
	if after < 0 {
		return nil, fmt.Errorf("memory: watch from revision %d: %w", after, datastore.ErrInvalid)
	}
	if err := s.begin(ctx, "watch"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if after < s.compacted {
		return nil, fmt.Errorf("memory: watch %q from revision %d (compacted up to %d): %w",
			prefix, after, s.compacted, datastore.ErrCompacted)
	}
	w := &watcher{prefix: prefix, after: after, notify: make(chan struct{}, 1)}
	s.watchers[w] = struct{}{}
	out := make(chan datastore.Event, s.buf)
	go s.run(ctx, w, out)
	return out, nil
}

const batchSize = 256

func (s *Store) run(ctx context.Context, w *watcher, out chan<- datastore.Event) {
	defer close(out)
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	fail := func(err error) {
		select {
		case out <- datastore.Event{Err: err}:
		case <-ctx.Done():
		}
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			select {
			case out <- datastore.Event{Err: fmt.Errorf("memory: watch %q: %w", w.prefix, datastore.ErrClosed)}:
			default:
			}
			return
		}
		if w.after < s.compacted {
			err := fmt.Errorf("memory: watch %q after revision %d (compacted up to %d): %w",
				w.prefix, w.after, s.compacted, datastore.ErrCompacted)
			s.mu.Unlock()
			fail(err)
			return
		}
		i := sort.Search(len(s.hist), func(i int) bool { return s.hist[i].Revision > w.after })
		var batch []datastore.Event
		for ; i < len(s.hist); i++ {
			ev := s.hist[i]
			if len(batch) >= batchSize && ev.Revision != w.after {
				break
			}
			w.after = ev.Revision
			if strings.HasPrefix(ev.Key, w.prefix) {
				if ev.Value != nil {
					ev.Value = clone(ev.Value)
				}
				batch = append(batch, ev)
			}
		}
		s.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-w.notify:
			case <-s.done:
			case <-ctx.Done():
				return
			}
			continue
		}
		for _, ev := range batch {
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}
}

// lease is one granted lease. s.mu guards it.
type lease struct {
	ttl      time.Duration
	deadline time.Time
	keys     map[string]struct{}
	timer    *time.Timer
}

// attach moves key to lease id (0: to no lease). s.mu is held.
func (s *Store) attach(key string, id datastore.LeaseID) {
	if old, ok := s.keyLease[key]; ok {
		if old == id {
			return
		}
		if l := s.leases[old]; l != nil {
			delete(l.keys, key)
		}
		delete(s.keyLease, key)
	}
	if id != 0 {
		s.leases[id].keys[key] = struct{}{}
		s.keyLease[key] = id
	}
}

// Grant implements datastore.Leaser. The TTL is kept as given; expiry
// deletes the lease's keys at one new revision from a timer.
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (datastore.LeaseID, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("memory: grant lease of %v: %w", ttl, datastore.ErrInvalid)
	}
	if err := s.begin(ctx, "grant lease"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	s.lastLease++
	id := s.lastLease
	l := &lease{ttl: ttl, deadline: time.Now().Add(ttl), keys: map[string]struct{}{}}
	l.timer = time.AfterFunc(ttl, func() { s.expire(id) })
	s.leases[id] = l
	return id, nil
}

// KeepAlive implements datastore.Leaser.
func (s *Store) KeepAlive(ctx context.Context, id datastore.LeaseID) error {
	if err := s.begin(ctx, "keep lease alive"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	l := s.leases[id]
	if l == nil {
		return fmt.Errorf("memory: keep lease %d alive: %w", id, datastore.ErrLeaseNotFound)
	}
	l.deadline = time.Now().Add(l.ttl)
	l.timer.Reset(l.ttl)
	return nil
}

// Revoke implements datastore.Leaser.
func (s *Store) Revoke(ctx context.Context, id datastore.LeaseID) error {
	if err := s.begin(ctx, "revoke lease"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.leases[id] == nil {
		return fmt.Errorf("memory: revoke lease %d: %w", id, datastore.ErrLeaseNotFound)
	}
	s.endLease(id)
	return nil
}

// expire runs from the lease's timer.
func (s *Store) expire(id datastore.LeaseID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leases[id]
	if l == nil || s.closed {
		return
	}
	if d := time.Until(l.deadline); d > 0 {
		l.timer.Reset(d) // kept alive while the timer fired
		return
	}
	s.endLease(id)
}

// endLease deletes the lease and its keys (at one new revision). s.mu is
// held.
func (s *Store) endLease(id datastore.LeaseID) {
	l := s.leases[id]
	l.timer.Stop()
	keys := make([]string, 0, len(l.keys))
	for k := range l.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ops []datastore.Op
	for _, k := range keys {
		if n := find(s.root, k); n != nil {
			ops = append(ops, datastore.Delete(k, n.rev))
		}
	}
	if len(ops) > 0 {
		if _, err := s.apply(ops); err != nil {
			panic(err) // cannot happen: revisions read under the same lock
		}
	}
	delete(s.leases, id)
}

// Close implements datastore.Store: every watch ends with ErrClosed (when
// its channel has room for that event) and further calls fail with
// ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("memory: close: %w", datastore.ErrClosed)
	}
	s.closed = true
	close(s.done)
	for _, l := range s.leases {
		l.timer.Stop()
	}
	return nil
}
