package ipam_test

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/ipam"
)

// fakeClock is a settable clock.
type fakeClock struct{ t atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.t.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.t.Add(int64(d)) }
func mustPrefix(s string) netip.Prefix       { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr           { return netip.MustParseAddr(s) }
func pool(name, cidr string, bs int) ipam.Pool {
	return ipam.Pool{Name: name, CIDR: mustPrefix(cidr), BlockSize: bs, VXLANMode: ipam.VXLANAlways}
}

// counting wraps a store and counts calls.
type counting struct {
	datastore.Store
	gets, lists, txns atomic.Int64
}

func (c *counting) Get(ctx context.Context, k string) (datastore.KV, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, k)
}
func (c *counting) List(ctx context.Context, p string) ([]datastore.KV, int64, error) {
	c.lists.Add(1)
	return c.Store.List(ctx, p)
}
func (c *counting) Txn(ctx context.Context, ops ...datastore.Op) (int64, error) {
	c.txns.Add(1)
	return c.Store.Txn(ctx, ops...)
}

type env struct {
	t     testing.TB
	ctx   context.Context
	st    *memory.Store
	m     *ipam.IPAM
	clock *fakeClock
}

// newEnv returns an IPAM on a fresh memory store with pool "default"
// 10.244.0.0/16 (/26 blocks) unless cfg says otherwise.
func newEnv(t testing.TB, cfg *ipam.Config, pools ...ipam.Pool) *env {
	t.Helper()
	st := memory.New(nil)
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, ctx: context.Background(), st: st, clock: newClock()}
	var c ipam.Config
	if cfg != nil {
		c = *cfg
	}
	if c.Now == nil {
		c.Now = e.clock.Now
	}
	if c.Rand == nil {
		c.Rand = rand.NewPCG(1, 2)
	}
	m, err := ipam.New(st, &c)
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	if pools == nil {
		pools = []ipam.Pool{pool("default", "10.244.0.0/16", 0)}
	}
	for _, p := range pools {
		if err := m.CreatePool(e.ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) assign(handle, host string, n int) []ipam.Assigned {
	e.t.Helper()
	as, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: handle, Host: host, Num4: n})
	if err != nil {
		e.t.Fatalf("AutoAssign(%s, %s, %d): %v", handle, host, n, err)
	}
	if len(as) != n {
		e.t.Fatalf("AutoAssign(%s, %s, %d): got %d addresses", handle, host, n, len(as))
	}
	return as
}

// dump returns every key and value in the store, to prove nothing changed.
func (e *env) dump() map[string]string {
	e.t.Helper()
	kvs, _, err := e.st.List(e.ctx, "")
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range kvs {
		out[kv.Key] = string(kv.Value)
	}
	return out
}

// clean fails the test if Check reports anything.
func (e *env) clean(hosts []string) {
	e.t.Helper()
	ps, err := e.m.Check(e.ctx, hosts)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range ps {
		e.t.Errorf("consistency: %v", p)
	}
}
