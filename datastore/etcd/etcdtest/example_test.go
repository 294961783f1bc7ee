package etcdtest_test

import (
	"context"
	"testing"

	"github.com/tabbynet/tabby/datastore/etcd"
	"github.com/tabbynet/tabby/datastore/etcd/etcdtest"
)

// In a test: a real etcd for this test only.
func ExampleStart() {
	_ = func(t *testing.T) {
		endpoints := etcdtest.Start(t)
		s, err := etcd.New(context.Background(), &etcd.Config{Endpoints: endpoints})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
	}
}

// Unavailability and reconnection: stop the member, then bring it back on
// the same endpoint with the same data.
func ExampleServer_Restart() {
	_ = func(t *testing.T) {
		srv := etcdtest.New(t, nil)
		s, _ := etcd.New(context.Background(), &etcd.Config{Endpoints: srv.Endpoints()})
		defer s.Close()
		srv.Stop()
		// ... calls fail with datastore.ErrUnavailable ...
		srv.Restart()
		// ... and watches resume.
	}
}
