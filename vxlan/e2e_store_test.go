//go:build linux

package vxlan_test

import (
	"testing"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
)

// e2eStore is the datastore the end-to-end tests share between nodes.
func e2eStore(t *testing.T) datastore.Store {
	st := memory.New(nil)
	t.Cleanup(func() { st.Close() })
	return st
}
