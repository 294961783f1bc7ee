package reflector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
)

// rawEvents watches the announcement prefix directly and counts what the
// store delivers.
func rawEvents(t *testing.T, ctx context.Context, st datastore.Store) <-chan datastore.Event {
	t.Helper()
	_, rev, err := st.List(ctx, DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := st.Watch(ctx, DefaultPrefix, rev)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestLeaseSteadyStateNoEvents: with leases, a cluster in which nothing
// changes produces no store events at all over several hold times, and a
// node's death is exactly one delete event.
func TestLeaseSteadyStateNoEvents(t *testing.T) { forLeaseStores(t, testLeaseSteadyState) }

func testLeaseSteadyState(t *testing.T, ts *testStore) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := ts.client(t)
	hold := 2 * time.Second // etcd's minimum lease TTL
	r := newR(t, st, hold, nil)
	if !r.Leases() {
		t.Fatalf("%T: no leases", st)
	}
	w, _ := r.Watch(ctx, "node1")
	var ans []*Announcer
	for i := 2; i <= 4; i++ {
		an, err := r.Announce(ctx, ann(i))
		if err != nil {
			t.Fatal(err)
		}
		ans = append(ans, an)
	}
	next(t, w, "all", has("node2", "node3", "node4"))
	raw := rawEvents(t, ctx, st)
	quiet := time.After(3 * hold)
	for done := false; !done; {
		select {
		case ev := <-raw:
			t.Fatalf("steady state: store event %+v", ev)
		case s := <-w:
			t.Fatalf("steady state: snapshot %v", names(s))
		case <-quiet:
			done = true
		}
	}
	for _, an := range ans {
		an.mu.Lock()
		writes, kas := an.writes, an.keepAlvs
		an.mu.Unlock()
		if writes != 1 || kas == 0 {
			t.Fatalf("%s: %d writes, %d keep-alives; want 1 write and keep-alives", an.a.Node, writes, kas)
		}
	}
	// node3 dies (stops without withdrawing): one delete, no other event.
	if err := ans[1].Stop(ctx, true); err != nil {
		t.Fatal(err)
	}
	ev := <-raw
	if ev.Type != datastore.EventDelete || ev.Key != DefaultPrefix+"node3" {
		t.Fatalf("death: event %+v, want one delete of node3", ev)
	}
	next(t, w, "node3 gone", has("node2", "node4"))
	select {
	case ev := <-raw:
		t.Fatalf("after the death: extra event %+v", ev)
	case <-time.After(hold):
	}
	for _, an := range []*Announcer{ans[0], ans[2]} {
		if err := an.Stop(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	next(t, w, "withdrawn", has())
}

// TestLeaseGracefulRestartWritesNothing: a node that stops gracefully and
// announces the same thing again before its lease expires adopts the lease
// and writes nothing; watchers see no change at all.
func TestLeaseGracefulRestartWritesNothing(t *testing.T) {
	forLeaseStores(t, func(t *testing.T, ts *testStore) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		st := ts.client(t)
		hold := 3 * time.Second
		r := newR(t, st, hold, nil)
		w, _ := r.Watch(ctx, "node1")
		a2, err := r.Announce(ctx, ann(2))
		if err != nil {
			t.Fatal(err)
		}
		next(t, w, "node2", has("node2"))
		kv, err := st.Get(ctx, DefaultPrefix+"node2")
		if err != nil {
			t.Fatal(err)
		}
		raw := rawEvents(t, ctx, st)
		if err := a2.Stop(ctx, true); err != nil {
			t.Fatal(err)
		}
		// The new run, from another Reflector (another process).
		a2, err = newR(t, ts.client(t), hold, nil).Announce(ctx, ann(2))
		if err != nil {
			t.Fatal(err)
		}
		defer a2.Stop(ctx, false)
		if a2.writes != 0 {
			t.Fatalf("restart wrote %d times", a2.writes)
		}
		// Longer than the hold time: the adopted lease is kept alive.
		quiet := time.After(hold + hold/2)
		for done := false; !done; {
			select {
			case ev := <-raw:
				t.Fatalf("restart: store event %+v", ev)
			case s := <-w:
				t.Fatalf("restart: snapshot %v", names(s))
			case <-quiet:
				done = true
			}
		}
		if now, err := st.Get(ctx, DefaultPrefix+"node2"); err != nil || now.Revision != kv.Revision {
			t.Fatalf("record after restart: %+v %v, want revision %d", now, err, kv.Revision)
		}
		// A restart with new content rewrites, on the same lease.
		moved := ann(2)
		moved.Addrs = []netip.Addr{netip.MustParseAddr("10.244.99.7")}
		a2.Update(moved)
		s := next(t, w, "updated", has("node2"))
		for len(s.Peers[0].Addrs) == 0 {
			s = next(t, w, "updated", has("node2"))
		}
	})
}

// TestMixedModes: watchers handle records of heartbeating nodes and leased
// nodes on one store; a heartbeating node that dies is expired by watchers,
// a leased one by the store.
func TestMixedModes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := memory.New(nil)
	hold := 400 * time.Millisecond
	leased := newR(t, st, hold, nil)
	hb, err := New(st, &Config{HoldTime: hold, DisableLeases: true})
	if err != nil {
		t.Fatal(err)
	}
	if !leased.Leases() || hb.Leases() {
		t.Fatal("modes")
	}
	w, _ := hb.Watch(ctx, "node1")
	a2, _ := leased.Announce(ctx, ann(2))
	a3, _ := hb.Announce(ctx, ann(3))
	next(t, w, "both", has("node2", "node3"))
	// Several hold times: neither is expired (the leased node by the store
	// only, the heartbeating one by watchers only).
	select {
	case s := <-w:
		t.Fatalf("steady state: %v", names(s))
	case <-time.After(3 * hold):
	}
	a3.Stop(ctx, true)
	next(t, w, "heartbeat node expired", has("node2"))
	a2.Stop(ctx, true)
	next(t, w, "leased node expired", has())
}

// countingStore counts reads.
type countingStore struct {
	datastore.Store
	gets, lists atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, key string) (datastore.KV, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

func (c *countingStore) List(ctx context.Context, prefix string) ([]datastore.KV, int64, error) {
	c.lists.Add(1)
	return c.Store.List(ctx, prefix)
}

// countingValidator counts calls and refuses what owners do not list.
type countingValidator struct {
	owners ownerMap
	calls  atomic.Int64
	items  atomic.Int64
}

func (v *countingValidator) Owns(ctx context.Context, node string, blocks []netip.Prefix, addrs []netip.Addr) error {
	v.calls.Add(1)
	v.items.Add(int64(len(blocks) + len(addrs)))
	return v.owners.Owns(ctx, node, blocks, addrs)
}

// hugeRecord is a 45,000-block record as a hostile writer would store it.
func hugeRecord(node string, blocks int) []byte {
	a := ann(9)
	a.Node = node
	for i := range blocks {
		a.Blocks = append(a.Blocks, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 10), byte(i >> 2), byte(i&3) << 6}), 26))
	}
	return encodeRecord(a, time.Minute, 0, 1, time.Now())
}

// TestHugeAnnouncementRefusedCheaply: a 45,000-block record (issue 15.6)
// is refused with no Validator call and no datastore read beyond the
// watcher's own list, and logged once however often it is rewritten; a
// record under the byte limit but over the block limit likewise.
func TestHugeAnnouncementRefusedCheaply(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mem := memory.New(nil)
	st := &countingStore{Store: mem}
	v := &countingValidator{owners: ownerMap{"node2": ann(2).Blocks}}
	var logs strings.Builder
	var lmu sync.Mutex
	r, err := New(st, &Config{HoldTime: time.Hour, Validator: v, Logger: testLogger(&lmu, &logs)})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := r.Watch(ctx, "node1")
	<-w
	a2, err := r.Announce(ctx, ann(2))
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Stop(ctx, false)
	next(t, w, "node2", has("node2"))
	calls, gets, lists := v.calls.Load(), st.gets.Load(), st.lists.Load()

	huge := hugeRecord("evil", 45000)
	rev, err := mem.Create(ctx, DefaultPrefix+"evil", huge)
	if err != nil {
		t.Fatal(err)
	}
	over := hugeRecord("many", DefaultMaxBlocks) // plus ann(9)'s own block
	if len(over) > DefaultMaxRecordBytes {
		t.Fatalf("test record of %d bytes is over the byte limit", len(over))
	}
	if _, err := mem.Create(ctx, DefaultPrefix+"many", over); err != nil {
		t.Fatal(err)
	}
	for range 20 { // rewritten over and over: still logged once
		if rev, err = mem.Update(ctx, DefaultPrefix+"evil", huge, rev); err != nil {
			t.Fatal(err)
		}
	}
	// A marker node proves the watcher has processed everything before it.
	a3, _ := r.Announce(ctx, Announcement{Node: "node3", NodeIP: ann(3).NodeIP, TunnelIP: ann(2).Blocks[0].Addr().Next(), TunnelMAC: ann(3).TunnelMAC})
	defer a3.Stop(ctx, false)
	deadline := time.Now().Add(10 * time.Second)
	for v.calls.Load() < calls+2 && time.Now().Before(deadline) { // node3's own check and the watcher's
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if d := v.calls.Load() - calls; d > 2*int64(DefaultMaxValidatorCalls) {
		t.Fatalf("%d Validator calls after the huge records", d)
	}
	if d := v.items.Load(); d > 100 {
		t.Fatalf("the Validator was asked about %d items", d)
	}
	if g, l := st.gets.Load()-gets, st.lists.Load()-lists; g != 0 || l != 0 {
		t.Fatalf("huge records cost %d gets and %d lists", g, l)
	}
	lmu.Lock()
	out := logs.String()
	lmu.Unlock()
	if n := strings.Count(out, "node=evil"); n != 1 {
		t.Fatalf("evil logged %d times:\n%s", n, out)
	}
	if !strings.Contains(out, "node=many") || !strings.Contains(out, "1025 blocks") {
		t.Fatalf("block-count refusal not logged:\n%s", out)
	}
	// Announce refuses beyond the limits too, before writing.
	big := ann(4)
	for i := range DefaultMaxBlocks + 1 {
		big.Blocks = append(big.Blocks, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i >> 2), byte(i&3) << 6}), 26))
	}
	if _, err := r.Announce(ctx, big); !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrInvalidAnnouncement) {
		t.Fatalf("Announce of %d blocks: %v", len(big.Blocks), err)
	}
}

// TestBulkValidation: a record with many blocks and a few refused costs a
// handful of Validator calls (bisection), not one per block; an error that
// names what is not owned costs one.
func TestBulkValidation(t *testing.T) {
	ctx := context.Background()
	a := ann(2)
	a.Blocks = nil
	owned := ownerMap{"node2": nil}
	for i := range 500 {
		b := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i >> 2), byte(i&3) << 6}), 26)
		a.Blocks = append(a.Blocks, b)
		if i != 17 && i != 300 && i != 301 {
			owned["node2"] = append(owned["node2"], b)
		}
	}
	a.TunnelIP = a.Blocks[0].Addr()
	a, _ = a.normalize()
	v := &countingValidator{owners: owned}
	r, _ := New(memory.New(nil), &Config{Validator: v})
	got, ref := r.validate(ctx, a)
	want := []netip.Prefix{a.Blocks[17], a.Blocks[300], a.Blocks[301]}
	if !slices.Equal(ref.Blocks, want) || len(got.Blocks) != 497 || ref.IPv4 || ref.Ignored {
		t.Fatalf("refused %v (want %v), kept %d", ref.Blocks, want, len(got.Blocks))
	}
	if c := v.calls.Load(); c > 3*2*9+1 || c >= int64(len(a.Blocks))/4 {
		t.Fatalf("%d Validator calls for 500 blocks with 3 refused", c)
	}

	named := ValidatorFunc(func(_ context.Context, _ string, blocks []netip.Prefix, _ []netip.Addr) error {
		v.calls.Add(1)
		return notOwnedErr{want}
	})
	v.calls.Store(0)
	r, _ = New(memory.New(nil), &Config{Validator: named})
	if _, ref := r.validate(ctx, a); !slices.Equal(ref.Blocks, want) || v.calls.Load() != 1 {
		t.Fatalf("NotOwned: refused %v in %d calls", ref.Blocks, v.calls.Load())
	}

	// Everything refused: the budget bounds the calls, all is refused.
	v = &countingValidator{owners: ownerMap{}}
	r, _ = New(memory.New(nil), &Config{Validator: v})
	if _, ref := r.validate(ctx, a); !ref.Ignored || len(ref.Blocks) != 500 || v.calls.Load() > DefaultMaxValidatorCalls {
		t.Fatalf("all refused: %d blocks refused, ignored %v, %d calls", len(ref.Blocks), ref.Ignored, v.calls.Load())
	}
}

type notOwnedErr struct{ blocks []netip.Prefix }

func (e notOwnedErr) Error() string                            { return fmt.Sprintf("not owned: %v", e.blocks) }
func (e notOwnedErr) NotOwned() ([]netip.Prefix, []netip.Addr) { return e.blocks, nil }

// TestRefusalReachesAnnouncer: what the Validator refuses of a node's
// announcement is reported to that node (Err wraps ErrRefused, Refusal
// names it) as well as in watchers' snapshots; a conflict lost under the
// conflict rule shows in the losing node's own watch; MACs are logged as
// aa:bb:cc:dd:ee:ff.
func TestRefusalReachesAnnouncer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := memory.New(nil)
	owners := ownerMap{"node2": ann(2).Blocks, "node3": ann(3).Blocks}
	var logs strings.Builder
	var lmu sync.Mutex
	r, _ := New(st, &Config{HoldTime: time.Minute, Validator: owners, Logger: testLogger(&lmu, &logs)})
	w, _ := r.Watch(ctx, "node1")
	a2, _ := r.Announce(ctx, ann(2))
	defer a2.Stop(ctx, false)
	if err := a2.Err(); err != nil {
		t.Fatal(err)
	}
	hijack := ann(3)
	hijack.Blocks = append(hijack.Blocks, ann(2).Blocks[0])
	a3, err := r.Announce(ctx, hijack)
	if err != nil {
		t.Fatal(err)
	}
	defer a3.Stop(ctx, false)
	if err := a3.Err(); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "10.244.2.0/26") {
		t.Fatalf("hijacking node's Err: %v", err)
	}
	if ref := a3.Refusal(); !slices.Equal(ref.Blocks, ann(2).Blocks) || ref.Ignored {
		t.Fatalf("Refusal: %+v", ref)
	}
	s := next(t, w, "both", has("node2", "node3"))
	for len(s.Refused) == 0 {
		s = next(t, w, "refusal", has("node2", "node3"))
	}
	if len(s.Refused) != 1 || s.Refused[0].Node != "node3" || !slices.Equal(s.Refused[0].Blocks, ann(2).Blocks) {
		t.Fatalf("Snapshot.Refused: %+v", s.Refused)
	}
	// It fixes its announcement: the refusal clears.
	a3.Update(ann(3))
	deadline := time.Now().Add(10 * time.Second)
	for a3.Err() != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := a3.Err(); err != nil {
		t.Fatalf("after the fix: %v", err)
	}

	// Conflict rule without a Validator: node4 and node5 share a VTEP MAC
	// and a block; node4 sorts first and wins. node5 is dual-stack and
	// keeps its IPv6 VTEP; its own watch reports what it lost.
	r2, _ := New(memory.New(nil), &Config{HoldTime: time.Minute, Logger: testLogger(&lmu, &logs)})
	n4, n5 := ann(4), dual(5)
	n5.TunnelMAC = n4.TunnelMAC
	n5.Blocks = append(n5.Blocks, n4.Blocks[0])
	w5, _ := r2.Watch(ctx, "node5")
	w6, _ := r2.Watch(ctx, "node6")
	a4, _ := r2.Announce(ctx, n4)
	defer a4.Stop(ctx, false)
	a5, _ := r2.Announce(ctx, n5)
	defer a5.Stop(ctx, false)
	s = next(t, w6, "both", func(s Snapshot) bool { return has("node4", "node5")(s) && len(s.Refused) == 1 })
	p5 := s.Peers[1]
	if p5.HasIPv4() || !p5.HasIPv6() || slices.Contains(p5.Blocks, n4.Blocks[0]) || !slices.Contains(p5.Blocks, n5.Blocks[0]) {
		t.Fatalf("node5 as seen: %+v", p5)
	}
	if f := s.Refused[0]; f.Node != "node5" || !f.IPv4 || f.IPv6 || f.Ignored || !slices.Equal(f.Blocks, n4.Blocks) {
		t.Fatalf("refusal: %+v", f)
	}
	s = next(t, w5, "own conflict", func(s Snapshot) bool { return len(s.Refused) == 1 && has("node4")(s) })
	if s.Refused[0].Node != "node5" || !s.Refused[0].IPv4 {
		t.Fatalf("node5's own view: %+v", s.Refused)
	}
	lmu.Lock()
	out := logs.String()
	lmu.Unlock()
	if !strings.Contains(out, "tunnelMAC="+net.HardwareAddr(n4.TunnelMAC).String()) {
		t.Fatalf("MAC not logged as aa:bb:..:\n%s", out)
	}
}

// TestRefusedRecheckRate: a node with something refused is checked again
// about once per heartbeat interval, by each watcher and by its own
// Announcer, not on every heartbeat write and not in a loop; in both
// liveness modes, and for the watching node's own record too.
func TestRefusedRecheckRate(t *testing.T) {
	for _, heartbeat := range []bool{false, true} {
		t.Run(fmt.Sprintf("heartbeat=%v", heartbeat), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			v := &countingValidator{owners: ownerMap{"node2": ann(2).Blocks}}
			hold := 300 * time.Millisecond
			r, _ := New(memory.New(nil), &Config{HoldTime: hold, HeartbeatInterval: hold / 3, Validator: v, DisableLeases: heartbeat})
			hijack := ann(2)
			hijack.Blocks = append(hijack.Blocks, ann(3).Blocks[0])
			a2, _ := r.Announce(ctx, hijack)
			defer a2.Stop(ctx, false)
			w, _ := r.Watch(ctx, "node1")
			self, _ := r.Watch(ctx, "node2") // node2's own watch
			next(t, w, "node2", has("node2"))
			<-self
			v.calls.Store(0)
			const intervals = 9
			time.Sleep(intervals * hold / 3)
			// 3 checkers (Announcer, two watchers), each at most one check
			// per interval plus one, of at most 1+2*log2(3) calls.
			if c := v.calls.Load(); c > 3*(intervals+1)*5 {
				t.Fatalf("%d Validator calls in %d intervals", c, intervals)
			}
			if c := v.calls.Load(); c == 0 {
				t.Fatalf("refused node never checked again")
			}
		})
	}
}
