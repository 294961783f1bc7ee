//go:build linux

package main

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/examples/internal/nettools"
	"github.com/tabbynet/tabby/node"
)

// BenchmarkPodTCP measures pod-to-pod TCP throughput from pod-a (worker1)
// to pod-c (worker2) in the demo's cluster: first over VXLAN (mode Always),
// then, in the same namespaces after the agents restart in CrossSubnet mode
// (both workers share 10.4.7.0/24, so worker2 is routed directly), without
// encapsulation. Reported as MB/s per sub-benchmark (b.SetBytes).
func BenchmarkPodTCP(b *testing.B) {
	var out strings.Builder
	opt := options{mode: node.VXLANAlways, holdTime: 30 * time.Second}
	c := newBenchCluster(b, opt, &out)
	a, p := c.pod("pod-a"), c.pod("pod-c")
	dst := netip.AddrPortFrom(p.ip, 5201)
	ln, counts, err := nettools.TCPSink(p.ns.Path, dst)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	const size = 64 << 20
	send := func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			if err := nettools.TCPSend(a.ns.Path, dst, size); err != nil {
				b.Fatal(err)
			}
			if n := <-counts; n != size {
				b.Fatalf("received %d of %d bytes", n, size)
			}
		}
	}
	b.Run("vxlan", send)
	// Same namespaces, routed without encapsulation.
	c.opt.mode = node.VXLANCrossSubnet
	for _, n := range c.nodes {
		if err := c.stopAgent(n, true); err != nil {
			b.Fatal(err)
		}
		if err := c.startAgent(context.Background(), n); err != nil {
			b.Fatal(err)
		}
		if err := c.waitStarted(context.Background(), n); err != nil {
			b.Fatal(err)
		}
	}
	w1, w2 := c.host("worker1"), c.host("worker2")
	blk := w2.agent.Stats().Blocks[0].String()
	want := blk + " via " + w2.spec.ip.Addr().String()
	if err := c.waitFor(context.Background(), 10*time.Second, "direct route "+want, func() bool {
		for _, r := range gwRoutesB(b, w1) {
			if r == want {
				return true
			}
		}
		return false
	}); err != nil {
		b.Fatal(err)
	}
	b.Run("direct", send)
}
