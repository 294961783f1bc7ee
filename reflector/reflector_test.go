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
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
)

func ann(i int) Announcement {
	return Announcement{
		Node:      fmt.Sprintf("node%d", i),
		NodeIP:    netip.AddrFrom4([4]byte{10, 4, 7, byte(60 + i)}),
		TunnelIP:  netip.AddrFrom4([4]byte{10, 244, byte(i), 0}),
		TunnelMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, byte(i)},
		Blocks:    []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 26)},
	}
}

// next waits for a snapshot satisfying ok; the deadline is generous, this
// is not a timing assertion.
func next(t *testing.T, ch <-chan Snapshot, what string, ok func(Snapshot) bool) Snapshot {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var last Snapshot
	for {
		select {
		case s, open := <-ch:
			if !open {
				t.Fatalf("%s: watch closed; last %v", what, names(last))
			}
			last = s
			if ok(s) {
				return s
			}
		case <-deadline:
			t.Fatalf("%s: not seen; last %v", what, names(last))
		}
	}
}

func names(s Snapshot) []string {
	var out []string
	for _, p := range s.Peers {
		out = append(out, fmt.Sprintf("%s%v%v", p.Node, p.Blocks, p.Addrs))
	}
	return out
}

func has(nodes ...string) func(Snapshot) bool {
	return func(s Snapshot) bool {
		var got []string
		for _, p := range s.Peers {
			got = append(got, p.Node)
		}
		return slices.Equal(got, nodes)
	}
}

func newR(t *testing.T, st datastore.Store, hold time.Duration, v Validator) *Reflector {
	t.Helper()
	r, err := New(st, &Config{HoldTime: hold, Validator: v})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAnnounceWatchWithdraw(t *testing.T) { forStores(t, testAnnounceWatchWithdraw) }

func testAnnounceWatchWithdraw(t *testing.T, ts *testStore) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := ts.client(t)
	r := newR(t, st, time.Second, nil)
	w, err := r.Watch(ctx, "node1")
	if err != nil {
		t.Fatal(err)
	}
	next(t, w, "empty", has())
	a1, err := r.Announce(ctx, ann(1)) // self: never delivered
	if err != nil {
		t.Fatal(err)
	}
	defer a1.Stop(ctx, false)
	a2, err := r.Announce(ctx, ann(2))
	if err != nil {
		t.Fatal(err)
	}
	s := next(t, w, "node2", has("node2"))
	if !s.Peers[0].Equal(ann(2)) {
		t.Fatalf("got %+v", s.Peers[0])
	}
	kv, err := st.Get(ctx, DefaultPrefix+"node2")
	if err != nil || !strings.Contains(string(kv.Value), `"blocks":["10.244.2.0/26"]`) {
		t.Fatalf("stored %s %v", kv.Value, err)
	}
	// A change is delivered.
	u := ann(2)
	u.Addrs = []netip.Addr{netip.MustParseAddr("10.244.9.7")}
	if err := a2.Update(u); err != nil {
		t.Fatal(err)
	}
	next(t, w, "node2 update", func(s Snapshot) bool { return len(s.Peers) == 1 && len(s.Peers[0].Addrs) == 1 })
	// Clean shutdown withdraws at once (well before the hold time would).
	start := time.Now()
	if err := a2.Stop(ctx, false); err != nil {
		t.Fatal(err)
	}
	next(t, w, "node2 gone", has())
	t.Logf("withdrawn after %v (hold 1s)", time.Since(start))
	if _, err := st.Get(ctx, DefaultPrefix+"node2"); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("record left: %v", err)
	}
}

func TestDeadNodeExpiresAndIsCollected(t *testing.T) { forStores(t, testDeadNodeExpiresAndIsCollected) }

func testDeadNodeExpiresAndIsCollected(t *testing.T, ts *testStore) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := ts.client(t)
	hold := time.Second // heartbeats every 333ms: a stall of a loaded CI machine must not expire node3
	r := newR(t, st, hold, nil)
	w, err := r.Watch(ctx, "node1")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := r.Announce(ctx, ann(2))
	a3, _ := r.Announce(ctx, ann(3))
	defer a3.Stop(ctx, false)
	next(t, w, "both", has("node2", "node3"))
	// Heartbeats keep node3 alive well past its hold time.
	// node2 "dies": graceful stop leaves its record, nobody heartbeats.
	if err := a2.Stop(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, DefaultPrefix+"node2"); err != nil {
		t.Fatalf("graceful stop removed the record: %v", err)
	}
	next(t, w, "node2 expired", has("node3"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := st.Get(ctx, DefaultPrefix+"node2"); errors.Is(err, datastore.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("expired record not garbage-collected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(3 * hold / 2) // node3 keeps heartbeating
	select {
	case s := <-w:
		if !has("node3")(s) {
			t.Fatalf("node3 lost: %v", names(s))
		}
	default:
	}
}

// A restarting agent that stopped gracefully and announces again within
// the hold time never disappears from its peers.
func TestGracefulRestart(t *testing.T) { forStores(t, testGracefulRestart) }

func testGracefulRestart(t *testing.T, ts *testStore) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := ts.client(t)
	r := newR(t, st, 500*time.Millisecond, nil)
	var mu sync.Mutex
	var seen [][]string
	w, _ := r.Watch(ctx, "node1")
	a2, _ := r.Announce(ctx, ann(2))
	next(t, w, "node2", has("node2"))
	if err := a2.Stop(ctx, true); err != nil {
		t.Fatal(err)
	}
	a2, err := r.Announce(ctx, ann(2)) // the new run takes the key over
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Stop(ctx, false)
	end := time.After(1500 * time.Millisecond)
loop:
	for {
		select {
		case s := <-w:
			mu.Lock()
			seen = append(seen, names(s))
			mu.Unlock()
			if !has("node2")(s) {
				t.Fatalf("node2 withdrawn during restart: %v", names(s))
			}
		case <-end:
			break loop
		}
	}
}

// breakable wraps a store so a test can break every watch on demand.
type breakable struct {
	datastore.Store
	mu      sync.Mutex
	cancels []context.CancelFunc
	errs    []chan datastore.Event
}

func (b *breakable) Watch(ctx context.Context, prefix string, after int64) (<-chan datastore.Event, error) {
	wctx, cancel := context.WithCancel(ctx)
	in, err := b.Store.Watch(wctx, prefix, after)
	if err != nil {
		cancel()
		return nil, err
	}
	out := make(chan datastore.Event)
	brk := make(chan datastore.Event, 1)
	b.mu.Lock()
	b.cancels = append(b.cancels, cancel)
	b.errs = append(b.errs, brk)
	b.mu.Unlock()
	go func() {
		defer close(out)
		for {
			select {
			case ev := <-brk:
				select {
				case out <- ev:
				case <-ctx.Done():
				}
				cancel()
				return
			case ev, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// breakAll ends every open watch with err (nil: just close the channel).
func (b *breakable) breakAll(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, c := range b.errs {
		if err != nil {
			c <- datastore.Event{Err: err}
		} else {
			b.cancels[i]()
		}
	}
	b.errs, b.cancels = nil, nil
}

func TestRelistAfterWatchBreak(t *testing.T) { forStores(t, testRelistAfterWatchBreak) }

func testRelistAfterWatchBreak(t *testing.T, ts *testStore) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &breakable{Store: ts.client(t)}
	r := newR(t, st, 10*time.Second, nil)
	w, err := r.Watch(ctx, "node1")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := r.Announce(ctx, ann(2))
	a3, _ := r.Announce(ctx, ann(3))
	next(t, w, "2,3", has("node2", "node3"))
	for _, brk := range []error{datastore.ErrCompacted, nil} {
		// Break the watch, change the world while it is down, compact the
		// history it would need.
		st.breakAll(brk)
		if err := a2.Stop(ctx, false); err != nil {
			t.Fatal(err)
		}
		a4, _ := r.Announce(ctx, ann(4))
		ts.compact(t)
		next(t, w, fmt.Sprintf("after break %v", brk), has("node3", "node4"))
		a2, _ = r.Announce(ctx, ann(2))
		next(t, w, "node2 back", has("node2", "node3", "node4"))
		a4.Stop(ctx, false)
		next(t, w, "node4 gone", has("node2", "node3"))
	}
	a2.Stop(ctx, false)
	a3.Stop(ctx, false)
}

// ownerMap is a Validator over a fixed map of node -> owned prefixes.
type ownerMap map[string][]netip.Prefix

func (o ownerMap) Owns(_ context.Context, node string, blocks []netip.Prefix, addrs []netip.Addr) error {
	for _, b := range blocks {
		if !slices.Contains(o[node], b) {
			return fmt.Errorf("block %s is not affine to %s", b, node)
		}
	}
	for _, a := range addrs {
		if !slices.ContainsFunc(o[node], func(p netip.Prefix) bool { return p.Contains(a) }) {
			return fmt.Errorf("address %s is not assigned to %s", a, node)
		}
	}
	return nil
}

func TestValidationStopsHijack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := memory.New(nil)
	owners := ownerMap{
		"node2": {ann(2).Blocks[0], netip.MustParsePrefix("10.244.99.5/32")},
		"node3": {ann(3).Blocks[0]},
	}
	var logs strings.Builder
	var lmu sync.Mutex
	r, err := New(st, &Config{HoldTime: 5 * time.Second, Validator: owners, Logger: testLogger(&lmu, &logs)})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := r.Watch(ctx, "node1")
	a2, _ := r.Announce(ctx, ann(2))
	defer a2.Stop(ctx, false)
	// node3 also claims node2's block and an address it does not own.
	bad := ann(3)
	bad.Blocks = append(bad.Blocks, ann(2).Blocks[0])
	bad.Addrs = []netip.Addr{netip.MustParseAddr("10.244.99.5")}
	a3, _ := r.Announce(ctx, bad)
	defer a3.Stop(ctx, false)
	s := next(t, w, "both", has("node2", "node3"))
	if got := s.Peers[1]; !slices.Equal(got.Blocks, ann(3).Blocks) || len(got.Addrs) != 0 {
		t.Fatalf("node3 announced %v %v", got.Blocks, got.Addrs)
	}
	// A node whose tunnel address is not its own is ignored entirely.
	evil := ann(5)
	evil.Blocks = nil
	a5, _ := r.Announce(ctx, evil)
	defer a5.Stop(ctx, false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		lmu.Lock()
		done := strings.Contains(logs.String(), "node=node5")
		lmu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node5 never rejected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	w2, err := r.Watch(ctx, "node1")
	if err != nil {
		t.Fatal(err)
	}
	next(t, w2, "fresh watch", has("node2", "node3"))
	lmu.Lock()
	defer lmu.Unlock()
	for _, want := range []string{"block 10.244.2.0/26 is not affine to node3", "address 10.244.99.5 is not assigned to node3", "node=node5"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestBadConfigAndAnnouncement(t *testing.T) {
	st := memory.New(nil)
	if _, err := New(nil, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatal(err)
	}
	if _, err := New(st, &Config{Prefix: "/no-slash"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatal(err)
	}
	if _, err := New(st, &Config{HoldTime: time.Second, HeartbeatInterval: 2 * time.Second}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatal(err)
	}
	r, _ := New(st, nil)
	for _, a := range []Announcement{
		{},
		{Node: "a/b", NodeIP: ann(1).NodeIP, TunnelIP: ann(1).TunnelIP, TunnelMAC: ann(1).TunnelMAC},
		{Node: "x", NodeIP: ann(1).NodeIP, TunnelIP: ann(1).TunnelIP, TunnelMAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}},
		{Node: "x", NodeIP: ann(1).NodeIP, TunnelIP: ann(1).TunnelIP, TunnelMAC: ann(1).TunnelMAC, Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.0.1/26")}},
	} {
		if _, err := r.Announce(context.Background(), a); !errors.Is(err, ErrInvalidAnnouncement) {
			t.Errorf("%+v: %v", a, err)
		}
	}
	if st.Len() != 0 {
		t.Fatal("bad announcement was written")
	}
}

// A Validator that cannot answer (IPAM store unreachable, or not caught up
// yet) hides a node only until its next heartbeat after it answers again.
func TestTransientValidatorFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	down := true
	v := ValidatorFunc(func(ctx context.Context, node string, blocks []netip.Prefix, addrs []netip.Addr) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return errors.New("ipam unavailable")
		}
		return nil
	})
	r := newR(t, memory.New(nil), 600*time.Millisecond, v)
	w, _ := r.Watch(ctx, "node1")
	a2, _ := r.Announce(ctx, ann(2))
	defer a2.Stop(ctx, false)
	a3, _ := r.Announce(ctx, ann(3))
	defer a3.Stop(ctx, false)
	next(t, w, "nobody while IPAM is down", has())
	time.Sleep(300 * time.Millisecond) // a heartbeat or two while down
	mu.Lock()
	down = false
	mu.Unlock()
	next(t, w, "both after IPAM is back", has("node2", "node3"))
}
