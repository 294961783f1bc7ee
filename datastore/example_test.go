package datastore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
)

// The list-then-watch loop every consumer writes: list, watch from the
// list's revision, and on ErrCompacted (from Watch or as the last Event)
// list again.
func Example_listThenWatch() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var s datastore.Store = memory.New(nil)
	defer s.Close()
	s.Create(ctx, "/peers/a", []byte("10.4.7.1"))

	view := map[string]string{}
	sync := func() (<-chan datastore.Event, error) {
		for {
			kvs, rev, err := s.List(ctx, "/peers/")
			if err != nil {
				return nil, err
			}
			clear(view)
			for _, kv := range kvs {
				view[kv.Key] = string(kv.Value)
			}
			ch, err := s.Watch(ctx, "/peers/", rev)
			if errors.Is(err, datastore.ErrCompacted) {
				continue // history gone between List and Watch: list again
			}
			return ch, err
		}
	}
	events, err := sync()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(view)

	s.Create(ctx, "/peers/b", []byte("10.4.7.2"))
	ev := <-events
	switch {
	case errors.Is(ev.Err, datastore.ErrCompacted):
		// The watch ended: call sync() again and read the new channel.
		return
	case ev.Type == datastore.EventPut:
		view[ev.Key] = string(ev.Value)
	case ev.Type == datastore.EventDelete:
		delete(view, ev.Key)
	}
	fmt.Println(view)
	// Output:
	// map[/peers/a:10.4.7.1]
	// map[/peers/a:10.4.7.1 /peers/b:10.4.7.2]
}
