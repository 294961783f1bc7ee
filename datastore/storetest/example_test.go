package storetest_test

import (
	"testing"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/datastore/storetest"
)

// In a store's _test.go file: the whole contract against fresh stores.
func ExampleRun() {
	_ = func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) datastore.Store { return memory.New(nil) })
	}
}

// A longer compare-and-swap race.
func ExampleRunWith() {
	_ = func(t *testing.T) {
		storetest.RunWith(t, &storetest.Options{Workers: 16, Increments: 200},
			func(t *testing.T) datastore.Store { return memory.New(nil) })
	}
}
