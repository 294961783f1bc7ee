package ipam_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/etcd"
	"github.com/tabbynet/tabby/datastore/etcd/etcdtest"
	"github.com/tabbynet/tabby/ipam"
)

// hooked wraps a store: before each Txn, before(ops) may act (or fail it).
type hooked struct {
	datastore.Store
	before func(ops []datastore.Op) error
	maxOps atomic.Int64
}

func (h *hooked) Txn(ctx context.Context, ops ...datastore.Op) (int64, error) {
	if int64(len(ops)) > h.maxOps.Load() {
		h.maxOps.Store(int64(len(ops)))
	}
	if h.before != nil {
		if err := h.before(ops); err != nil {
			return 0, err
		}
	}
	return h.Store.Txn(ctx, ops...)
}

// affineTo returns the blocks whose record names host as its affinity.
func affineTo(t *testing.T, m *ipam.IPAM, host string) []netip.Prefix {
	t.Helper()
	u, err := m.Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, b := range u.Blocks {
		if b.Affinity == host {
			out = append(out, b.CIDR)
		}
	}
	return out
}

func TestReleaseHost(t *testing.T) {
	e := newEnv(t, nil)
	hk := &hooked{Store: e.st}
	m, err := ipam.New(hk, &ipam.Config{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tunnel, err := m.AssignTunnelAddress(e.ctx, "n1", ipam.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	full, _ := m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "pod1", Host: "n1", Num4: 63}) // fills the tunnel's block
	empty, err := m.ClaimBlock(e.ctx, "n1", "default")
	if err != nil {
		t.Fatal(err)
	}
	// An interrupted claim: its confirmation fails, the affinity stays
	// pending.
	hk.before = func(ops []datastore.Op) error {
		if len(ops) == 1 && ops[0].Type == datastore.OpUpdate && ops[0].Key == "tabby/ipam/hosts/n1" {
			return datastore.ErrUnavailable
		}
		return nil
	}
	if _, err := m.ClaimBlock(e.ctx, "n1", "default"); !errors.Is(err, datastore.ErrUnavailable) {
		t.Fatalf("interrupted claim: %v", err)
	}
	hk.before = nil
	e.assign("pod2", "n2", 1)
	pending := slices.DeleteFunc(affineTo(t, m, "n1"), func(b netip.Prefix) bool { return b == full[0].Block || b == empty })
	if len(pending) != 1 {
		t.Fatalf("pending block: %v", pending)
	}
	if ps, _ := m.Check(e.ctx, []string{"n2"}); len(ps) != 4 {
		t.Fatalf("before: %d problems, want 3 blocks and the host record of n1: %v", len(ps), ps)
	}

	r, err := m.ReleaseHost(e.ctx, "n1", ipam.ReleaseHostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := ipam.HostRelease{Host: "n1", TunnelAddrs: []netip.Addr{tunnel}, DeletedBlocks: []netip.Prefix{empty, pending[0]},
		UnaffinedBlocks: []netip.Prefix{full[0].Block}, Remaining: 63, RecordRemoved: true}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("released %+v\nwant %+v", r, want)
	}
	if bs, _ := m.HostBlocks(e.ctx, "n1"); len(bs) != 0 {
		t.Fatalf("n1 still holds %v", bs)
	}
	if bs := affineTo(t, m, "n1"); len(bs) != 0 {
		t.Fatalf("blocks still affine to n1: %v", bs)
	}
	if as, _ := m.HandleAddrs(e.ctx, "pod1"); len(as) != 63 {
		t.Fatalf("pod1's addresses must stay valid: %d", len(as))
	}
	e.clean([]string{"n2"})

	// Idempotent: nothing changes.
	before := e.dump()
	r, err = m.ReleaseHost(e.ctx, "n1", ipam.ReleaseHostOptions{Scan: true})
	if err != nil || r.Changed() {
		t.Fatalf("again: %+v %v", r, err)
	}
	if !reflect.DeepEqual(before, e.dump()) {
		t.Fatal("second release changed the store")
	}

	// Once its addresses are released, GC frees the unaffine block.
	if _, err := m.ReleaseByHandle(e.ctx, "pod1"); err != nil {
		t.Fatal(err)
	}
	var freed []netip.Prefix
	for range 2 {
		res, err := m.GC(e.ctx, ipam.GCOptions{})
		if err != nil {
			t.Fatal(err)
		}
		freed = append(freed, res.ReleasedBlocks...)
	}
	if !slices.Equal(freed, []netip.Prefix{full[0].Block}) {
		t.Fatalf("gc freed %v, want %v", freed, full[0].Block)
	}
	if u, _ := m.Usage(e.ctx); len(u.Blocks) != 1 || u.Blocks[0].Affinity != "n2" {
		t.Fatalf("blocks left: %+v", u.Blocks)
	}
	e.clean([]string{"n2"})
}

func TestReleaseHostBadInput(t *testing.T) {
	e := newEnv(t, nil)
	e.assign("a", "n1", 1)
	before := e.dump()
	for _, h := range []string{"", "a/b", "a b", strings.Repeat("x", 254)} {
		if _, err := e.m.ReleaseHost(e.ctx, h, ipam.ReleaseHostOptions{Scan: true}); !errors.Is(err, ipam.ErrInvalid) {
			t.Errorf("ReleaseHost(%q): %v, want ErrInvalid", h, err)
		}
	}
	if !reflect.DeepEqual(before, e.dump()) {
		t.Fatal("bad input changed the store")
	}
}

// TestReleaseHostBatches: a host with more blocks than one transaction may
// touch is released in several, none above the datastore's limit.
func TestReleaseHostBatches(t *testing.T) {
	e := newEnv(t, nil, pool("p", "10.244.0.0/16", 29))
	hk := &hooked{Store: e.st}
	m, _ := ipam.New(hk, nil)
	const n = 150
	for range n {
		if _, err := m.ClaimBlock(e.ctx, "n1", "p"); err != nil {
			t.Fatal(err)
		}
	}
	hk.maxOps.Store(0)
	r, err := m.ReleaseHost(e.ctx, "n1", ipam.ReleaseHostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.DeletedBlocks) != n || !r.RecordRemoved {
		t.Fatalf("deleted %d blocks (record removed %v)", len(r.DeletedBlocks), r.RecordRemoved)
	}
	if got := hk.maxOps.Load(); got > datastore.MaxTxnOps || got < 2 {
		t.Fatalf("largest transaction: %d operations", got)
	}
	if u, _ := m.Usage(e.ctx); len(u.Blocks) != 0 {
		t.Fatalf("%d blocks left", len(u.Blocks))
	}
	e.clean([]string{})
}

// TestReleaseHostRacesAssignment: an assignment for the host commits
// between ReleaseHost's read and its transaction. The release retries on
// fresh state and no block is left affine to the host without the host's
// record listing it.
func TestReleaseHostRacesAssignment(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(e *env) // n1's state before the release
	}{
		// The assignment takes an address in the empty block about to be
		// deleted.
		{"fills-empty-block", func(e *env) {
			if _, err := e.m.ClaimBlock(e.ctx, "n1", "default"); err != nil {
				e.t.Fatal(err)
			}
		}},
		// The host's block is full: the assignment claims a new one.
		{"claims-new-block", func(e *env) { e.assign("full", "n1", 64) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			tc.setup(e)
			hk := &hooked{Store: e.st}
			m, _ := ipam.New(hk, nil)
			var once sync.Once
			var raced []ipam.Assigned
			hk.before = func(ops []datastore.Op) error {
				if !slices.ContainsFunc(ops, func(o datastore.Op) bool {
					return o.Type == datastore.OpDelete && o.Key == "tabby/ipam/hosts/n1"
				}) {
					return nil
				}
				var err error
				once.Do(func() {
					raced, err = e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "racer", Host: "n1", Num4: 1})
				})
				return err
			}
			r, err := m.ReleaseHost(e.ctx, "n1", ipam.ReleaseHostOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(raced) != 1 {
				t.Fatal("the assignment did not run")
			}
			if !slices.Contains(r.UnaffinedBlocks, raced[0].Block) || !r.RecordRemoved {
				t.Fatalf("release %+v did not see the racing assignment in %s", r, raced[0].Block)
			}
			if bs := affineTo(t, e.m, "n1"); len(bs) != 0 {
				t.Fatalf("blocks still affine to n1: %v", bs)
			}
			if as, _ := e.m.HandleAddrs(e.ctx, "racer"); !slices.Equal(as, []netip.Addr{raced[0].Addr}) {
				t.Fatalf("racer holds %v, want %v", as, raced[0].Addr)
			}
			e.clean([]string{})
		})
	}
}

// TestReleaseHostConcurrentAssign: assignments and releases of one host
// run at once; the store stays consistent throughout (every block affine
// to the host is listed in its record) and a last release leaves nothing.
func TestReleaseHostConcurrentAssign(t *testing.T) {
	e := newEnv(t, &ipam.Config{MaxRetries: 1000}, pool("p", "10.244.0.0/20", 28))
	rounds := 200
	if testing.Short() || raceEnabled {
		rounds = 60
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	var assigned atomic.Int64
	wg.Go(func() {
		for i := range rounds {
			h := fmt.Sprintf("pod%d", i)
			if _, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: h, Host: "n1", Num4: 1 + i%20}); err != nil {
				errs <- fmt.Errorf("assign %s: %w", h, err)
				return
			}
			assigned.Add(1)
			if i%3 == 0 {
				if _, err := e.m.ReleaseByHandle(e.ctx, h); err != nil {
					errs <- err
					return
				}
			}
		}
	})
	wg.Go(func() {
		for range rounds {
			if _, err := e.m.ReleaseHost(e.ctx, "n1", ipam.ReleaseHostOptions{}); err != nil {
				errs <- fmt.Errorf("release host: %w", err)
				return
			}
		}
	})
	wg.Go(func() {
		for range rounds / 4 {
			ps, err := e.m.Check(e.ctx, nil)
			if err != nil || len(ps) > 0 {
				errs <- fmt.Errorf("check during the race: %v %v", ps, err)
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.clean(nil)
	if _, err := e.m.ReleaseHost(e.ctx, "n1", ipam.ReleaseHostOptions{}); err != nil {
		t.Fatal(err)
	}
	if bs := affineTo(t, e.m, "n1"); len(bs) != 0 {
		t.Fatalf("blocks still affine to n1: %v", bs)
	}
	e.clean([]string{})
	t.Logf("%d assignments raced the releases", assigned.Load())
}

// TestGCReleasesDeadHosts: GC with LiveHosts releases exactly the hosts
// Check reports as unknown, including a block affine to a host whose
// record is gone.
func TestGCReleasesDeadHosts(t *testing.T) {
	e := newEnv(t, nil)
	for _, h := range []string{"n1", "n2", "n3"} {
		if _, err := e.m.AssignTunnelAddress(e.ctx, h, ipam.IPv4); err != nil {
			t.Fatal(err)
		}
		e.assign("pod-"+h, h, 2)
	}
	// n3's record lost (a store damaged by hand): its block is a stray.
	kv, err := e.st.Get(e.ctx, "tabby/ipam/hosts/n3")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.Delete(e.ctx, kv.Key, kv.Revision); err != nil {
		t.Fatal(err)
	}
	live := []string{"n1"}
	ps, _ := e.m.Check(e.ctx, live)
	unknown := 0
	for _, p := range ps {
		if p.Kind == ipam.ProblemUnknownHost {
			unknown++
		}
	}
	if unknown != 3 { // n2's block and record, n3's block
		t.Fatalf("before: %v", ps)
	}
	// Off by default.
	res, err := e.m.GC(e.ctx, ipam.GCOptions{})
	if err != nil || len(res.ReleasedHosts) != 0 {
		t.Fatalf("gc without LiveHosts: %+v %v", res, err)
	}
	// Nodes that may have joined after the list was taken are kept.
	res, err = e.m.GC(e.ctx, ipam.GCOptions{LiveHosts: live, GracePeriod: time.Minute})
	if err != nil || len(res.ReleasedHosts) != 0 {
		t.Fatalf("gc within the grace period: %+v %v", res, err)
	}
	e.clock.Advance(2 * time.Minute)
	res, err = e.m.GC(e.ctx, ipam.GCOptions{LiveHosts: live, GracePeriod: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.ReleasedHosts {
		got = append(got, r.Host)
		if len(r.TunnelAddrs) != 1 || len(r.UnaffinedBlocks) != 1 || r.Remaining != 2 {
			t.Errorf("%+v", r)
		}
	}
	if !slices.Equal(got, []string{"n2", "n3"}) {
		t.Fatalf("released hosts %v", got)
	}
	e.clean(live)
	// The pods' handles are released, or GC releases them: then GC frees
	// the blocks.
	valid := func(h string) bool { return h == "pod-n1" || h == ipam.TunnelHandle("n1") }
	for range 2 {
		if _, err := e.m.GC(e.ctx, ipam.GCOptions{LiveHosts: live, Valid: valid}); err != nil {
			t.Fatal(err)
		}
	}
	if u, _ := e.m.Usage(e.ctx); len(u.Blocks) != 1 || u.Blocks[0].Affinity != "n1" || u.Blocks[0].InUse != 3 {
		t.Fatalf("blocks: %+v", u.Blocks)
	}
	e.clean(live)
}

// TestReleaseHostEtcd: on etcd, which refuses transactions of more than
// 128 operations, a host holding 150 blocks is released.
func TestReleaseHostEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	eps := etcdtest.Start(t)
	ctx := context.Background()
	st, err := etcd.New(ctx, &etcd.Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m, _ := ipam.New(st, nil)
	if err := m.CreatePool(ctx, pool("p", "10.244.0.0/16", 29)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AssignTunnelAddress(ctx, "n1", ipam.IPv4); err != nil {
		t.Fatal(err)
	}
	for range 149 {
		if _, err := m.ClaimBlock(ctx, "n1", "p"); err != nil {
			t.Fatal(err)
		}
	}
	r, err := m.ReleaseHost(ctx, "n1", ipam.ReleaseHostOptions{Scan: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.TunnelAddrs) != 1 || len(r.DeletedBlocks) != 150 || !r.RecordRemoved {
		t.Fatalf("%d tunnel addresses, %d blocks deleted, record removed %v", len(r.TunnelAddrs), len(r.DeletedBlocks), r.RecordRemoved)
	}
	if ps, err := m.Check(ctx, []string{}); err != nil || len(ps) > 0 {
		t.Fatalf("%v %v", ps, err)
	}
}

// TestReleaseHostBolt: the same on a bolt file, reopened afterwards.
func TestReleaseHostBolt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tabby.db")
	st, m := openBolt(t, path)
	ctx := context.Background()
	if err := m.CreatePool(ctx, pool("p", "10.244.0.0/16", 26)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AssignTunnelAddress(ctx, "n1", ipam.IPv4); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AutoAssign(ctx, ipam.AutoAssignArgs{Handle: "pod", Host: "n1", Num4: 70}); err != nil {
		t.Fatal(err)
	}
	r, err := m.ReleaseHost(ctx, "n1", ipam.ReleaseHostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.UnaffinedBlocks) != 2 || r.Remaining != 70 || !r.RecordRemoved {
		t.Fatalf("%+v", r)
	}
	st.Close()
	_, m = openBolt(t, path)
	if ps, err := m.Check(ctx, []string{}); err != nil || len(ps) > 0 {
		t.Fatalf("%v %v", ps, err)
	}
	if as, _ := m.HandleAddrs(ctx, "pod"); len(as) != 70 {
		t.Fatalf("pod holds %d addresses after the release", len(as))
	}
}
