package reflector

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tabbynet/tabby/datastore"
)

// Snapshot is the set of live, validated peers at one point. Each delivery is
// a fresh deep copy owned by the reader.
type Snapshot struct {
	// Peers sorted by node name, without the watching node itself.
	Peers []Announcement
	// Revision is the store revision the set reflects.
	Revision int64
}

// entry is what a watcher knows about one key.
type entry struct {
	rev      int64
	raw      Announcement // as stored
	accepted Announcement // raw minus what validation refused
	ok       bool         // accepted at all (tunnel address owned)
	checked  bool         // validation ran for raw's content
	reasons  []string     // what validation refused last time (logged once)
	hold     time.Duration
	seen     time.Time // watcher's clock: last heartbeat observed
}

type watcher struct {
	r       *Reflector
	self    string
	out     chan Snapshot
	entries map[string]*entry
	rev     int64
	last    []Announcement
	sent    bool
	dirty   bool      // the accepted set may have changed since the last publish
	blind   bool      // the last read for an expiry failed
	retryAt time.Time // next probe while blind
}

// Watch delivers the set of live peers (every node but self whose
// announcement is valid and heartbeating) now and after every change. A
// reader that falls behind gets the latest set, not each intermediate one.
// After a watch break (compaction, store restart, closed channel) it lists
// again and delivers a consistent set. Nodes that stop heartbeating are
// withdrawn after their hold time and their records deleted; while the
// store cannot be reached nobody is withdrawn (silence of the store is not
// silence of the nodes). The channel is closed when ctx ends.
//
// Watch uses one datastore watch on the announcement prefix.
func (r *Reflector) Watch(ctx context.Context, self string) (<-chan Snapshot, error) {
	w := &watcher{r: r, self: self, out: make(chan Snapshot, 1), entries: map[string]*entry{}}
	events, err := w.relist(ctx, 0)
	if err != nil {
		return nil, err
	}
	w.publish()
	go w.run(ctx, events)
	return w.out, nil
}

// relist lists the prefix, rebuilds the entries and starts a store watch
// from the listing's revision. outage is how long the watcher was blind:
// unchanged records get that time back.
func (w *watcher) relist(ctx context.Context, outage time.Duration) (<-chan datastore.Event, error) {
	kvs, rev, err := w.r.store.List(ctx, w.r.cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("reflector: list %s: %w", w.r.cfg.Prefix, err)
	}
	events, err := w.r.store.Watch(ctx, w.r.cfg.Prefix, rev)
	if err != nil {
		return nil, fmt.Errorf("reflector: watch %s: %w", w.r.cfg.Prefix, err)
	}
	now := time.Now()
	old := w.entries
	w.entries = make(map[string]*entry, len(kvs))
	w.dirty = true
	for _, kv := range kvs {
		if prev, ok := old[kv.Key]; ok && prev.rev == kv.Revision {
			prev.seen = prev.seen.Add(outage)
			w.entries[kv.Key] = prev
			continue
		}
		w.put(ctx, kv.Key, kv.Value, kv.Revision, now)
	}
	w.rev = rev
	return events, nil
}

// put records a new value of key.
func (w *watcher) put(ctx context.Context, key string, val []byte, rev int64, now time.Time) {
	name, ok := nodeFromKey(w.r.cfg.Prefix, key)
	if !ok {
		w.r.log.Warn("reflector: ignoring key", "key", key, "reason", "not a node name")
		return
	}
	if name == w.self {
		return
	}
	a, hold, _, err := decodeRecord(name, val)
	if err != nil {
		w.r.log.Warn("reflector: ignoring announcement", "node", name, "reason", err)
		if _, ok := w.entries[key]; ok {
			delete(w.entries, key)
			w.dirty = true
		}
		return
	}
	e := w.entries[key]
	if e == nil {
		e = &entry{}
		w.entries[key] = e
	}
	e.rev, e.hold, e.seen = rev, hold, now
	if e.checked && e.raw.Equal(a) && e.ok && e.accepted.Equal(a) {
		return // a heartbeat of a fully accepted node: nothing to check again
	}
	// New content, or something was refused last time (a hijack attempt,
	// or IPAM not answering / not caught up yet): check again, so a
	// transient refusal lasts at most one heartbeat interval.
	e.raw, e.checked = a, true
	var reasons []string
	e.accepted, e.ok, reasons = w.validate(ctx, a)
	if !slices.Equal(reasons, e.reasons) {
		for _, r := range reasons {
			w.r.log.Warn("reflector: ignoring part of an announcement", "node", a.Node, "reason", r)
		}
		e.reasons = reasons
	}
	w.dirty = true
}

// validate returns what of a the Validator lets through. The fast path is
// one call; if it fails, each item is checked alone so that one bad block
// does not withdraw a node's good ones.
func (w *watcher) validate(ctx context.Context, a Announcement) (Announcement, bool, []string) {
	v := w.r.cfg.Validator
	if v == nil {
		return a, true, nil
	}
	inBlocks := func(x netip.Addr) bool {
		return slices.ContainsFunc(a.Blocks, func(p netip.Prefix) bool { return p.Contains(x) })
	}
	addrs := a.Addrs
	if !inBlocks(a.TunnelIP) && !slices.Contains(addrs, a.TunnelIP) {
		addrs = append(slices.Clip(addrs), a.TunnelIP)
	}
	vctx, cancel := context.WithTimeout(ctx, max(w.r.cfg.HeartbeatInterval, time.Second))
	defer cancel()
	if err := v.Owns(vctx, a.Node, a.Blocks, addrs); err == nil {
		return a, true, nil
	}
	var reasons []string
	out := a.Clone()
	out.Blocks, out.Addrs = nil, nil
	for _, b := range a.Blocks {
		if err := v.Owns(vctx, a.Node, []netip.Prefix{b}, nil); err != nil {
			reasons = append(reasons, fmt.Sprintf("block %s: %v", b, err))
			continue
		}
		out.Blocks = append(out.Blocks, b)
	}
	for _, x := range a.Addrs {
		if err := v.Owns(vctx, a.Node, nil, []netip.Addr{x}); err != nil {
			reasons = append(reasons, fmt.Sprintf("address %s: %v", x, err))
			continue
		}
		out.Addrs = append(out.Addrs, x)
	}
	tunnelOK := slices.ContainsFunc(out.Blocks, func(p netip.Prefix) bool { return p.Contains(a.TunnelIP) }) || slices.Contains(out.Addrs, a.TunnelIP)
	if !tunnelOK {
		if err := v.Owns(vctx, a.Node, nil, []netip.Addr{a.TunnelIP}); err != nil {
			return Announcement{}, false, append(reasons, fmt.Sprintf("whole node ignored: tunnel address %s: %v", a.TunnelIP, err))
		}
	}
	return out, true, reasons
}

func (w *watcher) run(ctx context.Context, events <-chan datastore.Event) {
	defer close(w.out)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var brokenAt time.Time
	for {
		w.armTimer(timer, events != nil)
		if events == nil {
			// Broken: list again after a pause.
			pause := min(w.r.cfg.HoldTime/10+10*time.Millisecond, time.Second)
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			ev, err := w.relist(ctx, time.Since(brokenAt))
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				w.r.log.Warn("reflector: relist failed", "err", err)
				continue
			}
			w.r.log.Info("reflector: relisted after watch break", "revision", w.rev, "nodes", len(w.entries))
			events = ev
			w.publish()
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			w.expire(ctx)
		case ev, ok := <-events:
			broken := !w.handle(ctx, ev, ok)
			// Take whatever else is queued before publishing once.
		drain:
			for !broken {
				select {
				case ev, ok := <-events:
					broken = !w.handle(ctx, ev, ok)
				default:
					break drain
				}
			}
			if broken {
				if ctx.Err() != nil {
					return
				}
				events, brokenAt = nil, time.Now()
				continue
			}
		}
		w.publish()
	}
}

// handle applies one event; false means the watch is broken.
func (w *watcher) handle(ctx context.Context, ev datastore.Event, ok bool) bool {
	if !ok {
		w.r.log.Warn("reflector: watch channel closed; relisting")
		return false
	}
	if ev.Err != nil {
		w.r.log.Warn("reflector: watch broken; relisting", "err", ev.Err)
		return false
	}
	switch ev.Type {
	case datastore.EventPut:
		w.put(ctx, ev.Key, ev.Value, ev.Revision, time.Now())
	case datastore.EventDelete:
		if e, ok := w.entries[ev.Key]; ok {
			w.r.log.Info("reflector: node withdrawn", "node", e.raw.Node)
		}
		if _, ok := w.entries[ev.Key]; ok {
			delete(w.entries, ev.Key)
			w.dirty = true
		}
	}
	w.rev = ev.Revision
	return true
}

// armTimer sets t to the earliest expiry (or the next probe while the
// store is unreachable); while the watch is broken nobody expires.
func (w *watcher) armTimer(t *time.Timer, connected bool) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	if !connected {
		return
	}
	next := w.retryAt
	if next.IsZero() {
		for _, e := range w.entries {
			if d := e.seen.Add(e.hold); next.IsZero() || d.Before(next) {
				next = d
			}
		}
	}
	if !next.IsZero() {
		t.Reset(max(time.Until(next), 0))
	}
}

// slowProbe: a read slower than this means the store was (nearly)
// unreachable, and silence is not evidence of death.
const slowProbe = time.Second

// expire withdraws every node not heard from within its hold time and
// deletes its record. Before it believes the silence it reads the record:
// a store watch may be silently reconnecting, so a failed read means "we
// are blind", not "they are dead" (nobody expires, and after the store
// comes back everyone gets a fresh hold time); a newer revision is a
// heartbeat the watch has not delivered yet. The delete is a
// compare-and-swap on the revision, so a heartbeat that races it wins.
func (w *watcher) expire(ctx context.Context) {
	now := time.Now()
	w.retryAt = time.Time{}
	for key, e := range w.entries {
		if now.Sub(e.seen) < e.hold {
			continue
		}
		gctx, cancel := context.WithTimeout(ctx, min(e.hold, 5*time.Second))
		probe := time.Now()
		kv, err := w.r.store.Get(gctx, key)
		cancel()
		if err == nil && time.Since(probe) > slowProbe {
			// The read waited for the store to come back: heartbeats could
			// not be written meanwhile either.
			w.blind = true
		}
		switch {
		case errors.Is(err, datastore.ErrNotFound):
			delete(w.entries, key)
			w.dirty = true
			continue
		case err != nil:
			if !w.blind {
				w.r.log.Warn("reflector: store unreachable; nobody is withdrawn until it answers", "err", err)
			}
			w.blind = true
			w.retryAt = time.Now().Add(min(e.hold/4+10*time.Millisecond, time.Second))
			return
		}
		if w.blind {
			// Back from an outage: heartbeats could not be written while
			// it lasted. Everyone starts a new hold time.
			w.blind = false
			w.r.log.Info("reflector: store reachable again")
			now := time.Now()
			for _, x := range w.entries {
				x.seen = now
			}
			return
		}
		if kv.Revision != e.rev {
			w.put(ctx, key, kv.Value, kv.Revision, time.Now())
			continue
		}
		delete(w.entries, key)
		w.dirty = true
		w.r.log.Info("reflector: node expired", "node", e.raw.Node, "hold", e.hold, "silent", now.Sub(e.seen).Round(time.Millisecond))
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		err = w.r.store.Delete(dctx, key, e.rev)
		cancel()
		if err != nil && !errors.Is(err, datastore.ErrNotFound) && !errors.Is(err, datastore.ErrConflict) {
			w.r.log.Warn("reflector: garbage-collect expired record", "key", key, "err", err)
		}
	}
}

// publish sends the current set if it changed since the last one sent. A
// reader that has not taken the previous set gets this one instead.
func (w *watcher) publish() {
	if !w.dirty {
		return // only heartbeats since the last one
	}
	w.dirty = false
	peers := w.current()
	if w.sent && slices.EqualFunc(peers, w.last, Announcement.Equal) {
		return
	}
	w.last, w.sent = peers, true
	snap := Snapshot{Peers: clonePeers(peers), Revision: w.rev}
	select {
	case w.out <- snap:
	default:
		select {
		case <-w.out: // replace the unread one; only this goroutine sends
		default:
		}
		w.out <- snap
	}
}

func clonePeers(ps []Announcement) []Announcement {
	out := make([]Announcement, len(ps))
	for i, p := range ps {
		out[i] = p.Clone()
	}
	return out
}

// current is the accepted set, sorted, with conflicts resolved: a block,
// address, tunnel IP or MAC claimed twice goes to the node whose name sorts
// first (only possible without a Validator or with an inconsistent IPAM).
func (w *watcher) current() []Announcement {
	var peers []Announcement
	for _, e := range w.entries {
		if e.ok {
			peers = append(peers, e.accepted)
		}
	}
	slices.SortFunc(peers, func(a, b Announcement) int { return strings.Compare(a.Node, b.Node) })
	prefixes := map[netip.Prefix]string{}
	tunnels := map[netip.Addr]string{}
	macs := map[string]string{}
	out := peers[:0]
	for _, p := range peers {
		if o, ok := tunnels[p.TunnelIP]; ok {
			w.r.log.Warn("reflector: ignoring node", "node", p.Node, "reason", "tunnel IP "+p.TunnelIP.String()+" already announced by "+o)
			continue
		}
		if o, ok := macs[string(p.TunnelMAC)]; ok {
			w.r.log.Warn("reflector: ignoring node", "node", p.Node, "reason", "tunnel MAC "+p.TunnelMAC.String()+" already announced by "+o)
			continue
		}
		tunnels[p.TunnelIP], macs[string(p.TunnelMAC)] = p.Node, p.Node
		q := p
		q.Blocks, q.Addrs = nil, nil
		for _, b := range p.Blocks {
			if o, ok := prefixes[b]; ok {
				w.r.log.Warn("reflector: ignoring announced block", "node", p.Node, "block", b, "reason", "already announced by "+o)
				continue
			}
			prefixes[b] = p.Node
			q.Blocks = append(q.Blocks, b)
		}
		for _, a := range p.Addrs {
			pa := netip.PrefixFrom(a, a.BitLen())
			if o, ok := prefixes[pa]; ok {
				w.r.log.Warn("reflector: ignoring announced address", "node", p.Node, "addr", a, "reason", "already announced by "+o)
				continue
			}
			prefixes[pa] = p.Node
			q.Addrs = append(q.Addrs, a)
		}
		out = append(out, q)
	}
	return out
}

// List returns the announcements stored now, valid or not yet expired
// (without liveness judgement: that needs watching over time), for tools.
func (r *Reflector) List(ctx context.Context) ([]Announcement, int64, error) {
	kvs, rev, err := r.store.List(ctx, r.cfg.Prefix)
	if err != nil {
		return nil, 0, fmt.Errorf("reflector: list: %w", err)
	}
	var out []Announcement
	for _, kv := range kvs {
		name, ok := nodeFromKey(r.cfg.Prefix, kv.Key)
		if !ok {
			continue
		}
		a, _, _, err := decodeRecord(name, kv.Value)
		if err != nil {
			r.log.Warn("reflector: ignoring announcement", "node", name, "reason", err)
			continue
		}
		out = append(out, a)
	}
	return out, rev, nil
}
