//go:build linux && !tabby_noetcd

package main

import (
	"context"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/dsn"
)

// openStore opens --datastore (memory://, bolt://, etcd://). Build with
// -tags tabby_noetcd for a demo without the etcd client (faster first
// compile).
func openStore(ctx context.Context, url string) (datastore.Store, error) {
	return dsn.Open(ctx, url, nil)
}
