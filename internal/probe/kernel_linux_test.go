//go:build linux

package probe_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/internal/probe"
)

// Ping and capture across a veth pair between two test namespaces.
func TestKernelPingCapture(t *testing.T) {
	a, b := kerneltest.NewNS(t, "probe-a"), kerneltest.NewNS(t, "probe-b")
	kerneltest.Veth(t, a, "eth0", b, "eth0")
	a.AddAddr(t, "eth0", "10.4.7.1/24")
	b.AddAddr(t, "eth0", "10.4.7.2/24")
	dst := netip.MustParseAddr("10.4.7.2")

	c, err := probe.StartCapture(b.Path, b.Link(t, "eth0").Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	from, err := probe.Ping(ctx, a.Path, dst)
	if err != nil || from != dst {
		t.Fatalf("ping = %v, %v; want a reply from %v", from, err, dst)
	}
	frames, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	var icmp int
	for _, f := range frames {
		if f.Proto == probe.ProtoICMP && (f.Dst == dst || f.Src == dst) {
			icmp++
		}
	}
	if icmp < 2 {
		t.Errorf("captured %d ICMP frames to/from %v, want request and reply: %v", icmp, dst, frames)
	}

	// Nobody answers 10.4.7.9: Ping gives up when ctx ends.
	short, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	if _, err := probe.Ping(short, a.Path, netip.MustParseAddr("10.4.7.9")); err == nil {
		t.Error("ping of an absent host succeeded")
	}

	stop, cancel3 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel3()
	sent, recv, err := probe.PingStream(stop, a.Path, dst, 20*time.Millisecond)
	if err != nil || sent == 0 || recv == 0 {
		t.Errorf("PingStream = %d sent, %d received, %v", sent, recv, err)
	}
}
