// Package etcdurl opens etcd:// datastore URLs for package storeurl
// (Options.Etcd). It is separate so that only programs that want etcd link
// its client.
package etcdurl

import (
	"context"
	"log/slog"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/etcd"
	"github.com/tabbynet/tabby/examples/internal/storeurl"
)

// Open connects to the etcd cluster p names.
func Open(ctx context.Context, p storeurl.EtcdParams, log *slog.Logger) (datastore.Store, error) {
	return etcd.New(ctx, &etcd.Config{
		Endpoints: p.Endpoints,
		CAFile:    p.Query.Get("ca"),
		CertFile:  p.Query.Get("cert"),
		KeyFile:   p.Query.Get("key"),
		Username:  p.Query.Get("user"),
		Password:  p.Query.Get("password"),
		Prefix:    p.Prefix,
		Logger:    log,
	})
}
