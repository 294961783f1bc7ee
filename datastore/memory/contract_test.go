package memory_test

import (
	"testing"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/datastore/storetest"
)

var _ storetest.Compacter = (*memory.Store)(nil)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) datastore.Store { return memory.New(nil) })
}

func TestContractSmallHistory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) datastore.Store {
		return memory.New(&memory.Options{HistorySize: 1000, WatchBuffer: 1})
	})
}
