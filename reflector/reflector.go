package reflector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/datastore"
)

// Defaults.
const (
	// DefaultPrefix is where announcements live: one key per node,
	// DefaultPrefix + <node name>.
	DefaultPrefix = "/tabby/v1/reflector/nodes/"
	// DefaultHoldTime is how long a node stays announced without a
	// heartbeat.
	DefaultHoldTime = 30 * time.Second
)

// Validator checks that node owns what it announces: every block must be
// affine to node in IPAM and every address assigned to it. It returns nil
// if all is owned, an error saying what is not otherwise. The examples wire
// it to ipam; tests use a map. Every watching Reflector calls it from its
// own goroutine, so implementations must be safe for concurrent use.
type Validator interface {
	Owns(ctx context.Context, node string, blocks []netip.Prefix, addrs []netip.Addr) error
}

// ValidatorFunc adapts a function to Validator (as safe for concurrent use as
// the function).
type ValidatorFunc func(ctx context.Context, node string, blocks []netip.Prefix, addrs []netip.Addr) error

// Owns calls f.
func (f ValidatorFunc) Owns(ctx context.Context, node string, blocks []netip.Prefix, addrs []netip.Addr) error {
	return f(ctx, node, blocks, addrs)
}

// Config configures a Reflector. A nil *Config means defaults. New copies it.
type Config struct {
	// Prefix of the announcement keys; default DefaultPrefix. Must end in
	// "/".
	Prefix string
	// HoldTime this node announces: others withdraw it after that long
	// without a heartbeat. Default DefaultHoldTime; at least 10ms.
	HoldTime time.Duration
	// HeartbeatInterval; default HoldTime/3.
	HeartbeatInterval time.Duration
	// Validator checks what peers announce. nil accepts everything (only
	// for tests and single-tenant setups: any node could then hijack
	// another's routes).
	Validator Validator
	// Logger; nil discards.
	Logger *slog.Logger
}

// ErrInvalidConfig: the Config cannot work.
var ErrInvalidConfig = errors.New("reflector: invalid config")

// ErrStopped: the Announcer was stopped.
var ErrStopped = errors.New("reflector: announcer stopped")

// Reflector announces this node and watches the others through a
// datastore.Store: the store is the reflector, each node holds one watch on
// one prefix and there is no mesh of connections between nodes.
// A Reflector is safe for concurrent use.
type Reflector struct {
	store datastore.Store
	cfg   Config
	log   *slog.Logger
}

// New returns a Reflector on store.
func New(store datastore.Store, cfg *Config) (*Reflector, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil store", ErrInvalidConfig)
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(c.Prefix, "/") || !datastore.ValidKey(c.Prefix+"x") {
		return nil, fmt.Errorf("%w: prefix %q", ErrInvalidConfig, c.Prefix)
	}
	if c.HoldTime == 0 {
		c.HoldTime = DefaultHoldTime
	}
	if c.HoldTime < minHold || c.HoldTime > maxHold {
		return nil, fmt.Errorf("%w: hold time %v", ErrInvalidConfig, c.HoldTime)
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = c.HoldTime / 3
	}
	if c.HeartbeatInterval <= 0 || c.HeartbeatInterval >= c.HoldTime {
		return nil, fmt.Errorf("%w: heartbeat interval %v for hold time %v", ErrInvalidConfig, c.HeartbeatInterval, c.HoldTime)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Reflector{store: store, cfg: c, log: c.Logger}, nil
}

func (r *Reflector) key(node string) string { return r.cfg.Prefix + node }

// Announcer keeps one node's announcement alive. It is safe for concurrent
// use.
type Announcer struct {
	r      *Reflector
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	a       Announcement
	rev     int64 // revision of our last write (0: not written)
	beat    uint64
	lastErr error
	stopped bool
	changed chan struct{} // capacity 1: Update asks for a write now
}

// Announce writes a and keeps it alive with heartbeats until Stop. The
// first write happens before Announce returns (its error is returned and
// nothing keeps running); ctx bounds that write only, Stop ends the
// heartbeats. A record left by an earlier run of the same node is taken
// over.
func (r *Reflector) Announce(ctx context.Context, a Announcement) (*Announcer, error) {
	na, err := a.normalize()
	if err != nil {
		return nil, err
	}
	an := &Announcer{r: r, a: na, done: make(chan struct{}), changed: make(chan struct{}, 1)}
	if err := an.write(ctx); err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	an.cancel = cancel
	go an.loop(lctx)
	r.log.Info("reflector: announced", "node", na.Node, "blocks", na.Blocks, "hold", r.cfg.HoldTime)
	return an, nil
}

// write puts the current announcement with the next heartbeat number,
// creating or taking over the key as needed.
func (an *Announcer) write(ctx context.Context) error {
	an.mu.Lock()
	a, rev := an.a, an.rev
	an.beat++
	val := encodeRecord(a, an.r.cfg.HoldTime, an.beat, time.Now())
	an.mu.Unlock()
	key := an.r.key(a.Node)
	st := an.r.store
	var err error
	for range 3 {
		var nrev int64
		if rev == 0 {
			nrev, err = st.Create(ctx, key, val)
			if errors.Is(err, datastore.ErrExists) {
				var kv datastore.KV
				if kv, err = st.Get(ctx, key); err == nil {
					rev = kv.Revision // an earlier run of ours: take over
					continue
				}
			}
		} else {
			nrev, err = st.Update(ctx, key, val, rev)
			if errors.Is(err, datastore.ErrNotFound) {
				rev = 0 // garbage-collected by a peer (we were silent too long)
				continue
			}
			if errors.Is(err, datastore.ErrConflict) {
				var kv datastore.KV
				if kv, err = st.Get(ctx, key); err == nil {
					rev = kv.Revision
					continue
				} else if errors.Is(err, datastore.ErrNotFound) {
					rev = 0
					continue
				}
			}
		}
		if err == nil {
			an.mu.Lock()
			an.rev, an.lastErr = nrev, nil
			an.mu.Unlock()
			return nil
		}
		break
	}
	an.mu.Lock()
	an.rev, an.lastErr = rev, err
	an.mu.Unlock()
	return fmt.Errorf("reflector: announce %s: %w", a.Node, err)
}

func (an *Announcer) loop(ctx context.Context) {
	defer close(an.done)
	every := an.r.cfg.HeartbeatInterval
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-an.changed:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		wctx, cancel := context.WithTimeout(ctx, every)
		err := an.write(wctx)
		cancel()
		next := every
		if err != nil && ctx.Err() == nil {
			an.r.log.Warn("reflector: heartbeat failed", "node", an.a.Node, "err", err)
			next = max(every/4, time.Millisecond)
		}
		t.Reset(next)
	}
}

// Update changes what is announced; it is written at once (the write
// happens in the background; Err reports its failure).
func (an *Announcer) Update(a Announcement) error {
	na, err := a.normalize()
	if err != nil {
		return err
	}
	an.mu.Lock()
	defer an.mu.Unlock()
	if an.stopped {
		return ErrStopped
	}
	if na.Node != an.a.Node {
		return fmt.Errorf("%w: announcer for %s cannot announce %s", ErrInvalidAnnouncement, an.a.Node, na.Node)
	}
	an.a = na
	select {
	case an.changed <- struct{}{}:
	default:
	}
	return nil
}

// Err returns the error of the last write (nil if it succeeded).
func (an *Announcer) Err() error {
	an.mu.Lock()
	defer an.mu.Unlock()
	return an.lastErr
}

// Stop ends the heartbeats. Without graceful the announcement is deleted at
// once and peers withdraw the node's routes now; with graceful it is left
// in place and expires after the hold time, unless the node's next run
// announces again first (a restart that does not black-hole traffic).
func (an *Announcer) Stop(ctx context.Context, graceful bool) error {
	an.mu.Lock()
	if an.stopped {
		an.mu.Unlock()
		return nil
	}
	an.stopped = true
	an.mu.Unlock()
	an.cancel()
	<-an.done
	if graceful {
		an.r.log.Info("reflector: stopped gracefully; announcement expires after hold time", "node", an.a.Node)
		return nil
	}
	an.mu.Lock()
	rev, node := an.rev, an.a.Node
	an.mu.Unlock()
	if rev == 0 {
		return nil
	}
	err := an.r.store.Delete(ctx, an.r.key(node), rev)
	switch {
	case err == nil:
		an.r.log.Info("reflector: withdrawn", "node", node)
		return nil
	case errors.Is(err, datastore.ErrNotFound), errors.Is(err, datastore.ErrConflict):
		// Already collected, or a newer run of this node owns the key now.
		return nil
	}
	return fmt.Errorf("reflector: withdraw %s: %w", node, err)
}
