package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
)

// Compacter is implemented by stores whose history can be discarded on
// demand. After Compact(ctx, rev), a Watch from any revision below rev fails
// with ErrCompacted and a Watch from rev or later works. Run uses it to test
// ErrCompacted; stores without it skip those tests.
type Compacter interface {
	Compact(ctx context.Context, rev int64) error
}

// Options tunes RunWith. A nil *Options means defaults. It is a plain value.
type Options struct {
	// Workers and Increments size the compare-and-swap race: Workers
	// goroutines each add Increments to one counter (defaults 8 and 50).
	Workers, Increments int
	// Timeout bounds each subtest (default 60s). It is a deadline against
	// hangs, not a performance threshold.
	Timeout time.Duration
	// LeaseTTL is the TTL the lease tests grant (default 2s, etcd's
	// usual minimum). They run only on stores that implement
	// datastore.Leaser.
	LeaseTTL time.Duration
}

// Run runs the contract suite. newStore returns a fresh, empty-looking store
// (it may share a server with other stores as long as keys do not collide)
// and arranges its own cleanup with t.Cleanup; Run closes the store too and
// accepts ErrClosed from that second Close.
func Run(t *testing.T, newStore func(t *testing.T) datastore.Store) {
	RunWith(t, nil, newStore)
}

// RunWith is Run with options.
func RunWith(t *testing.T, opts *Options, newStore func(t *testing.T) datastore.Store) {
	o := Options{Workers: 8, Increments: 50, Timeout: 60 * time.Second, LeaseTTL: 2 * time.Second}
	if opts != nil {
		if opts.LeaseTTL > 0 {
			o.LeaseTTL = opts.LeaseTTL
		}
		if opts.Workers > 0 {
			o.Workers = opts.Workers
		}
		if opts.Increments > 0 {
			o.Increments = opts.Increments
		}
		if opts.Timeout > 0 {
			o.Timeout = opts.Timeout
		}
	}
	tests := []struct {
		name string
		fn   func(*testing.T, context.Context, datastore.Store, Options)
	}{
		{"GetMissing", testGetMissing},
		{"CreateGet", testCreateGet},
		{"CreateExists", testCreateExists},
		{"Update", testUpdate},
		{"Delete", testDelete},
		{"InvalidInput", testInvalid},
		{"ValueCopied", testValueCopied},
		{"List", testList},
		{"TxnCommit", testTxnCommit},
		{"TxnAtomic", testTxnAtomic},
		{"TxnChecksOnly", testTxnChecksOnly},
		{"CASRace", testCASRace},
		{"CreateRace", testCreateRace},
		{"TxnRace", testTxnRace},
		{"WatchOrder", testWatchOrder},
		{"WatchFromHistory", testWatchFromHistory},
		{"WatchCancel", testWatchCancel},
		{"ListThenWatch", testListThenWatch},
		{"Compacted", testCompacted},
		{"CanceledContext", testCanceledContext},
		{"Close", testClose},
		{"LeaseExpire", testLeaseExpire},
		{"LeaseKeepAlive", testLeaseKeepAlive},
		{"LeaseRevoke", testLeaseRevoke},
		{"LeaseDetach", testLeaseDetach},
		{"LeaseInvalid", testLeaseInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
			defer cancel()
			s := newStore(t)
			defer func() {
				if err := s.Close(); err != nil && !errors.Is(err, datastore.ErrClosed) {
					t.Errorf("Close: %v", err)
				}
			}()
			tc.fn(t, ctx, s, o)
		})
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func must[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

func testGetMissing(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	_, err := s.Get(ctx, "/st/missing")
	wantErr(t, "Get missing", err, datastore.ErrNotFound)
	kvs, rev, err := s.List(ctx, "/st/")
	if err != nil || len(kvs) != 0 || rev < 0 {
		t.Fatalf("List empty: %v %d %v", kvs, rev, err)
	}
}

func testCreateGet(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	_, before, _ := s.List(ctx, "/st/")
	rev := must[int64](t, "Create")(s.Create(ctx, "/st/a", []byte("hello")))
	if rev <= before {
		t.Fatalf("Create revision %d not after %d", rev, before)
	}
	kv := must[datastore.KV](t, "Get")(s.Get(ctx, "/st/a"))
	if kv.Key != "/st/a" || string(kv.Value) != "hello" || kv.Revision != rev {
		t.Fatalf("Get = %+v, want value hello at %d", kv, rev)
	}
	rev2 := must[int64](t, "Create empty")(s.Create(ctx, "/st/empty", nil))
	if rev2 <= rev {
		t.Fatalf("revisions not increasing: %d then %d", rev, rev2)
	}
	kv = must[datastore.KV](t, "Get empty")(s.Get(ctx, "/st/empty"))
	if len(kv.Value) != 0 || kv.Revision != rev2 {
		t.Fatalf("Get empty = %+v", kv)
	}
	big := bytes.Repeat([]byte{'x'}, datastore.MaxValueSize)
	must[int64](t, "Create MaxValueSize")(s.Create(ctx, "/st/big", big))
	kv = must[datastore.KV](t, "Get big")(s.Get(ctx, "/st/big"))
	if !bytes.Equal(kv.Value, big) {
		t.Fatalf("big value changed (%d bytes)", len(kv.Value))
	}
}

func testCreateExists(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	rev := must[int64](t, "Create")(s.Create(ctx, "/st/a", []byte("1")))
	_, err := s.Create(ctx, "/st/a", []byte("2"))
	wantErr(t, "Create twice", err, datastore.ErrExists)
	kv := must[datastore.KV](t, "Get")(s.Get(ctx, "/st/a"))
	if string(kv.Value) != "1" || kv.Revision != rev {
		t.Fatalf("failed Create changed the key: %+v", kv)
	}
}

func testUpdate(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	r1 := must[int64](t, "Create")(s.Create(ctx, "/st/a", []byte("1")))
	_, err := s.Update(ctx, "/st/a", []byte("x"), r1+1000)
	wantErr(t, "Update wrong revision", err, datastore.ErrConflict)
	_, err = s.Update(ctx, "/st/nope", []byte("x"), r1)
	wantErr(t, "Update missing", err, datastore.ErrNotFound)
	r2 := must[int64](t, "Update")(s.Update(ctx, "/st/a", []byte("2"), r1))
	if r2 <= r1 {
		t.Fatalf("Update revision %d not after %d", r2, r1)
	}
	_, err = s.Update(ctx, "/st/a", []byte("x"), r1)
	wantErr(t, "Update stale revision", err, datastore.ErrConflict)
	kv := must[datastore.KV](t, "Get")(s.Get(ctx, "/st/a"))
	if string(kv.Value) != "2" || kv.Revision != r2 {
		t.Fatalf("Get after Update = %+v, want 2 at %d", kv, r2)
	}
}

func testDelete(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	r1 := must[int64](t, "Create")(s.Create(ctx, "/st/a", []byte("1")))
	wantErr(t, "Delete wrong revision", s.Delete(ctx, "/st/a", r1+1000), datastore.ErrConflict)
	wantErr(t, "Delete missing", s.Delete(ctx, "/st/nope", r1), datastore.ErrNotFound)
	if err := s.Delete(ctx, "/st/a", r1); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := s.Get(ctx, "/st/a")
	wantErr(t, "Get deleted", err, datastore.ErrNotFound)
	wantErr(t, "Delete twice", s.Delete(ctx, "/st/a", r1), datastore.ErrNotFound)
	r2 := must[int64](t, "Create again")(s.Create(ctx, "/st/a", []byte("2")))
	if r2 <= r1 {
		t.Fatalf("re-created key has revision %d, not after %d", r2, r1)
	}
}

func testInvalid(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	r := must[int64](t, "Create")(s.Create(ctx, "/st/a", []byte("1")))
	for _, key := range []string{"", "/st/with space", "/st/tab\t", "/st//double", "/st/é"} {
		_, err := s.Get(ctx, key)
		wantErr(t, fmt.Sprintf("Get(%q)", key), err, datastore.ErrInvalid)
		_, err = s.Create(ctx, key, nil)
		wantErr(t, fmt.Sprintf("Create(%q)", key), err, datastore.ErrInvalid)
		_, err = s.Update(ctx, key, nil, r)
		wantErr(t, fmt.Sprintf("Update(%q)", key), err, datastore.ErrInvalid)
		wantErr(t, fmt.Sprintf("Delete(%q)", key), s.Delete(ctx, key, r), datastore.ErrInvalid)
	}
	_, err := s.Update(ctx, "/st/a", nil, 0)
	wantErr(t, "Update revision 0", err, datastore.ErrInvalid)
	wantErr(t, "Delete revision -1", s.Delete(ctx, "/st/a", -1), datastore.ErrInvalid)
	_, err = s.Create(ctx, "/st/huge", make([]byte, datastore.MaxValueSize+1))
	wantErr(t, "Create too large", err, datastore.ErrInvalid)
	_, err = s.Txn(ctx, datastore.Create("/st/x", nil), datastore.Create("/st/x", nil))
	wantErr(t, "Txn duplicate key", err, datastore.ErrInvalid)
	_, err = s.Txn(ctx, datastore.Create("/st/y", nil), datastore.Op{Key: "/st/z"})
	wantErr(t, "Txn zero OpType", err, datastore.ErrInvalid)
	var many []datastore.Op
	for i := 0; i <= datastore.MaxTxnOps; i++ {
		many = append(many, datastore.Create(fmt.Sprintf("/st/many/%d", i), nil))
	}
	_, err = s.Txn(ctx, many...)
	wantErr(t, "Txn with MaxTxnOps+1 ops", err, datastore.ErrInvalid)
	if _, err := s.Txn(ctx, many[:datastore.MaxTxnOps]...); err != nil {
		t.Fatalf("Txn with MaxTxnOps ops: %v", err)
	}
	_, err = s.Txn(ctx, datastore.Check("/st/y", -1))
	wantErr(t, "Check revision -1", err, datastore.ErrInvalid)
	_, _, err = s.List(ctx, "/st/with space")
	wantErr(t, "List bad prefix", err, datastore.ErrInvalid)
	_, err = s.Watch(ctx, "/st/with space", 0)
	wantErr(t, "Watch bad prefix", err, datastore.ErrInvalid)
	_, err = s.Watch(ctx, "/st/", -1)
	wantErr(t, "Watch revision -1", err, datastore.ErrInvalid)
	for _, key := range []string{"/st/x", "/st/y", "/st/z", "/st/huge"} {
		if _, err := s.Get(ctx, key); !errors.Is(err, datastore.ErrNotFound) {
			t.Fatalf("invalid input wrote %s: %v", key, err)
		}
	}
	kv := must[datastore.KV](t, "Get")(s.Get(ctx, "/st/a"))
	if kv.Revision != r {
		t.Fatalf("invalid input changed /st/a: %+v", kv)
	}
}

func testValueCopied(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	v := []byte("abc")
	must[int64](t, "Create")(s.Create(ctx, "/st/a", v))
	v[0] = 'X'
	kv := must[datastore.KV](t, "Get")(s.Get(ctx, "/st/a"))
	if string(kv.Value) != "abc" {
		t.Fatalf("store kept the caller's slice: %q", kv.Value)
	}
	kv.Value[0] = 'Y'
	kv = must[datastore.KV](t, "Get")(s.Get(ctx, "/st/a"))
	if string(kv.Value) != "abc" {
		t.Fatalf("store returned its own slice: %q", kv.Value)
	}
}

func testList(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	keys := []string{"/st/l/b", "/st/l/a", "/st/l/c/d", "/st/m/a", "/st/l-x", "/st/la"}
	var last int64
	for _, k := range keys {
		last = must[int64](t, "Create")(s.Create(ctx, k, []byte(k)))
	}
	kvs, rev, err := s.List(ctx, "/st/l/")
	if err != nil {
		t.Fatal(err)
	}
	if rev < last {
		t.Fatalf("List revision %d before last write %d", rev, last)
	}
	var got []string
	for _, kv := range kvs {
		got = append(got, kv.Key)
		if string(kv.Value) != kv.Key || kv.Revision < 1 || kv.Revision > rev {
			t.Fatalf("List entry %+v", kv)
		}
	}
	if want := []string{"/st/l/a", "/st/l/b", "/st/l/c/d"}; !slices.Equal(got, want) {
		t.Fatalf("List(/st/l/) = %v, want %v", got, want)
	}
	kvs, _, _ = s.List(ctx, "/st/")
	if len(kvs) != len(keys) || !slices.IsSortedFunc(kvs, func(a, b datastore.KV) int {
		return bytes.Compare([]byte(a.Key), []byte(b.Key))
	}) {
		t.Fatalf("List(/st/) = %v", kvs)
	}
	kvs, _, _ = s.List(ctx, "/st/l/c/d")
	if len(kvs) != 1 {
		t.Fatalf("List(exact key) = %v", kvs)
	}
	kvs, _, _ = s.List(ctx, "/st/nothing/")
	if len(kvs) != 0 {
		t.Fatalf("List(nothing) = %v", kvs)
	}
	// The empty prefix lists everything (the store may hold other keys).
	all, _, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List(\"\"): %v", err)
	}
	n := 0
	for _, kv := range all {
		if strings.HasPrefix(kv.Key, "/st/") {
			n++
		}
	}
	if n != len(keys) || !slices.IsSortedFunc(all, func(a, b datastore.KV) int { return strings.Compare(a.Key, b.Key) }) {
		t.Fatalf("List(\"\") = %v", all)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(wctx, "", last)
	if err != nil {
		t.Fatalf("Watch(\"\"): %v", err)
	}
	r := must[int64](t, "Create")(s.Create(ctx, "/st/zz", nil))
	for {
		ev := next(t, ctx, ch)
		if ev.Err != nil {
			t.Fatalf("Watch(\"\"): %v", ev.Err)
		}
		if ev.Key == "/st/zz" && ev.Revision == r {
			break
		}
	}
}

func testTxnCommit(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	ra := must[int64](t, "Create a")(s.Create(ctx, "/st/a", []byte("a")))
	rb := must[int64](t, "Create b")(s.Create(ctx, "/st/b", []byte("b")))
	rev, err := s.Txn(ctx,
		datastore.Create("/st/c", []byte("c")),
		datastore.Update("/st/a", []byte("a2"), ra),
		datastore.Delete("/st/b", rb),
		datastore.Check("/st/d", 0))
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	if rev <= rb {
		t.Fatalf("Txn revision %d not after %d", rev, rb)
	}
	kvs, lrev, _ := s.List(ctx, "/st/")
	if lrev < rev || len(kvs) != 2 || kvs[0].Key != "/st/a" || string(kvs[0].Value) != "a2" ||
		kvs[1].Key != "/st/c" || kvs[0].Revision != rev || kvs[1].Revision != rev {
		t.Fatalf("after Txn at %d: %+v (list revision %d)", rev, kvs, lrev)
	}
	rev2, err := s.Txn(ctx, datastore.Check("/st/a", rev), datastore.Update("/st/c", []byte("c2"), rev))
	if err != nil || rev2 <= rev {
		t.Fatalf("second Txn: %d %v", rev2, err)
	}
	rev3, err := s.Txn(ctx)
	if err != nil || rev3 < rev2 {
		t.Fatalf("empty Txn: %d %v", rev3, err)
	}
}

func testTxnAtomic(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	ra := must[int64](t, "Create a")(s.Create(ctx, "/st/a", []byte("a")))
	snapshot := func() []datastore.KV {
		kvs, _, err := s.List(ctx, "/st/")
		if err != nil {
			t.Fatal(err)
		}
		return kvs
	}
	before := snapshot()
	cases := []struct {
		name string
		ops  []datastore.Op
		want error
	}{
		{"create existing", []datastore.Op{datastore.Create("/st/n", nil), datastore.Create("/st/a", nil)}, datastore.ErrExists},
		{"update stale", []datastore.Op{datastore.Create("/st/n", nil), datastore.Update("/st/a", nil, ra+1000)}, datastore.ErrConflict},
		{"update missing", []datastore.Op{datastore.Create("/st/n", nil), datastore.Update("/st/m", nil, ra)}, datastore.ErrConflict},
		{"delete stale", []datastore.Op{datastore.Update("/st/a", []byte("z"), ra), datastore.Delete("/st/a2", ra)}, datastore.ErrConflict},
		{"delete missing", []datastore.Op{datastore.Create("/st/n", nil), datastore.Delete("/st/m", ra)}, datastore.ErrConflict},
		{"check absent fails", []datastore.Op{datastore.Create("/st/n", nil), datastore.Check("/st/a", 0)}, datastore.ErrConflict},
		{"check revision fails", []datastore.Op{datastore.Create("/st/n", nil), datastore.Check("/st/a", ra+1000)}, datastore.ErrConflict},
		{"check present fails", []datastore.Op{datastore.Create("/st/n", nil), datastore.Check("/st/m", ra)}, datastore.ErrConflict},
	}
	for _, c := range cases {
		_, err := s.Txn(ctx, c.ops...)
		wantErr(t, "Txn "+c.name, err, c.want)
		if after := snapshot(); !equalKVs(before, after) {
			t.Fatalf("failed Txn %q wrote: before %v after %v", c.name, before, after)
		}
	}
}

func equalKVs(a, b []datastore.KV) bool {
	return slices.EqualFunc(a, b, func(x, y datastore.KV) bool {
		return x.Key == y.Key && x.Revision == y.Revision && bytes.Equal(x.Value, y.Value)
	})
}

func testTxnChecksOnly(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	ra := must[int64](t, "Create")(s.Create(ctx, "/st/a", nil))
	rev, err := s.Txn(ctx, datastore.Check("/st/a", ra), datastore.Check("/st/b", 0))
	if err != nil {
		t.Fatalf("check-only Txn: %v", err)
	}
	if rev < ra {
		t.Fatalf("check-only Txn revision %d before %d", rev, ra)
	}
	kv := must[datastore.KV](t, "Get")(s.Get(ctx, "/st/a"))
	if kv.Revision != ra {
		t.Fatalf("check-only Txn modified /st/a: %+v", kv)
	}
}

// increment adds one to the decimal counter at key with a CAS retry loop.
func increment(ctx context.Context, s datastore.Store, key string) error {
	for {
		kv, err := s.Get(ctx, key)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(string(kv.Value))
		if err != nil {
			return err
		}
		_, err = s.Update(ctx, key, []byte(strconv.Itoa(n+1)), kv.Revision)
		if err == nil {
			return nil
		}
		if !errors.Is(err, datastore.ErrConflict) {
			return err
		}
	}
}

func testCASRace(t *testing.T, ctx context.Context, s datastore.Store, o Options) {
	must[int64](t, "Create")(s.Create(ctx, "/st/counter", []byte("0")))
	var wg sync.WaitGroup
	errs := make(chan error, o.Workers)
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < o.Increments; i++ {
				if err := increment(ctx, s, "/st/counter"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("increment: %v", err)
	}
	kv := must[datastore.KV](t, "Get")(s.Get(ctx, "/st/counter"))
	if want := strconv.Itoa(o.Workers * o.Increments); string(kv.Value) != want {
		t.Fatalf("counter = %s, want %s", kv.Value, want)
	}
}

func testCreateRace(t *testing.T, ctx context.Context, s datastore.Store, o Options) {
	for round := 0; round < 5; round++ {
		key := fmt.Sprintf("/st/race/%d", round)
		var wg sync.WaitGroup
		results := make(chan error, o.Workers)
		for w := 0; w < o.Workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Create(ctx, key, []byte(strconv.Itoa(w)))
				results <- err
			}()
		}
		wg.Wait()
		close(results)
		won := 0
		for err := range results {
			switch {
			case err == nil:
				won++
			case errors.Is(err, datastore.ErrExists):
			default:
				t.Fatalf("Create race: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("Create race on %s: %d winners", key, won)
		}
	}
}

// testTxnRace moves tokens between two keys with transactions; the total
// never changes.
func testTxnRace(t *testing.T, ctx context.Context, s datastore.Store, o Options) {
	const total = 1000
	must[int64](t, "Txn")(s.Txn(ctx, datastore.Create("/st/x", []byte(strconv.Itoa(total))), datastore.Create("/st/y", []byte("0"))))
	var wg sync.WaitGroup
	errs := make(chan error, o.Workers)
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < o.Increments; {
				kvs, _, err := s.List(ctx, "/st/")
				if err != nil {
					errs <- err
					return
				}
				x, _ := strconv.Atoi(string(kvs[0].Value))
				y, _ := strconv.Atoi(string(kvs[1].Value))
				from, to := 0, 1
				if w%2 == 1 {
					from, to = 1, 0
				}
				vals := [2]int{x, y}
				if vals[from] == 0 {
					from, to = to, from
				}
				vals[from]--
				vals[to]++
				_, err = s.Txn(ctx,
					datastore.Update(kvs[0].Key, []byte(strconv.Itoa(vals[0])), kvs[0].Revision),
					datastore.Update(kvs[1].Key, []byte(strconv.Itoa(vals[1])), kvs[1].Revision))
				if errors.Is(err, datastore.ErrConflict) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				i++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Txn: %v", err)
	}
	kvs, _, _ := s.List(ctx, "/st/")
	x, _ := strconv.Atoi(string(kvs[0].Value))
	y, _ := strconv.Atoi(string(kvs[1].Value))
	if x+y != total || kvs[0].Revision != kvs[1].Revision {
		t.Fatalf("after racing Txns: %+v (sum %d)", kvs, x+y)
	}
}

// next reads one event or fails the test when the deadline passes.
func next(t *testing.T, ctx context.Context, ch <-chan datastore.Event) datastore.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatalf("watch channel closed")
		}
		return ev
	case <-ctx.Done():
		t.Fatalf("no watch event before the deadline")
	}
	return datastore.Event{}
}

func testWatchOrder(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	_, rev, err := s.List(ctx, "/st/w/")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(wctx, "/st/w/", rev)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		typ   datastore.EventType
		key   string
		value string
		rev   int64
	}
	var wants []want
	r1 := must[int64](t, "Create")(s.Create(ctx, "/st/w/a", []byte("1")))
	wants = append(wants, want{datastore.EventPut, "/st/w/a", "1", r1})
	must[int64](t, "Create outside")(s.Create(ctx, "/st/other", []byte("x")))
	r2 := must[int64](t, "Update")(s.Update(ctx, "/st/w/a", []byte("2"), r1))
	wants = append(wants, want{datastore.EventPut, "/st/w/a", "2", r2})
	r3 := must[int64](t, "Txn")(s.Txn(ctx,
		datastore.Create("/st/w/b", []byte("b")),
		datastore.Create("/st/x", nil),
		datastore.Delete("/st/w/a", r2)))
	wants = append(wants, want{datastore.EventPut, "/st/w/b", "b", r3}, want{datastore.EventDelete, "/st/w/a", "", r3})
	for i := 0; i < 20; i++ {
		r := must[int64](t, "Create")(s.Create(ctx, fmt.Sprintf("/st/w/n%02d", i), []byte{byte(i)}))
		wants = append(wants, want{datastore.EventPut, fmt.Sprintf("/st/w/n%02d", i), string([]byte{byte(i)}), r})
	}
	var lastRev int64
	var txnEvents []want
	for i, w := range wants {
		ev := next(t, ctx, ch)
		if ev.Err != nil {
			t.Fatalf("event %d: %v", i, ev.Err)
		}
		if ev.Revision < lastRev {
			t.Fatalf("event %d revision %d after %d", i, ev.Revision, lastRev)
		}
		lastRev = ev.Revision
		got := want{ev.Type, ev.Key, string(ev.Value), ev.Revision}
		if ev.Type == datastore.EventDelete {
			got.value = ""
		}
		if w.rev == r3 {
			// The order of changes within one transaction is not part of
			// the contract; collect them.
			txnEvents = append(txnEvents, got)
			continue
		}
		if got != w {
			t.Fatalf("event %d = %+v, want %+v", i, got, w)
		}
	}
	if len(txnEvents) != 2 || !slices.Contains(txnEvents, wants[2]) || !slices.Contains(txnEvents, wants[3]) {
		t.Fatalf("Txn events %+v, want %+v", txnEvents, wants[2:4])
	}
	select {
	case ev := <-ch:
		t.Fatalf("unexpected event %+v", ev)
	default:
	}
}

func testWatchFromHistory(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	r1 := must[int64](t, "Create")(s.Create(ctx, "/st/h/a", []byte("1")))
	r2 := must[int64](t, "Update")(s.Update(ctx, "/st/h/a", []byte("2"), r1))
	r3 := must[int64](t, "Create")(s.Create(ctx, "/st/h/b", []byte("3")))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(wctx, "/st/h/", r1)
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ctx, ch); ev.Revision != r2 || string(ev.Value) != "2" {
		t.Fatalf("first event %+v, want rev %d", ev, r2)
	}
	if ev := next(t, ctx, ch); ev.Revision != r3 || ev.Key != "/st/h/b" {
		t.Fatalf("second event %+v, want rev %d", ev, r3)
	}
	// A watch from the future sees only later changes.
	ch2, err := s.Watch(wctx, "/st/h/", r3)
	if err != nil {
		t.Fatal(err)
	}
	r4 := must[int64](t, "Create")(s.Create(ctx, "/st/h/c", nil))
	if ev := next(t, ctx, ch2); ev.Revision != r4 || ev.Key != "/st/h/c" {
		t.Fatalf("event %+v, want /st/h/c at %d", ev, r4)
	}
}

func testWatchCancel(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	wctx, cancel := context.WithCancel(ctx)
	ch, err := s.Watch(wctx, "/st/", 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if ev.Err != nil && !errors.Is(ev.Err, context.Canceled) {
				t.Fatalf("canceled watch: %v", ev.Err)
			}
		case <-ctx.Done():
			t.Fatal("watch channel not closed after its context was canceled")
		}
	}
}

// testListThenWatch: writers change keys while a reader lists, then watches
// from the list revision and applies the events; at the end its view equals
// a fresh List.
func testListThenWatch(t *testing.T, ctx context.Context, s datastore.Store, o Options) {
	for i := 0; i < 10; i++ {
		must[int64](t, "Create")(s.Create(ctx, fmt.Sprintf("/st/lw/%d", i), []byte("0")))
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// At most 40 writes each, so that a store with a small history
			// does not compact under the watcher.
			for i := 0; i < 40; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("/st/lw/%d", (w*7+i)%12)
				kv, err := s.Get(ctx, key)
				switch {
				case errors.Is(err, datastore.ErrNotFound):
					s.Create(ctx, key, []byte("new"))
				case err != nil:
					return
				case i%5 == 0:
					s.Delete(ctx, key, kv.Revision)
				default:
					s.Update(ctx, key, []byte(strconv.Itoa(i)), kv.Revision)
				}
			}
		}()
	}
	kvs, rev, err := s.List(ctx, "/st/lw/")
	if err != nil {
		t.Fatal(err)
	}
	view := map[string]string{}
	for _, kv := range kvs {
		view[kv.Key] = string(kv.Value)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(wctx, "/st/lw/", rev)
	if err != nil {
		t.Fatal(err)
	}
	// Let the writers run a little longer, then stop them and mark the end.
	for i := 0; i < 50; i++ {
		s.Get(ctx, "/st/lw/0")
	}
	close(stop)
	wg.Wait()
	end := must[int64](t, "Create marker")(s.Create(ctx, "/st/lw/zz-end", nil))
	for {
		ev := next(t, ctx, ch)
		if ev.Err != nil {
			t.Fatalf("watch: %v", ev.Err)
		}
		if ev.Revision <= rev {
			t.Fatalf("event %+v at or before the list revision %d", ev, rev)
		}
		if ev.Key == "/st/lw/zz-end" {
			if ev.Revision != end {
				t.Fatalf("marker at %d, want %d", ev.Revision, end)
			}
			break
		}
		switch ev.Type {
		case datastore.EventPut:
			view[ev.Key] = string(ev.Value)
		case datastore.EventDelete:
			if _, ok := view[ev.Key]; !ok {
				t.Fatalf("delete of %s which the view does not have", ev.Key)
			}
			delete(view, ev.Key)
		default:
			t.Fatalf("event %+v", ev)
		}
	}
	kvs, _, _ = s.List(ctx, "/st/lw/")
	want := map[string]string{}
	for _, kv := range kvs {
		if kv.Key != "/st/lw/zz-end" {
			want[kv.Key] = string(kv.Value)
		}
	}
	if fmt.Sprint(view) != fmt.Sprint(want) {
		t.Fatalf("list+watch view %v, want %v", view, want)
	}
}

func testCompacted(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	c, ok := s.(Compacter)
	if !ok {
		t.Skip("store does not implement storetest.Compacter")
	}
	r1 := must[int64](t, "Create")(s.Create(ctx, "/st/c/a", nil))
	r2 := must[int64](t, "Create")(s.Create(ctx, "/st/c/b", nil))
	r3 := must[int64](t, "Create")(s.Create(ctx, "/st/c/c", nil))
	if err := c.Compact(ctx, r2); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(wctx, "/st/c/", r1)
	if err == nil {
		ev := next(t, ctx, ch)
		err = ev.Err
	}
	wantErr(t, "Watch from compacted revision", err, datastore.ErrCompacted)
	ch, err = s.Watch(wctx, "/st/c/", r2)
	if err != nil {
		t.Fatalf("Watch from compaction revision: %v", err)
	}
	if ev := next(t, ctx, ch); ev.Err != nil || ev.Revision != r3 || ev.Key != "/st/c/c" {
		t.Fatalf("event %+v, want /st/c/c at %d", ev, r3)
	}
	// The data itself is untouched.
	kvs, _, _ := s.List(ctx, "/st/c/")
	if len(kvs) != 3 {
		t.Fatalf("List after Compact: %v", kvs)
	}
}

func testCanceledContext(t *testing.T, _ context.Context, s datastore.Store, _ Options) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Create(ctx, "/st/a", nil); err == nil {
		t.Fatal("Create with a canceled context succeeded")
	}
	if _, err := s.Txn(ctx, datastore.Create("/st/b", nil)); err == nil {
		t.Fatal("Txn with a canceled context succeeded")
	}
	live, done := context.WithTimeout(context.Background(), 30*time.Second)
	defer done()
	for _, key := range []string{"/st/a", "/st/b"} {
		if _, err := s.Get(live, key); !errors.Is(err, datastore.ErrNotFound) {
			t.Fatalf("canceled write left %s: %v", key, err)
		}
	}
}

func testClose(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	r := must[int64](t, "Create")(s.Create(ctx, "/st/a", nil))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(wctx, "/st/", r)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				goto closed
			}
			if ev.Err == nil {
				t.Fatalf("event after Close: %+v", ev)
			}
		case <-ctx.Done():
			t.Fatal("watch channel not closed after Close")
		}
	}
closed:
	_, err = s.Get(ctx, "/st/a")
	wantErr(t, "Get after Close", err, datastore.ErrClosed)
	_, _, err = s.List(ctx, "/st/")
	wantErr(t, "List after Close", err, datastore.ErrClosed)
	_, err = s.Create(ctx, "/st/b", nil)
	wantErr(t, "Create after Close", err, datastore.ErrClosed)
	_, err = s.Update(ctx, "/st/a", nil, r)
	wantErr(t, "Update after Close", err, datastore.ErrClosed)
	wantErr(t, "Delete after Close", s.Delete(ctx, "/st/a", r), datastore.ErrClosed)
	_, err = s.Txn(ctx, datastore.Create("/st/b", nil))
	wantErr(t, "Txn after Close", err, datastore.ErrClosed)
	_, err = s.Watch(ctx, "/st/", 0)
	wantErr(t, "Watch after Close", err, datastore.ErrClosed)
	wantErr(t, "Close twice", s.Close(), datastore.ErrClosed)
}

func leaser(t *testing.T, s datastore.Store) datastore.Leaser {
	t.Helper()
	l, ok := s.(datastore.Leaser)
	if !ok {
		t.Skipf("%T does not implement datastore.Leaser", s)
	}
	return l
}

// testLeaseExpire: a key attached to a lease that is not kept alive
// vanishes after the TTL, with one delete event; keys without the lease
// stay; the lease is gone.
func testLeaseExpire(t *testing.T, ctx context.Context, s datastore.Store, o Options) {
	l := leaser(t, s)
	id := must[datastore.LeaseID](t, "Grant")(l.Grant(ctx, o.LeaseTTL))
	if id == 0 {
		t.Fatal("Grant returned lease 0")
	}
	must[int64](t, "Create leased")(s.Txn(ctx, datastore.CreateWithLease("/lx/leased", []byte("v"), id)))
	rev := must[int64](t, "Create plain")(s.Create(ctx, "/lx/plain", []byte("p")))
	events, err := s.Watch(ctx, "/lx/", rev)
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, ctx, events)
	if ev.Err != nil || ev.Type != datastore.EventDelete || ev.Key != "/lx/leased" || ev.Revision <= rev {
		t.Fatalf("after the TTL: event %+v, want delete of /lx/leased after revision %d", ev, rev)
	}
	_, err = s.Get(ctx, "/lx/leased")
	wantErr(t, "Get expired key", err, datastore.ErrNotFound)
	must[datastore.KV](t, "Get plain key")(s.Get(ctx, "/lx/plain"))
	wantErr(t, "KeepAlive expired lease", l.KeepAlive(ctx, id), datastore.ErrLeaseNotFound)
	_, err = s.Txn(ctx, datastore.CreateWithLease("/lx/again", nil, id))
	wantErr(t, "Create with expired lease", err, datastore.ErrLeaseNotFound)
	_, err = s.Get(ctx, "/lx/again")
	wantErr(t, "Get after refused create", err, datastore.ErrNotFound)
}

// testLeaseKeepAlive: a lease kept alive outlives several TTLs, and keeping
// it alive is not a write: the key's revision does not move and watchers see
// nothing.
func testLeaseKeepAlive(t *testing.T, ctx context.Context, s datastore.Store, o Options) {
	l := leaser(t, s)
	id := must[datastore.LeaseID](t, "Grant")(l.Grant(ctx, o.LeaseTTL))
	rev := must[int64](t, "Create")(s.Txn(ctx, datastore.CreateWithLease("/lk/key", []byte("v"), id)))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := s.Watch(wctx, "/lk/", rev)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(3 * o.LeaseTTL)
	for time.Now().Before(end) {
		if err := l.KeepAlive(ctx, id); err != nil {
			t.Fatalf("KeepAlive: %v", err)
		}
		time.Sleep(o.LeaseTTL / 5)
	}
	kv := must[datastore.KV](t, "Get after keep-alives")(s.Get(ctx, "/lk/key"))
	if kv.Revision != rev {
		t.Fatalf("keep-alives moved the key from revision %d to %d", rev, kv.Revision)
	}
	// A marker write proves the watch is live; nothing may precede it.
	must[int64](t, "Create marker")(s.Create(ctx, "/lk/marker", nil))
	if ev := next(t, ctx, events); ev.Key != "/lk/marker" {
		t.Fatalf("watch saw %+v before the marker: keep-alive is not a write", ev)
	}
	must[int64](t, "Update keeping the lease")(s.Txn(ctx, datastore.UpdateWithLease("/lk/key", []byte("w"), kv.Revision, id)))
	if err := l.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(ctx, "/lk/key")
	wantErr(t, "Get after Revoke", err, datastore.ErrNotFound)
}

// testLeaseRevoke: Revoke deletes every attached key at one revision.
func testLeaseRevoke(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	l := leaser(t, s)
	// A long TTL: only Revoke may end this lease during the test.
	id := must[datastore.LeaseID](t, "Grant")(l.Grant(ctx, time.Hour))
	rev := must[int64](t, "Txn")(s.Txn(ctx,
		datastore.CreateWithLease("/lr/a", []byte("a"), id),
		datastore.CreateWithLease("/lr/b", []byte("b"), id),
		datastore.Create("/lr/c", []byte("c"))))
	events, err := s.Watch(ctx, "/lr/", rev)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Revoke(ctx, id); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	e1, e2 := next(t, ctx, events), next(t, ctx, events)
	keys := []string{e1.Key, e2.Key}
	slices.Sort(keys)
	if e1.Type != datastore.EventDelete || e2.Type != datastore.EventDelete || e1.Revision != e2.Revision ||
		!slices.Equal(keys, []string{"/lr/a", "/lr/b"}) {
		t.Fatalf("Revoke: events %+v %+v, want deletes of /lr/a and /lr/b at one revision", e1, e2)
	}
	kvs, _ := must2[[]datastore.KV, int64](t, "List")(s.List(ctx, "/lr/"))
	if len(kvs) != 1 || kvs[0].Key != "/lr/c" {
		t.Fatalf("after Revoke: %+v", kvs)
	}
	wantErr(t, "Revoke twice", l.Revoke(ctx, id), datastore.ErrLeaseNotFound)
	wantErr(t, "KeepAlive revoked", l.KeepAlive(ctx, id), datastore.ErrLeaseNotFound)
}

// testLeaseDetach: an update without a lease detaches the key; an update
// with another lease moves it.
func testLeaseDetach(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	l := leaser(t, s)
	a := must[datastore.LeaseID](t, "Grant a")(l.Grant(ctx, time.Hour))
	b := must[datastore.LeaseID](t, "Grant b")(l.Grant(ctx, time.Hour))
	r1 := must[int64](t, "Create x")(s.Txn(ctx, datastore.CreateWithLease("/ld/x", nil, a)))
	must[int64](t, "Create y")(s.Txn(ctx, datastore.CreateWithLease("/ld/y", nil, a)))
	must[int64](t, "Detach x")(s.Update(ctx, "/ld/x", []byte("free"), r1))
	y := must[datastore.KV](t, "Get y")(s.Get(ctx, "/ld/y"))
	must[int64](t, "Move y")(s.Txn(ctx, datastore.UpdateWithLease("/ld/y", []byte("b"), y.Revision, b)))
	if err := l.Revoke(ctx, a); err != nil {
		t.Fatal(err)
	}
	must[datastore.KV](t, "Get detached x")(s.Get(ctx, "/ld/x"))
	must[datastore.KV](t, "Get moved y")(s.Get(ctx, "/ld/y"))
	if err := l.Revoke(ctx, b); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(ctx, "/ld/y")
	wantErr(t, "Get y after revoking b", err, datastore.ErrNotFound)
	must[datastore.KV](t, "Get x after revoking b")(s.Get(ctx, "/ld/x"))
}

// testLeaseInvalid: bad TTLs, unknown leases and leases on ops that cannot
// carry one are refused and write nothing.
func testLeaseInvalid(t *testing.T, ctx context.Context, s datastore.Store, _ Options) {
	l := leaser(t, s)
	_, err := l.Grant(ctx, 0)
	wantErr(t, "Grant(0)", err, datastore.ErrInvalid)
	_, err = l.Grant(ctx, -time.Second)
	wantErr(t, "Grant(-1s)", err, datastore.ErrInvalid)
	const unknown = datastore.LeaseID(0x7eadbeef)
	_, err = s.Txn(ctx, datastore.CreateWithLease("/li/x", nil, unknown))
	wantErr(t, "Create with unknown lease", err, datastore.ErrLeaseNotFound)
	_, err = s.Txn(ctx, datastore.Create("/li/y", nil), datastore.CreateWithLease("/li/x", nil, unknown))
	wantErr(t, "Txn with unknown lease", err, datastore.ErrLeaseNotFound)
	kvs, _ := must2[[]datastore.KV, int64](t, "List")(s.List(ctx, "/li/"))
	if len(kvs) != 0 {
		t.Fatalf("refused ops wrote %+v", kvs)
	}
	wantErr(t, "KeepAlive unknown", l.KeepAlive(ctx, unknown), datastore.ErrLeaseNotFound)
	wantErr(t, "Revoke unknown", l.Revoke(ctx, unknown), datastore.ErrLeaseNotFound)
	id := must[datastore.LeaseID](t, "Grant")(l.Grant(ctx, time.Hour))
	defer l.Revoke(ctx, id)
	rev := must[int64](t, "Create")(s.Create(ctx, "/li/z", nil))
	_, err = s.Txn(ctx, datastore.Op{Type: datastore.OpDelete, Key: "/li/z", Revision: rev, Lease: id})
	wantErr(t, "Delete with a lease", err, datastore.ErrInvalid)
	_, err = s.Txn(ctx, datastore.Op{Type: datastore.OpCheck, Key: "/li/z", Revision: rev, Lease: id})
	wantErr(t, "Check with a lease", err, datastore.ErrInvalid)
}

func must2[A, B any](t *testing.T, what string) func(A, B, error) (A, B) {
	return func(a A, b B, err error) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return a, b
	}
}
