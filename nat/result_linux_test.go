//go:build linux

package nat_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/nat"
)

// seedElements is the number of elements seedDesired puts in the sets:
// nat_pools 1, all_pools 1, nat_exclude 1, vxlan_peers 2, workload_ifaces
// 2, workload_addrs 2.
const seedElements = 9

func wantResult(t *testing.T, m *nat.Manager, what string, want nat.Result) {
	t.Helper()
	if got := m.LastResult(); got != want {
		t.Fatalf("%s: LastResult %+v, want %+v", what, got, want)
	}
}

func TestSyncResult(t *testing.T) {
	ctx := context.Background()
	m, fc := newFake(t, nil)
	if (m.LastResult() != nat.Result{}) || (m.Totals() != nat.Totals{}) {
		t.Fatalf("before any Sync: %+v %+v", m.LastResult(), m.Totals())
	}
	if err := m.Sync(ctx); !errors.Is(err, nat.ErrNoDesiredState) {
		t.Fatal(err)
	}
	wantResult(t, m, "no desired state", nat.Result{})

	d := seedDesired()
	mustSync(t, m, d)
	wantResult(t, m, "create", nat.Result{Writes: 1, Rebuilt: true, Reason: "table missing", Added: seedElements})

	flushes := fc.Stats().Flushes
	mustSync(t, m, d)
	wantResult(t, m, "no-op", nat.Result{})
	if fc.Stats().Flushes != flushes {
		t.Fatal("no-op Sync sent a transaction")
	}

	// One peer replaced, one address added to a pod: three elements, one
	// transaction.
	d.VXLANPeers = []netip.Addr{addr("10.4.7.62"), addr("10.4.7.61")}
	d.Workloads[0].Addrs = append(d.Workloads[0].Addrs, addr("10.244.235.136"))
	mustSync(t, m, d)
	wantResult(t, m, "update", nat.Result{Writes: 1, Added: 2, Removed: 1})

	// A rejected transaction wrote nothing and says so.
	d.VXLANPeers = append(d.VXLANPeers, addr("10.4.7.63"))
	fc.FailNextFlush(unix.ENOBUFS)
	if err := m.SetDesired(d); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); !errors.Is(err, unix.ENOBUFS) {
		t.Fatalf("err = %v", err)
	}
	wantResult(t, m, "failed", nat.Result{})
	mustSync(t, m, d)
	wantResult(t, m, "retry", nat.Result{Writes: 1, Added: 1})

	// Something structural: the whole table is replaced.
	before := seedElements + 2 // one peer more, one pod address more
	d.SNATTo = addr("203.0.113.10")
	mustSync(t, m, d)
	if r := m.LastResult(); r.Writes != 1 || !r.Rebuilt || r.Reason == "" || r.Added != before || r.Removed != before {
		t.Fatalf("rebuild: %+v, want %d added and removed", r, before)
	}

	if err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	want := nat.Totals{Syncs: 7, Errors: 2, Writes: 5, Rebuilds: 2, Added: uint64(seedElements + 2 + 1 + before), Removed: uint64(1 + before)}
	if got := m.Totals(); got != want {
		t.Fatalf("Totals %+v, want %+v", got, want)
	}
	// Every transaction the fake received, but the rejected one.
	if got := fc.Stats().Flushes - 1; uint64(got) != want.Writes {
		t.Fatalf("fake applied %d transactions, Totals say %d", got, want.Writes)
	}
}

// A cancelled Sync writes nothing and counts as an error.
func TestSyncResultCancelled(t *testing.T) {
	m, _ := newFake(t, nil)
	mustSync(t, m, seedDesired())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Sync(ctx); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	wantResult(t, m, "cancelled", nat.Result{})
	if got := m.Totals(); got.Syncs != 2 || got.Errors != 1 || got.Writes != 1 {
		t.Fatalf("Totals %+v", got)
	}
}

func TestKernelSyncResult(t *testing.T) {
	ns := kerneltest.NewNS(t, "natres")
	ctx := context.Background()
	m, cc := kernelManager(t, ns, nil)
	d := seedDesired()
	mustSync(t, m, d)
	wantResult(t, m, "create", nat.Result{Writes: 1, Rebuilt: true, Reason: "table missing", Added: seedElements})

	flushes := cc.flushes
	mustSync(t, m, d)
	wantResult(t, m, "no-op", nat.Result{})
	if cc.flushes != flushes {
		t.Fatal("no-op Sync sent a transaction")
	}

	d.VXLANPeers = []netip.Addr{addr("10.4.7.62"), addr("10.4.7.61")}
	d.Pools = append(d.Pools, nat.Pool{CIDR: pfx("10.245.0.0/24")})
	mustSync(t, m, d)
	// all_pools gains 10.245.0.0/24; a peer is replaced.
	wantResult(t, m, "update", nat.Result{Writes: 1, Added: 2, Removed: 1})

	// A batch the kernel rejects: nothing written.
	d.VXLANPeers = append(d.VXLANPeers, addr("10.4.7.63"))
	cc.poisoned = true
	if err := m.SetDesired(d); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err == nil {
		t.Fatal("poisoned batch accepted")
	}
	wantResult(t, m, "failed", nat.Result{})

	// A Manager started afresh on the same table (an agent restart) finds
	// nothing to do once the retry is in.
	mustSync(t, m, d)
	wantResult(t, m, "retry", nat.Result{Writes: 1, Added: 1})
	m2, cc2 := kernelManager(t, ns, nil)
	mustSync(t, m2, d)
	wantResult(t, m2, "restart", nat.Result{})
	if cc2.flushes != 0 {
		t.Fatalf("restart sent %d transactions", cc2.flushes)
	}
	if got := m.Totals(); got.Writes != 3 || got.Errors != 1 || got.Rebuilds != 1 {
		t.Fatalf("Totals %+v", got)
	}
}

// churn has m rebuild its table n times (Cleanup, then a Sync that adds
// every set afresh in one transaction) and checks each Result and the end
// state. The state is m's own (peer 10.4.7.100+i).
func churn(m *nat.Manager, i, n int) error {
	ctx := context.Background()
	d := seedDesired()
	d.VXLANPeers = append(d.VXLANPeers, netip.AddrFrom4([4]byte{10, 4, 7, byte(100 + i)}))
	if err := m.SetDesired(d); err != nil {
		return err
	}
	for range n {
		if err := m.Cleanup(ctx); err != nil {
			return fmt.Errorf("manager %d: %w", i, err)
		}
		if err := m.Sync(ctx); err != nil {
			return fmt.Errorf("manager %d: %w", i, err)
		}
		if r := m.LastResult(); !r.Rebuilt || r.Writes != 1 || r.Added != seedElements+1 {
			return fmt.Errorf("manager %d: %+v", i, r)
		}
	}
	got, err := m.Dump(ctx)
	if err != nil {
		return fmt.Errorf("manager %d: %w", i, err)
	}
	if want := m.Render(); got != want {
		return fmt.Errorf("manager %d: kernel\n%s\nwant\n%s", i, got, want)
	}
	return nil
}

// runConcurrently runs churn on every Manager at once.
func runConcurrently(t *testing.T, ms []*nat.Manager, n int) {
	t.Helper()
	start := make(chan struct{})
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			<-start
			errs[i] = churn(m, i, n)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// Managers in one process do not share state: every set they add carries
// an ID the Manager chose (nattest rejects a set without one).
func TestConcurrentManagers(t *testing.T) {
	var ms []*nat.Manager
	for range 4 {
		m, _ := newFake(t, nil)
		ms = append(ms, m)
	}
	runConcurrently(t, ms, 20)
}

// Several Managers, each in its own namespace, and fakes, all rebuilding
// their tables at once. Under -race this fails if a set reaches
// *nftables.Conn.AddSet without an ID: nftables v0.3.0 then increments its
// unsynchronised package-level counter.
func TestKernelConcurrentManagers(t *testing.T) {
	var ms []*nat.Manager
	for range 3 {
		m, _ := kernelManager(t, kerneltest.NewNS(t, "natrace"), nil)
		ms = append(ms, m)
	}
	for range 3 {
		m, _ := newFake(t, nil)
		ms = append(ms, m)
	}
	runConcurrently(t, ms, 20)
}
