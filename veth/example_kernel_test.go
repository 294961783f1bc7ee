//go:build linux

package veth_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/veth"
)

// The host's pod name gives the host interface name, as in the seed
// ("cali" + 11 hex characters of sha1("<namespace>.<pod>")).
func ExampleHostIfName() {
	fmt.Println(veth.HostIfName(veth.DefaultPrefix, veth.WorkloadKey("default", "web-0")))
	// Output: cali0d7763386da
}

// Plumbing a pod on the real kernel, as a CNI ADD would (needs root; not
// run by go test). The process's own namespace is the host; the runtime
// gives the pod's namespace path.
func ExampleNew_kernel() {
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		log.Fatal(err)
	}
	defer host.Close()
	// nil Config: cali prefix, ee:ee:ee:ee:ee:ee, MTU 1450, kernel proxy
	// ARP, host sysctls in /proc/sys, pod namespaces opened by path.
	p, err := veth.New(host, nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	pod := veth.Pod{
		Key:   veth.WorkloadKey("default", "web-0"),
		NetNS: "/var/run/netns/cni-1234",
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.235.135/32")},
	}
	res, err := p.Setup(ctx, pod)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.HostIfName, res.HostIndex, res.PodIfName, res.PodIndex, res.PodMAC)

	// CNI CHECK and DEL:
	if err := p.Check(ctx, pod); err != nil {
		log.Fatal(err)
	}
	if err := p.Teardown(ctx, pod.Key); err != nil {
		log.Fatal(err)
	}
}
