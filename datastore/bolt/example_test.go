package bolt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tabbynet/tabby/datastore/bolt"
)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "tabby-example")
	defer os.RemoveAll(dir)

	// Every process on the host opens the same path; each operation locks
	// the file only for its own transaction.
	s, err := bolt.Open(ctx, filepath.Join(dir, "lib", "tabby.db"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	rev, _ := s.Create(ctx, "/handles/pod-a", []byte("10.244.0.5"))
	kv, _ := s.Get(ctx, "/handles/pod-a")
	fmt.Println(kv.Key, string(kv.Value), kv.Revision == rev)
	fmt.Println(s.Check(ctx))
	// Output:
	// /handles/pod-a 10.244.0.5 true
	// <nil>
}
