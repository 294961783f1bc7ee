package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/etcd"
	"github.com/tabbynet/tabby/datastore/etcd/etcdtest"
	"github.com/tabbynet/tabby/datastore/storetest"
)

var _ storetest.Compacter = (*etcd.Store)(nil)

func newStore(t *testing.T, cfg etcd.Config) *etcd.Store {
	t.Helper()
	s, err := etcd.New(context.Background(), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	endpoints := etcdtest.Start(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) datastore.Store {
		// One server; each store in its own key space.
		return newStore(t, etcd.Config{Endpoints: endpoints, Prefix: fmt.Sprintf("/contract%d", n.Add(1))})
	})
}

func TestTLSAndAuth(t *testing.T) {
	srv := etcdtest.New(t, &etcdtest.Options{TLS: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A generous DialTimeout: with a username New authenticates, and the
	// machine running the tests may be loaded.
	tlsCfg := etcd.Config{Endpoints: srv.Endpoints(), CAFile: srv.CAFile(), CertFile: srv.CertFile(), KeyFile: srv.KeyFile(),
		DialTimeout: 30 * time.Second}
	admin := newStore(t, tlsCfg)
	if _, err := admin.Create(ctx, "/tls/a", []byte("1")); err != nil {
		t.Fatalf("create over TLS: %v", err)
	}
	// Turn on auth: root, and a user limited to /app/.
	c := admin.Client()
	steps := []func() error{
		func() error { _, err := c.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.UserAdd(ctx, "app", "apppw"); return err },
		func() error { _, err := c.RoleAdd(ctx, "app"); return err },
		func() error {
			_, err := c.RoleGrantPermission(ctx, "app", "/app/", clientv3.GetPrefixRangeEnd("/app/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := c.UserGrantRole(ctx, "app", "app"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("auth setup step %d: %v", i, err)
		}
	}
	withUser := tlsCfg
	withUser.Username, withUser.Password = "app", "apppw"
	app := newStore(t, withUser)
	r, err := app.Create(ctx, "/app/x", []byte("y"))
	if err != nil {
		t.Fatalf("create as app: %v", err)
	}
	// Watching its own range from a revision needs no wider permission.
	ch, err := app.Watch(ctx, "/app/", r-1)
	if err != nil {
		t.Fatalf("watch as app: %v", err)
	}
	if ev := <-ch; ev.Err != nil || ev.Key != "/app/x" {
		t.Fatalf("watch as app: %+v", ev)
	}
	if _, err := app.Create(ctx, "/other/x", nil); err == nil || errors.Is(err, datastore.ErrUnavailable) {
		t.Fatalf("create outside the app's range: %v", err)
	}
	bad := tlsCfg
	bad.Username, bad.Password = "app", "wrong"
	if s, err := etcd.New(ctx, &bad); err == nil {
		s.Close()
		t.Fatal("wrong password accepted")
	} else if errors.Is(err, datastore.ErrUnavailable) {
		t.Fatalf("wrong password reported as %v", err)
	}
	noCert := etcd.Config{Endpoints: srv.Endpoints(), CAFile: srv.CAFile(), RequestTimeout: 2 * time.Second}
	if _, err := newStore(t, noCert).Get(ctx, "/app/x"); err == nil {
		t.Fatal("client without certificate accepted")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []*etcd.Config{
		nil,
		{},
		{Endpoints: []string{"127.0.0.1:1"}, CertFile: "/x"},
		{Endpoints: []string{"127.0.0.1:1"}, Username: "u"},
		{Endpoints: []string{"127.0.0.1:1"}, Prefix: "bad prefix"},
	} {
		if _, err := etcd.New(context.Background(), cfg); !errors.Is(err, datastore.ErrInvalid) {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
	if _, err := etcd.New(context.Background(), &etcd.Config{Endpoints: []string{"127.0.0.1:1"}, CAFile: "/nonexistent/ca.pem"}); err == nil {
		t.Error("missing CA file accepted")
	}
}

// TestUnreachable: nothing listens; every call returns ErrUnavailable by
// the caller's deadline (or RequestTimeout without one) instead of hanging.
func TestUnreachable(t *testing.T) {
	s := newStore(t, etcd.Config{Endpoints: []string{"127.0.0.1:1"}, RequestTimeout: time.Second})
	deadline := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	if _, err := s.Create(deadline(), "/k", nil); !errors.Is(err, datastore.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Create: %v", err)
	}
	if _, err := s.Get(context.Background(), "/k"); !errors.Is(err, datastore.ErrUnavailable) {
		t.Fatalf("Get without a deadline: %v", err)
	}
	if _, _, err := s.List(deadline(), "/"); !errors.Is(err, datastore.ErrUnavailable) {
		t.Fatalf("List: %v", err)
	}
	if _, err := s.Watch(deadline(), "/", 5); !errors.Is(err, datastore.ErrUnavailable) {
		t.Fatalf("Watch: %v", err)
	}
	// With credentials New itself has to reach the server.
	_, err := etcd.New(deadline(), &etcd.Config{Endpoints: []string{"127.0.0.1:1"}, Username: "u", Password: "p"})
	if !errors.Is(err, datastore.ErrUnavailable) {
		t.Fatalf("New with credentials: %v", err)
	}
}

// TestServerRestart: stopping the server makes calls fail with
// ErrUnavailable within their deadline and writes nothing; after a restart
// the same watch goes on delivering.
func TestServerRestart(t *testing.T) {
	srv := etcdtest.New(t, nil)
	s := newStore(t, etcd.Config{Endpoints: srv.Endpoints(), RequestTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r1, err := s.Create(ctx, "/r/a", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	events, err := s.Watch(ctx, "/r/", r1)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Update(ctx, "/r/a", []byte("2"), r1)
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.Revision != r2 {
		t.Fatalf("event %+v", ev)
	}

	srv.Stop()
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = s.Txn(short, datastore.Update("/r/a", []byte("3"), r2), datastore.Create("/r/b", nil))
	cancelShort()
	if !errors.Is(err, datastore.ErrUnavailable) {
		t.Fatalf("Txn with the server stopped: %v", err)
	}
	if _, err := s.Get(ctx, "/r/a"); !errors.Is(err, datastore.ErrUnavailable) {
		t.Fatalf("Get with the server stopped (RequestTimeout): %v", err)
	}

	srv.Restart()
	// Nothing of the failed Txn was written.
	var kv datastore.KV
	for {
		kv, err = s.Get(ctx, "/r/a")
		if err == nil || !errors.Is(err, datastore.ErrUnavailable) {
			break
		}
	}
	if err != nil || string(kv.Value) != "2" || kv.Revision != r2 {
		t.Fatalf("after restart: %+v %v", kv, err)
	}
	if _, err := s.Get(ctx, "/r/b"); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("/r/b: %v", err)
	}
	r3, err := s.Create(ctx, "/r/c", []byte("after"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Err != nil || ev.Key != "/r/c" || ev.Revision != r3 {
			t.Fatalf("event after restart %+v, want /r/c at %d", ev, r3)
		}
	case <-ctx.Done():
		t.Fatal("watch did not resume after the restart")
	}
}

// TestCompactedWhileBehind: a watch from a revision compacted later (while
// it had not yet started delivering) ends with ErrCompacted.
func TestCompactedWhileBehind(t *testing.T) {
	s := newStore(t, etcd.Config{Endpoints: etcdtest.Start(t)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r1, _ := s.Create(ctx, "/c/a", nil)
	for i := 0; i < 5; i++ {
		s.Create(ctx, fmt.Sprintf("/c/%d", i), nil)
	}
	r, _ := s.Create(ctx, "/c/z", nil)
	if err := s.Compact(ctx, r); err != nil {
		t.Fatal(err)
	}
	_, err := s.Watch(ctx, "/c/", r1)
	if !errors.Is(err, datastore.ErrCompacted) {
		t.Fatalf("watch from compacted revision: %v", err)
	}
	// after = 0 means from the first revision, which is gone too.
	ch, err := s.Watch(ctx, "/c/", 0)
	if err != nil {
		t.Fatal(err)
	}
	ev := <-ch
	if !errors.Is(ev.Err, datastore.ErrCompacted) {
		t.Fatalf("watch from 0: %+v", ev)
	}
	if _, ok := <-ch; ok {
		t.Fatal("channel open after ErrCompacted")
	}
}

// TestSlowConsumer: a consumer that stops reading does not make the client
// buffer without bound (the etcd watch is dropped and re-created), and gets
// every event in order when it comes back, or ErrCompacted if etcd
// compacted what it still needed meanwhile.
func TestSlowConsumer(t *testing.T) {
	endpoints := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := newStore(t, etcd.Config{Endpoints: endpoints, WatchBuffer: 1, Prefix: "/slow"})
	_, rev, err := s.List(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(ctx, "/", rev)
	if err != nil {
		t.Fatal(err)
	}
	var revs []int64
	for i := 0; i < 300; i++ {
		r, err := s.Create(ctx, fmt.Sprintf("/k/%03d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, r)
	}
	for i, want := range revs {
		select {
		case ev := <-ch:
			if ev.Err != nil || ev.Revision != want || ev.Key != fmt.Sprintf("/k/%03d", i) {
				t.Fatalf("event %d: %+v, want /k/%03d at %d", i, ev, i, want)
			}
		case <-ctx.Done():
			t.Fatalf("event %d missing", i)
		}
	}

	// Now fall behind and let etcd compact past the consumer's position.
	for i := 0; i < 300; i++ {
		if _, err := s.Create(ctx, fmt.Sprintf("/m/%03d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	last, _ := s.Create(ctx, "/m/last", nil)
	if err := s.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("channel closed without ErrCompacted")
			}
			if ev.Err != nil {
				if !errors.Is(ev.Err, datastore.ErrCompacted) {
					t.Fatalf("watch ended with %v", ev.Err)
				}
				return
			}
			if ev.Key == "/m/last" {
				// Legitimate too: every event had already reached this
				// client in one response before it fell behind.
				t.Log("every event arrived before the compaction")
				return
			}
		case <-ctx.Done():
			t.Fatal("no ErrCompacted")
		}
	}
}
