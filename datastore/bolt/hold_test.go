package bolt_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
)

// Operations inside Hold work as outside it; each write is in the file
// when it returns; the store is exclusive to the holder meanwhile.
func TestHold(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tabby.db")
	s, err := bolt.Open(ctx, path, &bolt.Options{NoBackup: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := bolt.Open(ctx, path, &bolt.Options{NoBackup: true, LockTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := s.Create(ctx, "/k/a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	marker := []byte("written-inside-hold-3f9c2e")
	err = s.Hold(ctx, func() error {
		kv, err := s.Get(ctx, "/k/a")
		if err != nil || string(kv.Value) != "a" {
			t.Errorf("get: %v %v", kv, err)
		}
		rev, err := s.Txn(ctx, datastore.Update("/k/a", []byte("b"), kv.Revision), datastore.Create("/k/m", marker))
		if err != nil {
			t.Errorf("txn: %v", err)
		}
		// Committed on its own: in the file now, not at the end of Hold.
		if b, err := os.ReadFile(path); err != nil || !bytes.Contains(b, marker) {
			t.Errorf("the write is not in the file before Hold returns (%v)", err)
		}
		kvs, lrev, err := s.List(ctx, "/k/")
		if err != nil || len(kvs) != 2 || lrev != rev {
			t.Errorf("list: %v rev %d (want %d) %v", kvs, lrev, rev, err)
		}
		if _, err := s.Txn(ctx, datastore.Create("/k/a", nil)); !errors.Is(err, datastore.ErrExists) {
			t.Errorf("create existing: %v, want ErrExists", err)
		}
		// Nested: runs in this Hold.
		if err := s.Hold(ctx, func() error { _, err := s.Get(ctx, "/k/m"); return err }); err != nil {
			t.Errorf("nested hold: %v", err)
		}
		// Another opener waits for the lock until Hold returns.
		if _, err := other.Get(ctx, "/k/a"); !errors.Is(err, datastore.ErrUnavailable) {
			t.Errorf("another store during Hold: %v, want ErrUnavailable", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if kv, err := other.Get(ctx, "/k/a"); err != nil || string(kv.Value) != "b" {
		t.Fatalf("after Hold, the other store reads %v %v", kv, err)
	}
	if err := other.Check(ctx); err != nil {
		t.Fatal(err)
	}
	// fn's error is Hold's.
	boom := errors.New("boom")
	if err := s.Hold(ctx, func() error { return boom }); err != boom {
		t.Fatalf("hold returned %v, want fn's error", err)
	}
	s.Close()
	if err := s.Hold(ctx, func() error { return nil }); !errors.Is(err, datastore.ErrClosed) {
		t.Fatalf("hold after close: %v", err)
	}
}

// A damaged file fails Hold (ErrCorrupt) without running fn; a file
// truncated while held fails the operations inside it, not the process.
func TestHoldCorrupt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good := healthy(t, filepath.Join(dir, "good.db"))
	path := filepath.Join(dir, "tabby.db")
	os.WriteFile(path, good, 0o600)
	s, err := bolt.Open(ctx, path, &bolt.Options{NoSync: true, NoBackup: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Hold(ctx, func() error {
		if err := os.Truncate(path, 4096*3); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.List(ctx, "/k/")
		isCorrupt(t, "list in hold", err)
		_, err = s.Get(ctx, "/k/001")
		isCorrupt(t, "get after the fault", err)
		return nil
	})
	if err != nil {
		t.Fatalf("hold: %v", err)
	}
	ran := false
	err = s.Hold(ctx, func() error { ran = true; return nil })
	isCorrupt(t, "hold on a truncated file", err)
	if ran {
		t.Fatal("fn ran on a damaged file")
	}
}
