package reflector

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
)

// benchStores are the stores the convergence benchmark runs on; each
// function returns one client per node on one shared backend (newBackend is
// called once per sub-benchmark).
type benchStore struct {
	name       string
	newBackend func(b *testing.B) func() datastore.Store
}

func memoryBackend(b *testing.B) func() datastore.Store {
	st := memory.New(nil)
	b.Cleanup(func() { st.Close() })
	return func() datastore.Store { return st }
}

type seen struct {
	watcher int
	node    string
	gone    bool
	at      time.Time
}

// benchConvergence: n nodes announce themselves and watch (one watch
// each); per op one new node announces and the op ends when all n have
// delivered it; then it withdraws and all n see it go (not timed).
// Reported: p50 and p99 over ops of the time until ALL n saw it, and of
// single deliveries.
func benchConvergence(b *testing.B, newClient func() datastore.Store, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := make(chan seen, 4*n)
	ready := make(chan struct{}, n)
	for i := range n {
		r, err := New(newClient(), nil)
		if err != nil {
			b.Fatal(err)
		}
		a := benchAnn(i)
		an, err := r.Announce(ctx, a)
		if err != nil {
			b.Fatal(err)
		}
		defer an.Stop(context.Background(), false)
		w, err := r.Watch(ctx, a.Node)
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			have := map[string]bool{}
			warm := false
			for s := range w {
				if !warm && len(s.Peers) >= n-1 {
					warm = true
					ready <- struct{}{}
				}
				now := time.Now()
				cur := map[string]bool{}
				for _, p := range s.Peers {
					if strings.HasPrefix(p.Node, "new-") {
						cur[p.Node] = true
						if !have[p.Node] {
							results <- seen{watcher: i, node: p.Node, at: now}
						}
					}
				}
				for name := range have {
					if !cur[name] {
						results <- seen{watcher: i, node: name, gone: true, at: now}
					}
				}
				have = cur
			}
		}()
	}
	r, err := New(newClient(), nil)
	if err != nil {
		b.Fatal(err)
	}
	// Every node has seen every other before the clock starts.
	for range n {
		<-ready
	}
	var all, single []time.Duration
	k := 0
	for b.Loop() {
		k++
		a := benchAnn(10000 + k)
		a.Node = fmt.Sprintf("new-%d", k)
		t0 := time.Now()
		an, err := r.Announce(ctx, a)
		if err != nil {
			b.Fatal(err)
		}
		var last time.Time
		for got := 0; got < n; {
			s := <-results
			if s.gone || s.node != a.Node {
				continue
			}
			got++
			single = append(single, s.at.Sub(t0))
			last = s.at
		}
		all = append(all, last.Sub(t0))
		b.StopTimer()
		if err := an.Stop(ctx, false); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < n; {
			if s := <-results; s.gone && s.node == a.Node {
				got++
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(pct(all, 50), "all-p50-ms")
	b.ReportMetric(pct(all, 99), "all-p99-ms")
	b.ReportMetric(pct(single, 50), "one-p50-ms")
	b.ReportMetric(pct(single, 99), "one-p99-ms")
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

func benchAnn(i int) Announcement {
	return Announcement{
		Node:      fmt.Sprintf("node-%05d", i),
		NodeIP:    netip.AddrFrom4([4]byte{10, 4, 7, byte(i)}),
		TunnelIP:  netip.AddrFrom4([4]byte{10, 244, byte(i >> 2), byte(i&3) << 6}),
		TunnelMAC: net.HardwareAddr{0x02, 0xbe, 0, 0, byte(i >> 8), byte(i)},
		Blocks:    []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i >> 2), byte(i&3) << 6}), 26)},
	}
}

func BenchmarkConvergence(b *testing.B) {
	for _, st := range benchStores() {
		for _, n := range []int{10, 100} {
			b.Run(fmt.Sprintf("store=%s/nodes=%d", st.name, n), func(b *testing.B) {
				benchConvergence(b, st.newBackend(b), n)
			})
		}
	}
}

// uniqueAnn is benchAnn with addresses unique up to 2^18 nodes.
func uniqueAnn(i int) Announcement {
	blk := netip.AddrFrom4([4]byte{10, byte(64 + i>>14), byte(i >> 6), byte(i&63) << 2})
	return Announcement{
		Node:      fmt.Sprintf("node-%05d", i),
		NodeIP:    netip.AddrFrom4([4]byte{10, 4, byte(i >> 8), byte(i)}),
		TunnelIP:  blk,
		TunnelMAC: net.HardwareAddr{0x02, 0xbe, 0, byte(i >> 16), byte(i >> 8), byte(i)},
		Blocks:    []netip.Prefix{netip.PrefixFrom(blk, 30)},
	}
}

// BenchmarkWatcherChange: the work one watching node does for one change
// (a peer's announcement updated) among N peers: decode, validate (no
// Validator here), rebuild and deliver the snapshot. One op is one write
// until the watcher delivered it; it is the per-node share of convergence,
// without the store's fan-out.
func BenchmarkWatcherChange(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st := memory.New(nil)
			defer st.Close()
			for i := range n {
				if _, err := st.Create(ctx, DefaultPrefix+uniqueAnn(i).Node, encodeRecord(uniqueAnn(i), time.Hour, 0, 1, time.Now())); err != nil {
					b.Fatal(err)
				}
			}
			r, _ := New(st, &Config{HoldTime: time.Hour})
			w, err := r.Watch(ctx, "watcher")
			if err != nil {
				b.Fatal(err)
			}
			if s := <-w; len(s.Peers) != n {
				b.Fatalf("%d peers", len(s.Peers))
			}
			a := uniqueAnn(n / 2)
			key := DefaultPrefix + a.Node
			b.ReportAllocs()
			k := 0
			for b.Loop() {
				k++
				a.Addrs = []netip.Addr{netip.AddrFrom4([4]byte{10, 250, byte(k >> 8), byte(k)})}
				kv, _ := st.Get(ctx, key)
				if _, err := st.Update(ctx, key, encodeRecord(a, time.Hour, 0, 1, time.Now()), kv.Revision); err != nil {
					b.Fatal(err)
				}
				for s := range w {
					i, _ := slices.BinarySearchFunc(s.Peers, a.Node, func(p Announcement, n string) int { return strings.Compare(p.Node, n) })
					if slices.Equal(s.Peers[i].Addrs, a.Addrs) {
						break
					}
				}
			}
		})
	}
}
