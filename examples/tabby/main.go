package main

import (
	"context"
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/examples/internal/cni"
	"github.com/tabbynet/tabby/examples/internal/storeurl"
	"github.com/tabbynet/tabby/examples/internal/storeurl/etcdurl"
)

func main() {
	p := cni.New(cni.Env{OpenStore: func(ctx context.Context, url string) (datastore.Store, error) {
		return storeurl.Open(ctx, url, &storeurl.Options{Etcd: etcdurl.Open})
	}})
	skel.PluginMainFuncs(cni.Funcs(p, os.Stdout), cni.VersionInfo(), "tabby: Calico-style pod networking (block IPAM, veth, no bridge)")
}
