//go:build linux

package veth_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"

	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/veth"
)

// Plumbing a pod, here on the fake kernel so that the example runs
// anywhere: the fake's initial namespace is the host, and the container
// runtime made the pod's namespace.
func Example() {
	k := netlinktest.New()
	if _, err := k.NewNamespace("/var/run/netns/cni-1234"); err != nil {
		log.Fatal(err)
	}
	// On a real host: veth.New(handle, nil), with handle from
	// netlink.NewHandle() (see ExampleNew_kernel).
	p, err := veth.New(k, &veth.Config{Open: veth.Opener(k.NamespaceAt)})
	if err != nil {
		log.Fatal(err)
	}
	pod := veth.Pod{
		Key:   veth.WorkloadKey("default", "web-0"),
		NetNS: "/var/run/netns/cni-1234",
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.235.135/32")},
	}
	res, err := p.Setup(context.Background(), pod)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("host:", res.HostIfName, res.HostMAC, "mtu", res.MTU)
	fmt.Println("pod: ", res.PodIfName, "in", res.Sandbox)
	for _, ip := range res.IPs {
		fmt.Println("ip:  ", ip.Address, "gateway", ip.Gateway)
	}
	// Output:
	// host: cali0d7763386da ee:ee:ee:ee:ee:ee mtu 1450
	// pod:  eth0 in /var/run/netns/cni-1234
	// ip:   10.244.235.135/32 gateway 169.254.1.1
}

// Check (CNI CHECK) reports the first difference; Setup repairs it;
// Teardown (CNI DEL) needs only the key and is idempotent.
func ExamplePlumber_Check() {
	k := netlinktest.New()
	if _, err := k.NewNamespace("/var/run/netns/pod"); err != nil {
		log.Fatal(err)
	}
	p, err := veth.New(k, &veth.Config{Open: veth.Opener(k.NamespaceAt)})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	pod := veth.Pod{Key: "default.web-0", NetNS: "/var/run/netns/pod",
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.0.5/32")}}
	if _, err := p.Setup(ctx, pod); err != nil {
		log.Fatal(err)
	}
	// Someone turns forwarding off on the host interface.
	if err := k.SetSysctl("net/ipv4/conf/"+p.HostIfName(pod.Key)+"/forwarding", "0"); err != nil {
		log.Fatal(err)
	}
	err = p.Check(ctx, pod)
	fmt.Println(errors.Is(err, veth.ErrMismatch), err)
	if _, err := p.Setup(ctx, pod); err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Check(ctx, pod))
	fmt.Println(p.Teardown(ctx, pod.Key), p.Teardown(ctx, pod.Key))
	// Output:
	// true veth: state differs from the expected: host sysctl net/ipv4/conf/cali0d7763386da/forwarding = 0, want 1
	// <nil>
	// <nil> <nil>
}

// Bad input is reported with a typed error before anything is touched.
func ExampleInputError() {
	p, err := veth.New(netlinktest.New(), nil)
	if err != nil {
		log.Fatal(err)
	}
	_, err = p.Setup(context.Background(), veth.Pod{Key: "k", NetNS: "/var/run/netns/x",
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/26")}})
	var ie *veth.InputError
	fmt.Println(errors.As(err, &ie), errors.Is(err, veth.ErrInvalidAddress), ie.Field)
	fmt.Println(err)
	// Output:
	// true true address
	// veth: invalid pod address: address "10.244.0.0/26": not a single host address (want /32)
}

// A dual-stack pod: IPv6 goes through the host interface's own link-local
// address, so no proxy is involved.
func Example_dualStack() {
	k := netlinktest.New()
	if _, err := k.NewNamespace("/var/run/netns/pod"); err != nil {
		log.Fatal(err)
	}
	p, err := veth.New(k, &veth.Config{Open: veth.Opener(k.NamespaceAt)})
	if err != nil {
		log.Fatal(err)
	}
	res, err := p.Setup(context.Background(), veth.Pod{
		Key:   "default.web-0",
		NetNS: "/var/run/netns/pod",
		Addrs: []netip.Prefix{
			netip.MustParsePrefix("10.244.0.5/32"),
			netip.MustParsePrefix("2001:db8:244::5/128"),
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, ip := range res.IPs {
		fmt.Println(ip.Address, "via", ip.Gateway)
	}
	// Output:
	// 10.244.0.5/32 via 169.254.1.1
	// 2001:db8:244::5/128 via fe80::ecee:eeff:feee:eeee
}
