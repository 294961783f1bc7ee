package reflector

import (
	"context"
	"testing"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/etcd"
	"github.com/tabbynet/tabby/datastore/etcd/etcdtest"
)

func benchStores() []benchStore {
	return []benchStore{{"memory", memoryBackend}, {"etcd", etcdBackend}}
}

// etcdBackend: an embedded etcd; every node gets its own client.
func etcdBackend(b *testing.B) func() datastore.Store {
	srv := etcdtest.New(b, nil)
	return func() datastore.Store {
		st, err := etcd.New(context.Background(), &etcd.Config{Endpoints: srv.Endpoints()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		return st
	}
}
