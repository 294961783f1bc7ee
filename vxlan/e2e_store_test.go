//go:build linux

package vxlan_test

import (
	"context"
	"testing"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/etcd"
	"github.com/tabbynet/tabby/datastore/etcd/etcdtest"
)

// e2eStore starts an embedded etcd and returns a constructor of clients:
// every node gets its own, as real nodes do.
func e2eStore(t *testing.T) func() datastore.Store {
	srv := etcdtest.New(t, nil)
	return func() datastore.Store {
		st, err := etcd.New(context.Background(), &etcd.Config{Endpoints: srv.Endpoints()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
}
