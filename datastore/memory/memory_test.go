package memory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCRUD(t *testing.T) {
	ctx := ctxT(t)
	s := New(nil)
	defer s.Close()
	r1, err := s.Create(ctx, "a/1", []byte("x"))
	if err != nil || r1 != 1 {
		t.Fatalf("create: %d %v", r1, err)
	}
	if _, err := s.Create(ctx, "a/1", nil); !errors.Is(err, datastore.ErrExists) {
		t.Fatalf("create twice: %v", err)
	}
	if _, err := s.Update(ctx, "a/1", []byte("y"), r1+5); !errors.Is(err, datastore.ErrConflict) {
		t.Fatalf("update wrong rev: %v", err)
	}
	if _, err := s.Update(ctx, "a/2", []byte("y"), 1); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	r2, err := s.Update(ctx, "a/1", []byte("y"), r1)
	if err != nil || r2 != 2 {
		t.Fatalf("update: %d %v", r2, err)
	}
	kv, err := s.Get(ctx, "a/1")
	if err != nil || string(kv.Value) != "y" || kv.Revision != 2 {
		t.Fatalf("get: %+v %v", kv, err)
	}
	kv.Value[0] = 'z' // callers own returned slices
	if kv, _ := s.Get(ctx, "a/1"); string(kv.Value) != "y" {
		t.Fatalf("store aliased a returned value: %q", kv.Value)
	}
	if err := s.Delete(ctx, "a/1", r1); !errors.Is(err, datastore.ErrConflict) {
		t.Fatalf("delete wrong rev: %v", err)
	}
	if err := s.Delete(ctx, "a/1", r2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "a/1"); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if _, err := s.Get(ctx, "bad key"); !errors.Is(err, datastore.ErrInvalid) {
		t.Fatalf("bad key: %v", err)
	}
}

func TestTxnAtomic(t *testing.T) {
	ctx := ctxT(t)
	s := New(nil)
	defer s.Close()
	r, _ := s.Create(ctx, "k/a", []byte("1"))
	_, err := s.Txn(ctx, datastore.Create("k/b", nil), datastore.Update("k/a", []byte("2"), r+1))
	if !errors.Is(err, datastore.ErrConflict) {
		t.Fatalf("txn: %v", err)
	}
	if _, err := s.Get(ctx, "k/b"); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("partial txn write: %v", err)
	}
	rev, err := s.Txn(ctx, datastore.Create("k/b", nil), datastore.Update("k/a", []byte("2"), r), datastore.Check("k/c", 0))
	if err != nil || rev != r+1 {
		t.Fatalf("txn: %d %v", rev, err)
	}
	kvs, lrev, err := s.List(ctx, "k/")
	if err != nil || lrev != rev || len(kvs) != 2 || kvs[0].Revision != rev || kvs[1].Revision != rev {
		t.Fatalf("list: %+v %d %v", kvs, lrev, err)
	}
}

func TestListOrderManyKeys(t *testing.T) {
	ctx := ctxT(t)
	s := New(nil)
	defer s.Close()
	const n = 2000
	for i := n - 1; i >= 0; i-- {
		if _, err := s.Create(ctx, fmt.Sprintf("p/%05d", i), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, fmt.Sprintf("q/%05d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 2 {
		kv, _ := s.Get(ctx, fmt.Sprintf("q/%05d", i))
		if err := s.Delete(ctx, kv.Key, kv.Revision); err != nil {
			t.Fatal(err)
		}
	}
	kvs, _, _ := s.List(ctx, "p/")
	if len(kvs) != n {
		t.Fatalf("list p/: %d keys", len(kvs))
	}
	for i, kv := range kvs {
		if kv.Key != fmt.Sprintf("p/%05d", i) {
			t.Fatalf("list[%d] = %s", i, kv.Key)
		}
	}
	kvs, _, _ = s.List(ctx, "q/")
	if len(kvs) != n/2 || kvs[0].Key != "q/00001" {
		t.Fatalf("list q/: %d keys", len(kvs))
	}
	if s.Len() != n+n/2 {
		t.Fatalf("Len %d", s.Len())
	}
}

func TestSlowWatcherCompacted(t *testing.T) {
	ctx := ctxT(t)
	s := New(&Options{HistorySize: 100, WatchBuffer: 1})
	defer s.Close()
	ch, err := s.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ { // never blocks although nobody reads
		if _, err := s.Create(ctx, fmt.Sprintf("k/%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	var last datastore.Event
	n := 0
	for ev := range ch {
		last = ev
		n++
	}
	if !errors.Is(last.Err, datastore.ErrCompacted) {
		t.Fatalf("after %d events: last %+v", n, last)
	}
	if _, err := s.Watch(ctx, "", 1); !errors.Is(err, datastore.ErrCompacted) {
		t.Fatalf("watch from trimmed revision: %v", err)
	}
}

func TestWatchTxnAndClose(t *testing.T) {
	ctx := ctxT(t)
	s := New(nil)
	_, rev, _ := s.List(ctx, "")
	ch, err := s.Watch(ctx, "w/", rev)
	if err != nil {
		t.Fatal(err)
	}
	s.Txn(ctx, datastore.Create("w/a", []byte("a")), datastore.Create("x/b", nil), datastore.Create("w/c", nil))
	for _, want := range []string{"w/a", "w/c"} {
		ev := <-ch
		if ev.Key != want || ev.Revision != 1 || ev.Type != datastore.EventPut {
			t.Fatalf("event %+v, want %s", ev, want)
		}
	}
	s.Close()
	ev, ok := <-ch
	if ok && !errors.Is(ev.Err, datastore.ErrClosed) {
		t.Fatalf("after close: %+v", ev)
	}
	for range ch {
	}
	if _, err := s.Get(ctx, "w/a"); !errors.Is(err, datastore.ErrClosed) {
		t.Fatalf("get after close: %v", err)
	}
}

func TestConcurrentCAS(t *testing.T) {
	ctx := ctxT(t)
	s := New(nil)
	defer s.Close()
	s.Create(ctx, "n", []byte("0"))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				for {
					kv, _ := s.Get(ctx, "n")
					var v int
					fmt.Sscan(string(kv.Value), &v)
					if _, err := s.Update(ctx, "n", []byte(fmt.Sprint(v+1)), kv.Revision); err == nil {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	if kv, _ := s.Get(ctx, "n"); string(kv.Value) != "1600" {
		t.Fatalf("counter %s", kv.Value)
	}
}

// TestTreeModel checks the ordered tree against a map under random
// operations.
func TestTreeModel(t *testing.T) {
	ctx := ctxT(t)
	s := New(&Options{HistorySize: 4})
	defer s.Close()
	model := map[string]int64{}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		key := fmt.Sprintf("m/%03d", r.IntN(300))
		if rev, ok := model[key]; ok {
			if r.IntN(2) == 0 {
				if err := s.Delete(ctx, key, rev); err != nil {
					t.Fatal(err)
				}
				delete(model, key)
			} else {
				nrev, err := s.Update(ctx, key, nil, rev)
				if err != nil {
					t.Fatal(err)
				}
				model[key] = nrev
			}
		} else {
			rev, err := s.Create(ctx, key, nil)
			if err != nil {
				t.Fatal(err)
			}
			model[key] = rev
		}
		if i%500 == 0 {
			kvs, _, _ := s.List(ctx, "m/")
			keys := slices.Sorted(maps.Keys(model))
			if len(kvs) != len(keys) {
				t.Fatalf("step %d: %d keys, model %d", i, len(kvs), len(keys))
			}
			for j, kv := range kvs {
				if kv.Key != keys[j] || kv.Revision != model[kv.Key] {
					t.Fatalf("step %d: list[%d] = %+v, model %s@%d", i, j, kv, keys[j], model[keys[j]])
				}
			}
		}
	}
	if s.Len() != len(model) {
		t.Fatalf("Len %d, model %d", s.Len(), len(model))
	}
}

// TestTrimWholeTransactions: a Txn larger than the history is kept or
// dropped as a unit.
func TestTrimWholeTransactions(t *testing.T) {
	ctx := ctxT(t)
	s := New(&Options{HistorySize: 4})
	defer s.Close()
	var ops []datastore.Op
	for i := 0; i < 10; i++ {
		ops = append(ops, datastore.Create(fmt.Sprintf("t/%d", i), nil))
	}
	rev, _ := s.Txn(ctx, ops...)
	ch, err := s.Watch(ctx, "t/", rev-1)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if ev := <-ch; ev.Revision != rev {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	s.Create(ctx, "x", nil) // trims the 10-event revision
	if _, err := s.Watch(ctx, "t/", rev-1); !errors.Is(err, datastore.ErrCompacted) {
		t.Fatalf("watch from before the trimmed Txn: %v", err)
	}
	if _, err := s.Watch(ctx, "t/", rev); err != nil {
		t.Fatalf("watch from the trimmed Txn's revision: %v", err)
	}
}
