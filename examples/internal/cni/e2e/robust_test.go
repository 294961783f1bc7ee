//go:build linux

package e2e

import (
	"testing"

	"github.com/tabbynet/tabby/internal/kerneltest"
)

// ADD with the pod's CNI_ARGS, then CHECK and DEL without them (as
// cnitool sends them): CHECK passes on the healthy pod and DEL leaves no
// veth and no allocation, for in-process and delegated (host-local) IPAM.
// Before, CHECK failed with 102 and DEL succeeded but left the host veth.
func TestDelCheckWithoutPodArgs(t *testing.T) {
	for _, ipamType := range []string{"tabby-ipam", "host-local"} {
		t.Run(ipamType, func(t *testing.T) {
			w := newWorld(t)
			conf := w.tabbyConf(nil)
			if ipamType == "host-local" {
				conf["ipam"] = map[string]any{"type": "host-local", "subnet": "10.9.0.0/24", "dataDir": t.TempDir()}
			}
			w.writeList(conf)
			pod := kerneltest.NewNS(t, "pod")
			if _, err := w.cnitool("add", pod.Path, "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0"); err != nil {
				t.Fatal(err)
			}
			if links := w.hostLinks(); len(links) != 1 {
				t.Fatalf("host links %v", links)
			}
			if _, err := w.cnitool("check", pod.Path); err != nil {
				t.Fatalf("CHECK without CNI_ARGS: %v", err)
			}
			if _, err := w.cnitool("del", pod.Path); err != nil {
				t.Fatalf("DEL without CNI_ARGS: %v", err)
			}
			if links := w.hostLinks(); len(links) != 0 {
				t.Fatalf("DEL left host interfaces %v", links)
			}
			if n := w.allocated(); n != 0 {
				t.Fatalf("DEL left %d allocations", n)
			}
		})
	}
}
