package reflector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
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
// it to ipam ((*ipam.IPAM).Owns has this signature); tests use a map.
//
// # Call contract
//
// Who calls it: every watching Reflector, from its Watch goroutine (one
// call at a time per Watch, but many Watches and Announcers may call at
// once, so implementations must be safe for concurrent use), and every
// Announcer on its own announcement, from Announce, Update's background
// write, or the Announcer's goroutine.
//
// When: a watcher calls it when a record with new content arrives, and
// again at most once per HeartbeatInterval for a record with something
// refused (so a transient refusal, such as an IPAM that has not caught up,
// heals within one interval; a hijack attempt costs one round per interval,
// not one per write). A fully accepted record is not checked again until
// its content changes: heartbeats and lease keep-alives cost no calls. An
// Announcer calls it after each write of new content and once per
// HeartbeatInterval while something is refused.
//
// How often, per check: first once with everything (blocks and addresses,
// plus each tunnel address that no announced block or address covers).
// If that fails, the refused items are found by bisection of the list,
// at most Limits.MaxValidatorCalls calls in all; an error with a method
// NotOwned() ([]netip.Prefix, []netip.Addr) names them in the first call
// instead. A Validator therefore never sees one call per block, and should
// answer a many-block call with bulk reads.
//
// Timeout: all calls of one check share a context with a deadline of
// max(HeartbeatInterval, 1s). An error (including a timeout) refuses what
// was asked; it is retried as above.
//
// # Trust model
//
// Anyone who can write the datastore can write any node's record: the
// datastore's access control is the security boundary, and every node
// needs write access to its own record. With a Validator, a writer cannot
// make watchers route a block or address to a node that IPAM does not say
// owns it, nor a tunnel address that is not the node's own; what it can
// still do is announce a wrong node IP or tunnel MAC for a node (these
// cannot be verified against IPAM), delete records (withdrawing nodes),
// or flood records (bounded by Limits, per record). Without a Validator
// any writer can hijack any block.
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
	// without a heartbeat, or the store deletes it that long after its
	// lease was last kept alive. Default DefaultHoldTime; at least 10ms
	// (with etcd leases, rounded up to whole seconds, at least 2s).
	HoldTime time.Duration
	// HeartbeatInterval is how often an Announcer heartbeats or keeps its
	// lease alive; default HoldTime/3.
	HeartbeatInterval time.Duration
	// DisableLeases makes Announcers heartbeat even on a store that
	// implements datastore.Leaser (for comparison, or for clusters that
	// mix versions). Watchers handle both kinds of record either way.
	DisableLeases bool
	// Validator checks what peers announce, and what this node announces.
	// nil accepts everything (only for tests and single-tenant setups: any
	// node could then hijack another's routes).
	Validator Validator
	// Limits bound what is accepted from one node; zero fields mean
	// defaults.
	Limits Limits
	// LogInterval: the same warning about the same node is logged at most
	// once per interval (default DefaultLogInterval).
	LogInterval time.Duration
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
	store  datastore.Store
	leaser datastore.Leaser // nil: heartbeats
	cfg    Config
	lim    Limits
	log    *slog.Logger
	warn   *logLimiter
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
	if c.LogInterval <= 0 {
		c.LogInterval = DefaultLogInterval
	}
	r := &Reflector{store: store, cfg: c, lim: c.Limits.withDefaults(), log: c.Logger}
	r.warn = &logLimiter{log: c.Logger, every: c.LogInterval, last: map[string]time.Time{}}
	if l, ok := store.(datastore.Leaser); ok && !c.DisableLeases {
		r.leaser = l
	}
	return r, nil
}

// Leases reports whether Announcers of r keep their records alive with a
// datastore lease (true) or with heartbeat writes (false).
func (r *Reflector) Leases() bool { return r.leaser != nil }

func (r *Reflector) key(node string) string { return r.cfg.Prefix + node }
