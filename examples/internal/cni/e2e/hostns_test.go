//go:build linux

package e2e

import (
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/kerneltest"
)

// CNI_NETNS naming the namespace the plugin runs in (by /proc/self/ns/net
// or by the host namespace's own bind mount) is refused with code 107
// before anything is allocated or written: no interface, no address, no
// route in the host, nothing in IPAM; DEL of it succeeds. A path that is
// not a network namespace is code 4, also before anything is allocated.
func TestHostNetNSRefused(t *testing.T) {
	w := newWorld(t)
	conf := w.netConf(w.tabbyConf(nil))
	routes := func() int {
		rs, err := w.host.Handle.RouteList(nil, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		return len(rs)
	}
	before := routes()
	for _, tc := range []struct {
		netns string
		code  uint
	}{
		{"/proc/self/ns/net", 107},
		{w.host.Path, 107},
		{"/proc/self/ns/uts", 4},
		{"/proc/self/status", 4},
	} {
		_, ce := w.raw("tabby", "ADD", "c1", tc.netns, conf, "CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0")
		if ce == nil || ce.Code != tc.code {
			t.Fatalf("ADD in %s: %+v, want code %d", tc.netns, ce, tc.code)
		}
		if links := w.hostLinks(); len(links) != 0 {
			t.Fatalf("ADD in %s left host interfaces %v", tc.netns, links)
		}
		if n := routes(); n != before {
			t.Fatalf("ADD in %s changed the host's routes (%d, was %d)", tc.netns, n, before)
		}
		if n := w.allocated(); n != 0 {
			t.Fatalf("ADD in %s allocated %d addresses", tc.netns, n)
		}
		if _, ce := w.raw("tabby", "DEL", "c1", tc.netns, conf, "CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0"); ce != nil {
			t.Fatalf("DEL in %s: %+v", tc.netns, ce)
		}
	}
	// A pod namespace still works afterwards.
	pod := kerneltest.NewNS(t, "pod")
	if _, ce := w.raw("tabby", "ADD", "c2", pod.Path, conf); ce != nil {
		t.Fatalf("ADD: %+v", ce)
	}
	if _, ce := w.raw("tabby", "DEL", "c2", pod.Path, conf); ce != nil {
		t.Fatalf("DEL: %+v", ce)
	}
	if n := w.allocated(); n != 0 {
		t.Fatalf("%d allocations left", n)
	}
}
