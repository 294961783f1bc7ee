package reflector

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	// Refused lists, sorted by node, what this watcher does not accept of
	// each node's announcement (the Validator's refusals and the conflict
	// rule's), including the watching node's own record when it loses a
	// conflict. Nodes with nothing refused are not listed.
	Refused []Refusal
}

// entry is what a watcher knows about one key.
type entry struct {
	rev     int64
	raw     Announcement // as stored
	part    *partial     // nil: validation accepted raw whole (the common case)
	ok      bool         // accepted at all (a tunnel address owned)
	checked time.Time    // when validation ran for raw's content (zero: not yet)
	hold    time.Duration
	seen    time.Time // watcher's clock: last heartbeat observed
	leased  bool      // the store expires it (a lease): never expired here
	self    bool      // the watching node's own record: never in Peers, never expired here
}

// partial is what validation made of an announcement it did not accept
// whole; kept apart so that the usual entry holds one Announcement, not
// two (at 5,000 peers, 1.5 MB of every watcher's heap).
type partial struct {
	accepted Announcement // raw minus what validation refused
	refusal  Refusal      // what validation refused
}

// accepted is what validation accepted of e.raw.
func (e *entry) accepted() Announcement {
	if e.part == nil {
		return e.raw
	}
	return e.part.accepted
}

// refusal is what validation refused of e.raw.
func (e *entry) refusal() Refusal {
	if e.part == nil {
		return Refusal{}
	}
	return e.part.refusal
}

type watcher struct {
	r       *Reflector
	self    string
	out     chan Snapshot
	entries map[string]*entry
	rev     int64
	last    []Announcement
	lastRef []Refusal
	sent    bool
	// order is entries sorted by node name, rebuilt only when a key comes
	// or goes (nil: rebuild).
	order   []*entry
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
	w.order = nil
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
		w.r.warn.warn(key, "not a node name", "reflector: ignoring key")
		return
	}
	a, hold, rec, err := decodeRecord(name, val, w.r.lim)
	if err != nil {
		reason := "malformed record"
		if errors.Is(err, ErrTooLarge) {
			reason = "record beyond limits"
		}
		w.r.warn.warn(name, reason, "reflector: ignoring announcement", "err", err)
		if _, ok := w.entries[key]; ok {
			delete(w.entries, key)
			w.order = nil
			w.dirty = true
		}
		return
	}
	e := w.entries[key]
	if e == nil {
		e = &entry{}
		w.entries[key] = e
		w.order = nil
	}
	e.rev, e.hold, e.seen, e.leased, e.self = rev, hold, now, rec.Lease != 0, name == w.self
	if !e.checked.IsZero() && e.raw.Equal(a) && (e.refusal().Empty() || now.Sub(e.checked) < w.r.cfg.HeartbeatInterval) {
		// A heartbeat of an accepted node, or of a refused one checked
		// less than an interval ago: nothing to check again.
		return
	}
	w.check(ctx, e, a, now)
}

// check validates a for e. Something refused is checked again after
// HeartbeatInterval (see recheck), so that a transient refusal (IPAM not
// caught up) heals and a hijack attempt costs one check per interval.
func (w *watcher) check(ctx context.Context, e *entry, a Announcement, now time.Time) {
	e.raw, e.checked = a, now
	acc, ref := w.r.validate(ctx, a)
	e.ok = !ref.Ignored
	if !ref.Empty() {
		w.r.warn.warn(a.Node, "refused by the Validator", "reflector: ignoring part of an announcement",
			"refused", strings.Join(ref.Reasons, "; "))
	}
	e.part = nil
	if !ref.Empty() || !acc.Equal(a) {
		e.part = &partial{accepted: acc, refusal: ref}
	}
	w.dirty = true
}

// recheck validates again every refused entry checked an interval ago.
func (w *watcher) recheck(ctx context.Context) {
	now := time.Now()
	for _, e := range w.entries {
		if !e.checked.IsZero() && !e.refusal().Empty() && now.Sub(e.checked) >= w.r.cfg.HeartbeatInterval {
			w.check(ctx, e, e.raw, now)
		}
	}
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
			w.recheck(ctx)
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
			w.order = nil
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
			var d time.Time
			switch {
			case !e.refusal().Empty() && !e.checked.IsZero():
				d = e.checked.Add(w.r.cfg.HeartbeatInterval)
				if !e.leased && !e.self && e.seen.Add(e.hold).Before(d) {
					d = e.seen.Add(e.hold)
				}
			case e.leased || e.self:
				continue
			default:
				d = e.seen.Add(e.hold)
			}
			if next.IsZero() || d.Before(next) {
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
		if e.leased || e.self || now.Sub(e.seen) < e.hold {
			continue // the store expires leased records
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
			w.order = nil
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
		w.order = nil
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
	peers, refused := w.current()
	if w.sent && slices.EqualFunc(peers, w.last, Announcement.Equal) && slices.EqualFunc(refused, w.lastRef, Refusal.equal) {
		return
	}
	w.last, w.lastRef, w.sent = peers, refused, true
	snap := Snapshot{Peers: clonePeers(peers), Revision: w.rev}
	for _, f := range refused {
		snap.Refused = append(snap.Refused, f.clone())
	}
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

// clonePeers deep-copies ps with one allocation per kind of slice (MACs,
// blocks, addresses) for the whole set rather than several per peer; each
// peer's slices are capped, so a reader appending to one cannot clobber
// another.
func clonePeers(ps []Announcement) []Announcement {
	nb, na, nm := 0, 0, 0
	for _, p := range ps {
		nb, na, nm = nb+len(p.Blocks), na+len(p.Addrs), nm+len(p.TunnelMAC)+len(p.TunnelMACv6)
	}
	blocks := make([]netip.Prefix, 0, nb)
	addrs := make([]netip.Addr, 0, na)
	macs := make([]byte, 0, nm)
	out := make([]Announcement, len(ps))
	for i, p := range ps {
		q := p
		take := func(m net.HardwareAddr) net.HardwareAddr {
			if m == nil {
				return nil
			}
			k := len(macs)
			macs = append(macs, m...)
			return net.HardwareAddr(macs[k:len(macs):len(macs)])
		}
		q.TunnelMAC, q.TunnelMACv6 = take(p.TunnelMAC), take(p.TunnelMACv6)
		if p.Blocks != nil {
			k := len(blocks)
			blocks = append(blocks, p.Blocks...)
			q.Blocks = blocks[k:len(blocks):len(blocks)]
		}
		if p.Addrs != nil {
			k := len(addrs)
			addrs = append(addrs, p.Addrs...)
			q.Addrs = addrs[k:len(addrs):len(addrs)]
		}
		out[i] = q
	}
	return out
}

type macKey struct {
	v6  bool
	mac [6]byte
}

// current is the accepted set, sorted, with conflicts resolved by the
// conflict rule (see Snapshot), and what is refused of each node.
//
// Conflict rule: among what the Validator accepted, a block or address
// announced by two nodes, or a tunnel IP or tunnel MAC of one family
// announced by two nodes, goes to the node whose name sorts first
// (bytewise); the other node loses only that block or address, or that
// family's VTEP, and is ignored if it has no VTEP left. The watching node's
// own record takes part (so every node, itself included, resolves the same
// way) but is never in Peers. With a Validator backed by a consistent IPAM
// only MACs (which IPAM cannot verify) can conflict.
func (w *watcher) current() ([]Announcement, []Refusal) {
	if w.order == nil {
		w.order = make([]*entry, 0, len(w.entries))
		for _, e := range w.entries {
			w.order = append(w.order, e)
		}
		slices.SortFunc(w.order, func(a, b *entry) int { return strings.Compare(a.raw.Node, b.raw.Node) })
	}
	// Who holds what, for conflicts: made for each call rather than kept,
	// since sets are computed only when something changed (with leases,
	// not at all at steady state) and at 5,000 peers they are 1 MB.
	prefixes := make(map[netip.Prefix]string, len(w.order))
	tunnels := make(map[netip.Addr]string, len(w.order))
	macs := make(map[macKey]string, len(w.order))
	peers := make([]Announcement, 0, len(w.order))
	var refused []Refusal
	for _, e := range w.order {
		if !e.ok && e.refusal().Empty() {
			continue
		}
		p, ref := e.accepted(), e.refusal()
		if ref.Ignored {
			refused = append(refused, ref.clone())
			continue
		}
		cloned := false
		own := func() {
			if !cloned {
				ref, cloned = ref.clone(), true
				if ref.Node == "" {
					ref.Node = p.Node
				}
			}
		}
		fam := func(name string, v6 bool, tun netip.Addr, mac []byte, lost func()) bool {
			if !tun.IsValid() {
				return false
			}
			o, ok := tunnels[tun]
			if !ok {
				o, ok = macs[macKey{v6, [6]byte(mac)}]
			}
			if ok {
				own()
				lost()
				ref.reason("%s VTEP ignored: tunnel IP %s or MAC %s already announced by %s", name, tun, net.HardwareAddr(mac), o)
				w.r.warn.warn(p.Node, name+" VTEP conflict", "reflector: ignoring a VTEP", "tunnelIP", tun, "tunnelMAC", net.HardwareAddr(mac).String(), "owner", o)
				return false
			}
			return true
		}
		keep4 := fam("IPv4", false, p.TunnelIP, p.TunnelMAC, func() { ref.IPv4 = true })
		keep6 := fam("IPv6", true, p.TunnelIPv6, p.TunnelMACv6, func() { ref.IPv6 = true })
		if !keep4 && !keep6 {
			own()
			ref.Ignored = true
			refused = append(refused, ref)
			continue
		}
		if keep4 {
			tunnels[p.TunnelIP], macs[macKey{false, [6]byte(p.TunnelMAC)}] = p.Node, p.Node
		} else {
			p.NodeIP, p.TunnelIP, p.TunnelMAC = netip.Addr{}, netip.Addr{}, nil
		}
		if keep6 {
			tunnels[p.TunnelIPv6], macs[macKey{true, [6]byte(p.TunnelMACv6)}] = p.Node, p.Node
		} else {
			p.NodeIPv6, p.TunnelIPv6, p.TunnelMACv6 = netip.Addr{}, netip.Addr{}, nil
		}
		clash := false
		for _, b := range p.Blocks {
			if _, ok := prefixes[b]; ok {
				clash = true
				break
			}
		}
		for _, a := range p.Addrs {
			if _, ok := prefixes[netip.PrefixFrom(a, a.BitLen())]; ok {
				clash = true
				break
			}
		}
		q := p
		if !clash {
			// The common case: nothing to drop, keep the entry's slices
			// (entries are replaced, never modified, and Snapshot copies).
			for _, b := range p.Blocks {
				prefixes[b] = p.Node
			}
			for _, a := range p.Addrs {
				prefixes[netip.PrefixFrom(a, a.BitLen())] = p.Node
			}
		} else {
			own()
			q.Blocks, q.Addrs = nil, nil
			for _, b := range p.Blocks {
				if o, ok := prefixes[b]; ok {
					ref.Blocks = append(ref.Blocks, b)
					ref.reason("block %s already announced by %s", b, o)
					w.r.warn.warn(p.Node, "block conflict", "reflector: ignoring announced block", "block", b, "owner", o)
					continue
				}
				prefixes[b] = p.Node
				q.Blocks = append(q.Blocks, b)
			}
			for _, a := range p.Addrs {
				pa := netip.PrefixFrom(a, a.BitLen())
				if o, ok := prefixes[pa]; ok {
					ref.Addrs = append(ref.Addrs, a)
					ref.reason("address %s already announced by %s", a, o)
					w.r.warn.warn(p.Node, "address conflict", "reflector: ignoring announced address", "addr", a, "owner", o)
					continue
				}
				prefixes[pa] = p.Node
				q.Addrs = append(q.Addrs, a)
			}
			slices.SortFunc(ref.Blocks, comparePrefix)
			slices.SortFunc(ref.Addrs, netip.Addr.Compare)
		}
		if !ref.Empty() {
			refused = append(refused, ref.clone())
		}
		if !e.self {
			peers = append(peers, q)
		}
	}
	return peers, refused
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
		a, _, _, err := decodeRecord(name, kv.Value, r.lim)
		if err != nil {
			r.warn.warn(name, "malformed record", "reflector: ignoring announcement", "err", err)
			continue
		}
		out = append(out, a)
	}
	return out, rev, nil
}
