package bolt_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/datastore/storetest"
)

var _ storetest.Compacter = (*bolt.Store)(nil)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) datastore.Store {
		s, err := bolt.Open(context.Background(), filepath.Join(t.TempDir(), "tabby.db"), &bolt.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestContractSmallLog(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	storetest.Run(t, func(t *testing.T) datastore.Store {
		s, err := bolt.Open(context.Background(), filepath.Join(t.TempDir(), "tabby.db"),
			&bolt.Options{NoSync: true, LogSize: 500, WatchBuffer: 1})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
