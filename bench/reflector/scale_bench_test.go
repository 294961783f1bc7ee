// Package reflector_test holds the reflector's scale benchmark (issue 12):
// lease liveness against heartbeats, side by side, on one embedded etcd.
package reflector_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/etcd"
	"github.com/tabbynet/tabby/datastore/etcd/etcdtest"
	"github.com/tabbynet/tabby/reflector"
)

// What one run simulates (see RESULTS.md):
//   - nodes announcers, each a Reflector and an Announcer of its own (one
//     record, one lease or heartbeat loop each), sharing announceClients
//     etcd client connections;
//   - a sample of watchers full Reflector.Watch loops, each on its own
//     client connection: a real node's watcher does the same work whatever
//     the number of other watchers, so per-watcher numbers hold for every
//     node; the etcd server's fan-out to all N watchers is what is not
//     simulated (it is extrapolated in the cost model).
const (
	announceClients = 16
	watchers        = 50
	newNodes        = 20 // converge samples
	deaths          = 20 // death samples
)

// countingStore counts the events a watcher's store watch delivers.
type countingStore struct {
	datastore.Store
	events *atomic.Int64
}

func (c countingStore) Watch(ctx context.Context, prefix string, after int64) (<-chan datastore.Event, error) {
	in, err := c.Store.Watch(ctx, prefix, after)
	if err != nil {
		return nil, err
	}
	out := make(chan datastore.Event, 64)
	go func() {
		defer close(out)
		for ev := range in {
			c.events.Add(1)
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func scaleAnn(i int) reflector.Announcement {
	blk := netip.AddrFrom4([4]byte{10, byte(64 + i>>14), byte(i >> 6), byte(i&63) << 2})
	return reflector.Announcement{
		Node:      fmt.Sprintf("node-%05d", i),
		NodeIP:    netip.AddrFrom4([4]byte{10, 4, byte(i >> 8), byte(i)}),
		TunnelIP:  blk,
		TunnelMAC: net.HardwareAddr{0x02, 0xbe, 0, byte(i >> 16), byte(i >> 8), byte(i)},
		Blocks:    []netip.Prefix{netip.PrefixFrom(blk, 30)},
	}
}

func pct(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := min(len(s)-1, (len(s)*p+99)/100-1)
	return float64(s[max(i, 0)].Microseconds()) / 1000
}

// tracker follows, for every watcher, when each tracked node (the new
// ones and the dying ones) appeared and disappeared. Snapshots are sorted
// by node, so each tracked name costs one binary search per snapshot: the
// benchmark's own bookkeeping stays O(log N) per delivery.
type tracker struct {
	mu      sync.Mutex
	cond    *sync.Cond
	tracked []string
	count   []int                  // peers each watcher sees
	seen    []map[string]time.Time // per watcher: node -> when first seen
	gone    []map[string]time.Time // per watcher: node -> when first missing after seen
}

func newTracker(tracked []string) *tracker {
	t := &tracker{count: make([]int, watchers), tracked: tracked}
	t.cond = sync.NewCond(&t.mu)
	for range watchers {
		t.seen = append(t.seen, map[string]time.Time{})
		t.gone = append(t.gone, map[string]time.Time{})
	}
	return t
}

func (t *tracker) follow(i int, ch <-chan reflector.Snapshot) {
	for s := range ch {
		now := time.Now()
		t.mu.Lock()
		for _, name := range t.tracked {
			_, in := slices.BinarySearchFunc(s.Peers, name, func(p reflector.Announcement, n string) int {
				return strings.Compare(p.Node, n)
			})
			_, was := t.seen[i][name]
			switch {
			case in && !was:
				t.seen[i][name] = now
			case !in && was:
				if _, ok := t.gone[i][name]; !ok {
					t.gone[i][name] = now
				}
			}
		}
		t.count[i] = len(s.Peers)
		t.cond.Broadcast()
		t.mu.Unlock()
	}
}

// waitAll waits until ok holds for every watcher, or until the deadline
// (false).
func (t *tracker) waitAll(deadline time.Time, ok func(i int) bool) bool {
	stop := make(chan struct{})
	defer close(stop)
	go func() { // wake the waiter now and then, to notice the deadline
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				t.cond.Broadcast()
			}
		}
	}()
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		all := true
		for i := range watchers {
			if !ok(i) {
				all = false
				break
			}
		}
		if all {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		t.cond.Wait()
	}
}

func BenchmarkReflectorScale(b *testing.B) {
	for _, mode := range []string{"lease", "heartbeat"} {
		for _, n := range []int{1000, 5000} {
			b.Run(fmt.Sprintf("mode=%s/nodes=%d", mode, n), func(b *testing.B) {
				benchScale(b, mode == "heartbeat", n)
			})
		}
	}
}

func benchScale(b *testing.B, heartbeat bool, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := etcdtest.New(b, nil)
	client := func() *etcd.Store {
		st, err := etcd.New(ctx, &etcd.Config{Endpoints: srv.Endpoints()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		return st
	}
	cfg := &reflector.Config{DisableLeases: heartbeat} // default hold 30 s, interval 10 s
	hold := reflector.DefaultHoldTime
	var clients []*etcd.Store
	for range announceClients {
		clients = append(clients, client())
	}
	admin := clients[0]
	revision := func() int64 {
		r, err := admin.Client().Get(ctx, "/bench-revision-probe")
		if err != nil {
			b.Fatal(err)
		}
		return r.Header.Revision
	}

	// N announcers, 32 at a time.
	ans := make([]*reflector.Announcer, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	t0 := time.Now()
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := reflector.New(clients[i%announceClients], cfg)
			if err != nil {
				b.Error(err)
				return
			}
			if ans[i], err = r.Announce(ctx, scaleAnn(i)); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	b.Logf("%d announcers up in %v", n, time.Since(t0).Round(time.Millisecond))
	defer func() {
		for _, an := range ans {
			if an != nil {
				an.Stop(context.Background(), true)
			}
		}
	}()

	// The sample of watchers; heap growth per watcher measured around them.
	var tracked, dead []string
	for k := range newNodes {
		tracked = append(tracked, fmt.Sprintf("new-%02d", k))
	}
	for k := range deaths {
		dead = append(dead, scaleAnn(k*(n/deaths)).Node)
	}
	tr := newTracker(append(tracked, dead...))
	// The dying nodes are seen from the start.
	for i := range watchers {
		for _, d := range dead {
			tr.seen[i][d] = time.Time{}
		}
	}
	var events atomic.Int64
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	t0 = time.Now()
	for i := range watchers {
		r, err := reflector.New(countingStore{client(), &events}, cfg)
		if err != nil {
			b.Fatal(err)
		}
		w, err := r.Watch(ctx, fmt.Sprintf("watcher-%d", i))
		if err != nil {
			b.Fatal(err)
		}
		go tr.follow(i, w)
	}
	if !tr.waitAll(time.Now().Add(5*time.Minute), func(i int) bool { return tr.count[i] == n }) {
		b.Fatalf("watchers never saw all %d nodes", n)
	}
	b.Logf("%d watchers saw all %d nodes in %v", watchers, n, time.Since(t0).Round(time.Millisecond))
	runtime.GC()
	runtime.ReadMemStats(&m1)
	perWatcher := float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / watchers

	// Steady state: two heartbeat intervals.
	window := 2 * hold / 3
	ev0, rev0 := events.Load(), revision()
	time.Sleep(window)
	ev1, rev1 := events.Load(), revision()
	secs := window.Seconds()
	eventsPerNode := float64(ev1-ev0) / watchers / secs
	revsPerSec := float64(rev1-rev0) / secs // the probe is a read: it adds no revision

	// Convergence: new nodes, one at a time, until all watchers see each.
	r, err := reflector.New(clients[1], cfg)
	if err != nil {
		b.Fatal(err)
	}
	// An overloaded store refuses or times out requests: such samples are
	// counted (failed-samples), not timed, and the announcement retried.
	var conv []time.Duration
	var extra []*reflector.Announcer
	failed := 0
	for k := range newNodes {
		a := scaleAnn(n + k)
		a.Node = fmt.Sprintf("new-%02d", k)
		start := time.Now()
		an, err := r.Announce(ctx, a)
		for try := 0; err != nil && try < 10; try++ {
			b.Logf("announce %s: %v (retrying)", a.Node, err)
			time.Sleep(time.Second)
			an, err = r.Announce(ctx, a)
		}
		if err != nil {
			b.Fatal(err)
		}
		extra = append(extra, an)
		var last time.Time
		ok := tr.waitAll(start.Add(2*hold), func(i int) bool {
			at, ok := tr.seen[i][a.Node]
			if ok && at.After(last) {
				last = at
			}
			return ok
		})
		if !ok {
			failed++
			continue
		}
		conv = append(conv, last.Sub(start))
	}
	for _, an := range extra {
		an.Stop(ctx, false)
	}

	// Deaths: nodes stop keeping themselves alive all at once (a crash:
	// no withdrawal); measured until the last watcher withdrew each.
	start := time.Now()
	for k := range deaths {
		i := k * (n / deaths)
		ans[i].Stop(ctx, true)
		ans[i] = nil
	}
	var deathT []time.Duration
	for _, node := range dead {
		var last time.Time
		ok := tr.waitAll(start.Add(3*hold), func(i int) bool {
			at, ok := tr.gone[i][node]
			if ok && at.After(last) {
				last = at
			}
			return ok
		})
		if !ok {
			failed++
			continue
		}
		deathT = append(deathT, last.Sub(start))
	}
	b.ReportMetric(eventsPerNode, "events-per-node-s")
	b.ReportMetric(revsPerSec, "etcd-revisions-s")
	b.ReportMetric(pct(conv, 99), "converge-p99-ms")
	b.ReportMetric(pct(conv, 50), "converge-p50-ms")
	b.ReportMetric(pct(deathT, 99), "death-p99-ms")
	b.ReportMetric(perWatcher/1e6, "watcher-heap-MB")
	b.ReportMetric(float64(failed), "failed-samples")
}
