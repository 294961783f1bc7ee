package main

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/examples/internal/cni"
	"github.com/tabbynet/tabby/examples/internal/storeurl"
)

// stallEnv is for tests only: "<point>:<file>" makes ADD create file at
// point ("assigned" or "plumbed") and then wait to be killed.
const stallEnv = "TABBY_CNI_TEST_STALL"

func main() {
	env := cni.Env{OpenStore: func(ctx context.Context, url string) (datastore.Store, error) {
		return storeurl.Open(ctx, url, storeOptions())
	}}
	if point, file, ok := strings.Cut(os.Getenv(stallEnv), ":"); ok {
		env.Hook = func(p string) {
			if p == point {
				_ = os.WriteFile(file, []byte(p), 0o600)
				time.Sleep(10 * time.Minute)
			}
		}
	}
	// tabby refuses the host's own namespace itself, before it allocates or
	// writes anything (code 107); skel's own check runs only after the
	// command has done its work (an ADD printed its result, then code 8;
	// every DEL failed with 8 after releasing), so it is switched off.
	os.Setenv(cni.NetNSOverrideEnv, "1")
	skel.PluginMainFuncs(cni.Funcs(cni.New(env), os.Stdout), cni.VersionInfo(), "tabby: Calico-style pod networking (block IPAM, veth, no bridge)")
}
