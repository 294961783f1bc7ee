package proxyarp_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/tabbynet/tabby/proxyarp"
	"github.com/tabbynet/tabby/proxyarp/proxyarptest"
)

// A pod asks for its gateway on its veth; the responder answers with the
// host side's MAC. The in-memory network stands in for the kernel.
func Example() {
	network := proxyarptest.NewNetwork()
	network.AddLink("eth0", net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}) // uplink: never served
	veth := network.AddLink("cali6ff8e3ade03", net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee})

	r, err := proxyarp.New(&proxyarp.Config{Links: network, Listen: network.Listen})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()

	pod := net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0xeb, 0x87}
	veth.Send(proxyarptest.Request(pod, netip.MustParseAddr("10.244.235.135"), netip.MustParseAddr("169.254.1.1")))
	frame, _ := veth.Recv(5 * time.Second)
	_, reply, _ := proxyarptest.Parse(frame)
	fmt.Printf("%v is at %v (to %v)\n", reply.SenderIP, reply.SenderHardwareAddr, reply.TargetIP)

	cancel()
	<-done
	s := r.Stats()
	fmt.Println("requests", s.Requests, "replies", s.Replies, "served now", s.Interfaces)
	// Output:
	// 169.254.1.1 is at ee:ee:ee:ee:ee:ee (to 10.244.235.135)
	// requests 1 replies 1 served now 0
}

// Exporting the counters: one value per reason, labels from Reason.String.
func ExampleResponder_Stats() {
	network := proxyarptest.NewNetwork()
	veth := network.AddLink("cali1", net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee})
	r, _ := proxyarp.New(&proxyarp.Config{Links: network, Listen: network.Listen})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()

	pod := net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0xeb, 0x87}
	ip := netip.MustParseAddr("10.244.235.135")
	veth.Send(proxyarptest.Request(pod, netip.IPv4Unspecified(), ip)) // the pod's duplicate-address probe
	veth.Send(proxyarptest.Request(pod, ip, ip))                      // its gratuitous announcement
	veth.Send(proxyarptest.Request(pod, ip, netip.MustParseAddr("169.254.1.1")))
	veth.Recv(5 * time.Second)
	for r.Stats().Requests < 3 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done

	s := r.Stats()
	fmt.Println("replies:", s.Replies)
	for _, why := range proxyarp.Reasons() {
		if s.Ignored[why] > 0 {
			fmt.Printf("ignored{reason=%q}: %d\n", why, s.Ignored[why])
		}
	}
	// Output:
	// replies: 1
	// ignored{reason="probe"}: 1
	// ignored{reason="self-target"}: 1
}

func ExampleSelector_Match() {
	var def proxyarp.Selector // prefix "cali"
	names := proxyarp.Selector{Names: []string{"tap0"}}
	fmt.Println(def.Match("cali6ff8e3ade03"), def.Match("ens33"), names.Match("tap0"), names.Match("cali1"))
	// Output: true false true false
}

// Calico's kernel mode on one host veth, here on an in-memory /proc/sys;
// proxyarp.SysctlAt(netnsPath) is the real one.
func ExampleEnableKernel() {
	sys := &fakeSysctl{m: map[string]string{
		"net/ipv4/conf/cali1/proxy_arp":    "0",
		"net/ipv4/neigh/cali1/proxy_delay": "80",
	}}
	if err := proxyarp.EnableKernel(sys, "cali1"); err != nil {
		panic(err)
	}
	on, _ := proxyarp.KernelEnabled(sys, "cali1")
	fmt.Println(on, sys.m["net/ipv4/conf/cali1/proxy_arp"], sys.m["net/ipv4/neigh/cali1/proxy_delay"])
	// Output: true 1 0
}
