package memory_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
)

func Example() {
	ctx := context.Background()
	s := memory.New(nil)
	defer s.Close()

	rev, _ := s.Create(ctx, "/pools/default", []byte("10.244.0.0/16"))
	_, err := s.Create(ctx, "/pools/default", []byte("again"))
	fmt.Println(errors.Is(err, datastore.ErrExists))

	// Compare-and-swap: only the writer that read revision rev wins.
	_, err = s.Update(ctx, "/pools/default", []byte("10.245.0.0/16"), rev)
	fmt.Println(err)
	_, err = s.Update(ctx, "/pools/default", []byte("lost"), rev)
	fmt.Println(errors.Is(err, datastore.ErrConflict))

	kv, _ := s.Get(ctx, "/pools/default")
	fmt.Printf("%s %s rev=%d\n", kv.Key, kv.Value, kv.Revision)
	// Output:
	// true
	// <nil>
	// true
	// /pools/default 10.245.0.0/16 rev=2
}

func ExampleStore_Watch() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := memory.New(nil)
	defer s.Close()
	s.Create(ctx, "/nodes/a", []byte("10.4.7.1"))

	// List, then watch from the list's revision: nothing missed or repeated.
	kvs, rev, _ := s.List(ctx, "/nodes/")
	for _, kv := range kvs {
		fmt.Printf("listed %s=%s\n", kv.Key, kv.Value)
	}
	events, _ := s.Watch(ctx, "/nodes/", rev)

	s.Txn(ctx,
		datastore.Create("/nodes/b", []byte("10.4.7.2")),
		datastore.Check("/nodes/c", 0))
	kv, _ := s.Get(ctx, "/nodes/a")
	s.Delete(ctx, "/nodes/a", kv.Revision)

	for i := 0; i < 2; i++ {
		ev := <-events
		fmt.Printf("%s %s %s rev=%d\n", ev.Type, ev.Key, ev.Value, ev.Revision)
	}
	// Output:
	// listed /nodes/a=10.4.7.1
	// put /nodes/b 10.4.7.2 rev=2
	// delete /nodes/a  rev=3
}

func ExampleStore_Txn() {
	ctx := context.Background()
	s := memory.New(nil)
	defer s.Close()
	rev, _ := s.Create(ctx, "/blocks/10.244.0.0-26", []byte("free"))

	// Claim a block and record the affinity in one atomic step.
	_, err := s.Txn(ctx,
		datastore.Update("/blocks/10.244.0.0-26", []byte("host=a"), rev),
		datastore.Create("/affinity/a/10.244.0.0-26", []byte("confirmed")))
	fmt.Println(err)

	// A second claimer with the old revision changes nothing.
	_, err = s.Txn(ctx,
		datastore.Update("/blocks/10.244.0.0-26", []byte("host=b"), rev),
		datastore.Create("/affinity/b/10.244.0.0-26", []byte("confirmed")))
	fmt.Println(errors.Is(err, datastore.ErrConflict))
	_, err = s.Get(ctx, "/affinity/b/10.244.0.0-26")
	fmt.Println(errors.Is(err, datastore.ErrNotFound))
	// Output:
	// <nil>
	// true
	// true
}

// A key attached to a lease disappears, with a delete event, when the lease
// is not kept alive (here: revoked).
func ExampleStore_Grant() {
	ctx := context.Background()
	var s datastore.Store = memory.New(nil)
	defer s.Close()
	l, ok := s.(datastore.Leaser)
	if !ok {
		return // a store without leases: heartbeat instead
	}
	id, _ := l.Grant(ctx, 30*time.Second)
	rev, _ := s.Txn(ctx, datastore.CreateWithLease("/nodes/a", []byte("10.4.7.1"), id))
	events, _ := s.Watch(ctx, "/nodes/", rev)
	_ = l.KeepAlive(ctx, id) // no write, no event
	_ = l.Revoke(ctx, id)    // as if the TTL had passed without a keep-alive
	ev := <-events
	fmt.Println(ev.Type, ev.Key)
	fmt.Println(errors.Is(l.KeepAlive(ctx, id), datastore.ErrLeaseNotFound))
	// Output:
	// delete /nodes/a
	// true
}
