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
	// tabby refuses the host's own namespace itself, before it allocates or
	// writes anything (code 107); skel's own check runs only after the
	// command has done its work (an ADD printed its result, then code 8;
	// every DEL failed with 8 after releasing), so it is switched off.
	os.Setenv(cni.NetNSOverrideEnv, "1")
	skel.PluginMainFuncs(cni.Funcs(p, os.Stdout), cni.VersionInfo(), "tabby-ipam: block IPAM with handles and GC")
}
