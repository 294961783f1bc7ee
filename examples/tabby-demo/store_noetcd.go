//go:build linux && tabby_noetcd

package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/datastore/memory"
)

// openStore opens --datastore without the etcd client: memory:// or
// bolt:///path only.
func openStore(ctx context.Context, url string) (datastore.Store, error) {
	switch {
	case url == "memory://":
		return memory.New(nil), nil
	case strings.HasPrefix(url, "bolt://"):
		return bolt.Open(ctx, strings.TrimPrefix(url, "bolt://"), nil)
	}
	return nil, fmt.Errorf("%w: %s: this tabby-demo was built with -tags tabby_noetcd (memory:// and bolt:// only)", datastore.ErrInvalid, url)
}
