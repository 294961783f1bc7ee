package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tabbynet/tabby/datastore"
)

const batchSize = 256

// Watch implements datastore.Store. The watch reads the file's change log:
// at once when this Store writes, and otherwise when the revision that
// writers publish in the lock file moves (checked every PollInterval without
// taking the lock). If after is already compacted Watch returns ErrCompacted
// itself; a watch that falls behind the log ends with an ErrCompacted Event.
// A lock wait that times out while watching is retried, not fatal.
func (s *Store) Watch(ctx context.Context, prefix string, after int64) (<-chan datastore.Event, error) {
	if err := datastore.ValidatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("bolt: watch: %w", err)
	}
	if after < 0 {
		return nil, fmt.Errorf("bolt: watch from revision %d: %w", after, datastore.ErrInvalid)
	}
	notify := make(chan struct{}, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("bolt: watch: %w", datastore.ErrClosed)
	}
	s.watchers[notify] = struct{}{}
	s.mu.Unlock()
	// Read the first batch now so that ErrCompacted is returned directly.
	batch, next, more, err := s.readLog(ctx, prefix, after)
	if err != nil {
		s.mu.Lock()
		delete(s.watchers, notify)
		s.mu.Unlock()
		return nil, err
	}
	out := make(chan datastore.Event, s.opts.WatchBuffer)
	go s.run(ctx, prefix, next, batch, more, notify, out)
	return out, nil
}

// readLog returns up to about batchSize events under prefix with revisions
// after after (whole revisions), the revision up to which the log was read,
// and whether more events may follow.
func (s *Store) readLog(ctx context.Context, prefix string, after int64) ([]datastore.Event, int64, bool, error) {
	var out []datastore.Event
	next := after
	more := false
	err := s.do(ctx, "watch", false, func(tx *bbolt.Tx, _ *lock) error {
		if c := getMeta(tx, metaCompacted); after < c {
			return fmt.Errorf("%q from revision %d (compacted up to %d): %w", prefix, after, c, datastore.ErrCompacted)
		}
		p := []byte(prefix)
		c := tx.Bucket(bucketLog).Cursor()
		scanned := 0
		for k, v := c.Seek(logKey(after+1, 0)); k != nil; k, v = c.Next() {
			ev, err := decodeEvent(k, v)
			if err != nil {
				return err
			}
			if scanned >= batchSize && ev.Revision != next {
				more = true
				return nil
			}
			scanned++
			next = ev.Revision
			if bytes.HasPrefix([]byte(ev.Key), p) {
				out = append(out, ev)
			}
		}
		if rev := getMeta(tx, metaRev); rev > next {
			next = rev
		}
		return nil
	})
	return out, next, more, err
}

func (s *Store) run(ctx context.Context, prefix string, after int64, batch []datastore.Event, more bool,
	notify chan struct{}, out chan<- datastore.Event) {
	defer close(out)
	defer func() {
		s.mu.Lock()
		delete(s.watchers, notify)
		s.mu.Unlock()
	}()
	lf, _ := os.Open(s.lockPath)
	if lf != nil {
		defer lf.Close()
	}
	ticker := time.NewTicker(s.opts.PollInterval)
	defer ticker.Stop()
	polls := 0
	for {
		for _, ev := range batch {
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
		batch = nil
		if !more {
			select {
			case <-notify:
			case <-ticker.C:
				polls++
				if d := readDeadline(lf); d > 0 && d <= time.Now().UnixNano() {
					// A lease expired, granted by whichever process:
					// delete its keys (the first watch to notice wins).
					if err := s.sweepNow(ctx); err != nil && ctx.Err() == nil {
						s.log.Warn("bolt: watch: expire leases: will retry", "err", err)
					}
				}
				// Another process wrote, or a periodic check in case a
				// writer died between its commit and publishing.
				if readRev(lf) <= after && polls%50 != 0 {
					continue
				}
			case <-ctx.Done():
				return
			case <-s.done:
				select {
				case out <- datastore.Event{Err: fmt.Errorf("bolt: watch %q: %w", prefix, datastore.ErrClosed)}:
				default:
				}
				return
			}
		}
		var err error
		var next int64
		batch, next, more, err = s.readLog(ctx, prefix, after)
		switch {
		case err == nil:
			after = next
		case ctx.Err() != nil:
			return
		case errors.Is(err, datastore.ErrUnavailable):
			s.log.Warn("bolt: watch: will retry", "prefix", prefix, "err", err)
			more = false
		default:
			select {
			case out <- datastore.Event{Err: fmt.Errorf("bolt: watch %q: %w", prefix, err)}:
			case <-ctx.Done():
			}
			return
		}
	}
}
