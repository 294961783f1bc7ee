package reflector

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"path/filepath"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/datastore/etcd"
	"github.com/tabbynet/tabby/datastore/etcd/etcdtest"
	"github.com/tabbynet/tabby/datastore/memory"
)

// testStore is one backend; client returns a store handle on it (for etcd
// a new client each time, as each node has its own).
type testStore struct {
	name    string
	client  func(t testing.TB) datastore.Store
	compact func(t testing.TB)
	server  *etcdtest.Server // etcd only
}

func memoryStore(t testing.TB) *testStore {
	m := memory.New(nil)
	t.Cleanup(func() { m.Close() })
	return &testStore{
		name:   "memory",
		client: func(testing.TB) datastore.Store { return m },
		compact: func(t testing.TB) {
			_, rev, err := m.List(context.Background(), "/")
			if err == nil {
				err = m.Compact(context.Background(), rev)
			}
			if err != nil {
				t.Fatal(err)
			}
		},
	}
}

func etcdStore(t testing.TB) *testStore {
	srv := etcdtest.New(t, nil)
	ts := &testStore{name: "etcd", server: srv}
	ts.client = func(t testing.TB) datastore.Store {
		st, err := etcd.New(context.Background(), &etcd.Config{Endpoints: srv.Endpoints()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	admin := ts.client(t).(*etcd.Store)
	ts.compact = func(t testing.TB) {
		ctx := context.Background()
		r, err := admin.Client().Get(ctx, "/")
		if err == nil {
			_, err = admin.Client().Compact(ctx, r.Header.Revision)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return ts
}

// boltStore: one file, one Store per client (as separate processes on one
// host would open it); its watches poll for the others' writes.
func boltStore(t testing.TB) *testStore {
	path := filepath.Join(t.TempDir(), "tabby.db")
	return &testStore{
		name: "bolt",
		client: func(t testing.TB) datastore.Store {
			st, err := bolt.Open(context.Background(), path, &bolt.Options{PollInterval: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
		compact: func(testing.TB) {}, // bolt trims its log by size only
	}
}

// noLeases hides a store's Leaser capability: a store without leases, on
// which Reflectors heartbeat.
type noLeases struct{ datastore.Store }

// heartbeats returns ts without its lease capability.
func heartbeats(ts *testStore) *testStore {
	h := *ts
	h.name += "/heartbeat"
	h.client = func(t testing.TB) datastore.Store { return noLeases{ts.client(t)} }
	return &h
}

// forStores runs fn on the memory store, a bolt file and embedded etcd,
// each with leases and without (heartbeats).
func forStores(t *testing.T, fn func(*testing.T, *testStore)) {
	for _, mk := range []func(testing.TB) *testStore{memoryStore, boltStore, etcdStore} {
		ts := mk(t)
		t.Run(ts.name+"/lease", func(t *testing.T) { fn(t, ts) })
		hb := heartbeats(ts)
		t.Run(hb.name, func(t *testing.T) { fn(t, hb) })
	}
}

// forLeaseStores runs fn on the three stores with leases.
func forLeaseStores(t *testing.T, fn func(*testing.T, *testStore)) {
	for _, mk := range []func(testing.TB) *testStore{memoryStore, boltStore, etcdStore} {
		ts := mk(t)
		t.Run(ts.name, func(t *testing.T) { fn(t, ts) })
	}
}

// An etcd outage longer than the hold time withdraws nobody: heartbeats
// cannot be written, but the watcher knows it is blind. After the outage a
// node that really died is still withdrawn.
func TestEtcdOutage(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := etcdStore(t)
	// Longer than the etcd client's reconnect backoff after a restart
	// (each node has its own client and reconnects on its own schedule).
	hold := 3 * time.Second
	newR := func() *Reflector {
		r, err := New(ts.client(t), &Config{HoldTime: hold, Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	w, err := newR().Watch(ctx, "node1")
	if err != nil {
		t.Fatal(err)
	}
	a2, err := newR().Announce(ctx, ann(2))
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Stop(ctx, false)
	a3, err := newR().Announce(ctx, ann(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a3.Stop(context.Background(), false) })
	next(t, w, "both", has("node2", "node3"))

	ts.server.Stop()
	outage := time.After(hold + time.Second)
wait:
	for {
		select {
		case s := <-w:
			t.Fatalf("delivery during the outage: %v", names(s))
		case <-outage:
			break wait
		}
	}
	ts.server.Restart()
	// Give the announcers time to heartbeat again; nobody may disappear.
	settle := time.After(hold + time.Second)
	for done := false; !done; {
		select {
		case s := <-w:
			if !has("node2", "node3")(s) {
				t.Fatalf("withdrawn after the outage: %v", names(s))
			}
		case <-settle:
			done = true
		}
	}
	// node3 dies for real now.
	_ = a3.Stop(ctx, true)
	next(t, w, "node3 expired after the outage", has("node2"))
}

type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) { l.t.Log(string(p)); return len(p), nil }
