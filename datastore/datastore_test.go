package datastore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/datastore"
)

func TestValidKey(t *testing.T) {
	for _, k := range []string{"a", "/a/b", "/ipam/v1/blocks/10.244.0.0-26", strings.Repeat("k", 1024)} {
		if !datastore.ValidKey(k) {
			t.Errorf("ValidKey(%q) = false", k)
		}
	}
	for _, k := range []string{"", " ", "/a b", "/a//b", "/a\n", "/é", strings.Repeat("k", 1025)} {
		if datastore.ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
	}
}

func TestValidateOps(t *testing.T) {
	ok := [][]datastore.Op{
		nil,
		{datastore.Create("/a", nil), datastore.Update("/b", []byte("x"), 1), datastore.Delete("/c", 2), datastore.Check("/d", 0)},
	}
	for _, ops := range ok {
		if err := datastore.ValidateOps(ops); err != nil {
			t.Errorf("ValidateOps(%v): %v", ops, err)
		}
	}
	many := make([]datastore.Op, datastore.MaxTxnOps+1)
	for i := range many {
		many[i] = datastore.Check("/k"+strings.Repeat("x", i), 0)
	}
	bad := [][]datastore.Op{
		{{Key: "/a"}},
		{{Type: 99, Key: "/a"}},
		{datastore.Create("", nil)},
		{datastore.Create("/a", make([]byte, datastore.MaxValueSize+1))},
		{datastore.Update("/a", nil, 0)},
		{datastore.Delete("/a", -1)},
		{datastore.Check("/a", -1)},
		{datastore.Create("/a", nil), datastore.Check("/a", 0)},
		many,
	}
	for _, ops := range bad {
		if err := datastore.ValidateOps(ops); !errors.Is(err, datastore.ErrInvalid) {
			t.Errorf("ValidateOps(%d ops starting %+v): %v", len(ops), ops[0], err)
		}
	}
	for _, p := range []string{"", "/", "/a/"} {
		if err := datastore.ValidatePrefix(p); err != nil {
			t.Errorf("ValidatePrefix(%q): %v", p, err)
		}
	}
	for _, p := range []string{" ", "/a b", strings.Repeat("p", 1025)} {
		if err := datastore.ValidatePrefix(p); !errors.Is(err, datastore.ErrInvalid) {
			t.Errorf("ValidatePrefix(%q): %v", p, err)
		}
	}
}
