package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tabbynet/tabby/datastore"
)

// Watch implements datastore.Store on an etcd watch, which the client keeps
// alive across disconnections and resumes from the last revision it
// delivered. If after is already compacted Watch returns ErrCompacted
// itself (it asks etcd for a read at that revision first); a compaction
// that overtakes a disconnected or slow watch ends it with an ErrCompacted
// Event. When the consumer stops reading and the channel fills, the etcd
// watch is cancelled (dropping the client's buffer) and re-created from the
// last delivered revision once the consumer catches up, so a slow consumer
// costs bounded memory.
func (s *Store) Watch(ctx context.Context, prefix string, after int64) (<-chan datastore.Event, error) {
	if err := datastore.ValidatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("etcd: watch: %w", err)
	}
	if after < 0 {
		return nil, fmt.Errorf("etcd: watch from revision %d: %w", after, datastore.ErrInvalid)
	}
	key, opts := prefixRange(prefix)
	if after > 0 {
		rctx, cancel, err := s.reqCtx(ctx, "watch")
		if err != nil {
			return nil, err
		}
		// A read of the watched range (what the user may read) at after
		// fails if etcd compacted it.
		_, err = s.kv.Get(rctx, key, append(opts, clientv3.WithRev(after), clientv3.WithLimit(1), clientv3.WithKeysOnly())...)
		cancel()
		if err != nil && !errors.Is(err, rpctypes.ErrFutureRev) {
			return nil, s.mapErr(rctx, fmt.Sprintf("watch %q from revision %d", prefix, after), err)
		}
	} else if _, _, err := s.reqCtx(ctx, "watch"); err != nil {
		return nil, err
	}
	out := make(chan datastore.Event, s.cfg.WatchBuffer)
	go s.run(ctx, prefix, after, out)
	return out, nil
}

func (s *Store) run(ctx context.Context, prefix string, after int64, out chan<- datastore.Event) {
	defer close(out)
	fail := func(err error) {
		select {
		case out <- datastore.Event{Err: fmt.Errorf("etcd: watch %q: %w", prefix, err)}:
		case <-ctx.Done():
		}
	}
	key, opts := prefixRange(prefix)
	backoff := 50 * time.Millisecond
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.watcher.Watch(wctx, key, append(opts, clientv3.WithRev(after+1))...)
		restart, slow := false, false
		for resp := range wch {
			if resp.CompactRevision != 0 {
				cancel()
				fail(fmt.Errorf("from revision %d (compacted up to %d): %w", after, resp.CompactRevision, datastore.ErrCompacted))
				return
			}
			if err := resp.Err(); err != nil {
				// Leader lost or the server canceled the watch: start
				// again from the last delivered revision.
				s.log.Warn("etcd: watch interrupted, resuming", "prefix", prefix, "after", after, "err", err)
				restart = true
				break
			}
			backoff = 50 * time.Millisecond
			for _, ev := range resp.Events {
				e := datastore.Event{Key: string(ev.Kv.Key), Revision: ev.Kv.ModRevision}
				switch ev.Type {
				case mvccpb.PUT:
					e.Type, e.Value = datastore.EventPut, value(ev.Kv.Value)
				case mvccpb.DELETE:
					e.Type = datastore.EventDelete
				default:
					continue
				}
				select {
				case out <- e:
					continue
				default:
				}
				// The consumer is behind: stop the etcd watch so that the
				// client does not buffer without bound, and resume later.
				if !restart {
					cancel()
					restart, slow = true, true
				}
				select {
				case out <- e:
				case <-ctx.Done():
					cancel()
					return
				}
			}
			if n := len(resp.Events); n > 0 {
				after = resp.Events[n-1].Kv.ModRevision
			}
			if restart {
				break
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			select {
			case out <- datastore.Event{Err: fmt.Errorf("etcd: watch %q: %w", prefix, datastore.ErrClosed)}:
			default:
			}
			return
		default:
		}
		if !slow {
			// An error, or the channel closed without one: try again
			// after a pause.
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			case <-s.done:
				continue
			}
			if backoff < 2*time.Second {
				backoff *= 2
			}
		}
	}
}

// prefixRange returns the key and options that select every key under
// prefix ("" is every key).
func prefixRange(prefix string) (string, []clientv3.OpOption) {
	if prefix == "" {
		return "\x00", []clientv3.OpOption{clientv3.WithFromKey()}
	}
	return prefix, []clientv3.OpOption{clientv3.WithPrefix()}
}
