package main

import (
	"context"
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/examples/internal/cni"
	"github.com/tabbynet/tabby/examples/internal/storeurl"
)

func main() {
	p := cni.NewIPAM(cni.Env{OpenStore: func(ctx context.Context, url string) (datastore.Store, error) {
		return storeurl.Open(ctx, url, storeOptions())
	}})
	skel.PluginMainFuncs(cni.Funcs(p, os.Stdout), cni.VersionInfo(), "tabby-ipam: block IPAM with handles and GC")
}
