//go:build linux

package nat_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/nat"
)

// The fake notifies synchronously inside Flush, so counts are exact here.
func TestWatchFake(t *testing.T) {
	m, fc := newFake(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() { done <- m.Watch(ctx, ch) }()
	<-ch // subscribed

	mustSync(t, m, dualDesired())
	if len(ch) != 1 {
		t.Fatalf("own write: %d signals, want 1 (tolerated, not filtered)", len(ch))
	}
	<-ch
	mustSync(t, m, dualDesired()) // nothing to change: no write, no signal
	if len(ch) != 0 {
		t.Fatalf("no-op Sync: %d signals", len(ch))
	}

	// Another table: no signal.
	otherTable(t, fc)
	if len(ch) != 0 {
		t.Fatalf("another table's write: %d signals", len(ch))
	}

	// nft flush ruleset: a signal, and the next Sync restores both tables.
	fc.FlushRuleset()
	if err := fc.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(ch) != 1 {
		t.Fatalf("flush ruleset: %d signals, want 1", len(ch))
	}
	<-ch
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := m.LastResult(); !r.Rebuilt || r.Reason != "table missing; ip6: table missing" {
		t.Fatalf("restore: %+v", r)
	}
	if got := dump(t, m); got != m.Render() {
		t.Fatalf("not restored\n%s", got)
	}

	// One element deleted from the ip6 table by someone else: a signal.
	<-ch
	set := &nftables.Set{Table: &nftables.Table{Name: "tabby", Family: nftables.TableFamilyIPv6}, Name: nat.SetVXLANPeers, KeyType: nftables.TypeIP6Addr}
	if err := fc.SetDeleteElements(set, []nftables.SetElement{{Key: addr("2001:db8:4:7::62").AsSlice()}}); err != nil {
		t.Fatal(err)
	}
	if err := fc.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(ch) != 1 {
		t.Fatalf("foreign element delete: %d signals, want 1", len(ch))
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch after cancel: %v", err)
	}
}

func TestWatchWithoutWatcher(t *testing.T) {
	// A Conn that is not a Watcher, and no Config.Watcher.
	m, err := nat.New(struct{ nat.Conn }{Conn: nil}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Watch(context.Background(), make(chan struct{}, 1)); !errors.Is(err, nat.ErrNoWatcher) {
		t.Fatalf("got %v, want ErrNoWatcher", err)
	}
}

// flushRuleset is `nft flush ruleset` in ns, through google/nftables.
func flushRuleset(t testing.TB, ns *kerneltest.NS) {
	t.Helper()
	c, err := nat.Dial(int(ns.NS))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	c.FlushRuleset()
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

// waitSignal waits for a signal on ch; the bound only keeps a broken watch
// from hanging the test, it is not a performance threshold.
func waitSignal(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no signal", what)
	}
}

// The kernel's watch, in the Manager's namespace: the tables are written
// first, then Watch subscribes (its first signal), so the next signal can
// only come from the flush the test does through google/nftables.
func TestKernelWatchFlushRuleset(t *testing.T) {
	for _, viaOpen := range []bool{false, true} {
		name := "New+Config.Watcher"
		if viaOpen {
			name = "Open"
		}
		t.Run(name, func(t *testing.T) {
			ns := kerneltest.NewNS(t, "natwatch")
			var m *nat.Manager
			if viaOpen {
				var err error
				m, err = nat.Open(int(ns.NS), nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { m.Close() })
			} else {
				m, _ = kernelManager(t, ns, &nat.Config{Watcher: nat.NewWatcher(int(ns.NS))})
			}
			mustSync(t, m, dualDesired())

			ctx, cancel := context.WithCancel(context.Background())
			ch := make(chan struct{}, 1)
			done := make(chan error, 1)
			go func() { done <- m.Watch(ctx, ch) }()
			waitSignal(t, ch, "subscribe")

			flushRuleset(t, ns)
			waitSignal(t, ch, "flush ruleset")
			if got, _ := m.Dump(context.Background()); got != "" {
				t.Fatalf("after the flush the kernel still has\n%s", got)
			}
			if err := m.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			if r := m.LastResult(); !r.Rebuilt || r.Reason != "table missing; ip6: table missing" {
				t.Fatalf("restore: %+v", r)
			}
			if got, _ := m.Dump(context.Background()); got != m.Render() {
				t.Fatalf("not restored\n%s", got)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Watch after cancel: %v", err)
			}
		})
	}
}

// A foreign rule appended to tabby's ip6 input chain fires the watch too.
func TestKernelWatchForeignRule(t *testing.T) {
	ns := kerneltest.NewNS(t, "natwatch")
	m, _ := kernelManager(t, ns, &nat.Config{Watcher: nat.NewWatcher(int(ns.NS))})
	mustSync(t, m, dualDesired())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan struct{}, 1)
	go func() { _ = m.Watch(ctx, ch) }()
	waitSignal(t, ch, "subscribe")

	c, err := nat.Dial(int(ns.NS))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	tb := &nftables.Table{Name: "tabby", Family: nftables.TableFamilyIPv6}
	c.AddRule(&nftables.Rule{Table: tb, Chain: &nftables.Chain{Name: nat.ChainInput, Table: tb}, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, "foreign rule")
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := m.LastResult(); !r.Rebuilt {
		t.Fatalf("foreign rule not removed: %+v", r)
	}
}

// BenchmarkWatchRestore: the time from `nft flush ruleset` (done through
// google/nftables) until a node loop, resyncing on every Watch signal, has
// both tables back (dual stack, seed plus IPv6). Stale signals from the
// loop's own writes cost a read-only Sync each and are included.
func BenchmarkWatchRestore(b *testing.B) {
	ns := kerneltest.NewNS(b, "natwatch")
	m, _ := kernelManager(b, ns, &nat.Config{Watcher: nat.NewWatcher(int(ns.NS))})
	mustSync(b, m, dualDesired())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan struct{}, 1)
	go func() { _ = m.Watch(ctx, ch) }()
	waitSignal(b, ch, "subscribe")
	c, err := nat.Dial(int(ns.NS))
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseLasting()
	for b.Loop() {
		c.FlushRuleset()
		if err := c.Flush(); err != nil {
			b.Fatal(err)
		}
		for {
			waitSignal(b, ch, "flush")
			if err := m.Sync(context.Background()); err != nil {
				b.Fatal(err)
			}
			if m.LastResult().Rebuilt {
				break
			}
		}
	}
}
