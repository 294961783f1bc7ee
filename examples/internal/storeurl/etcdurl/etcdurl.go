// Package etcdurl plugs the library's datastore/dsn into package storeurl
// (Options.DSN), so that every store URL dsn knows works, etcd included. It
// is separate so that only programs that want etcd link its client.
package etcdurl

import (
	"context"
	"log/slog"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/dsn"
)

// Open opens the store raw names with datastore/dsn.
func Open(ctx context.Context, raw string, log *slog.Logger) (datastore.Store, error) {
	return dsn.Open(ctx, raw, &dsn.Options{Logger: log})
}
