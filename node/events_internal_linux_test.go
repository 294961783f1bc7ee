//go:build linux

package node

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/internal/nlbatch"
)

// TestWatchKernelSurvivesOverrun floods the notification sockets (receive
// buffers at the kernel's minimum, thousands of route writes many to a
// send, as a first sync at scale makes) until the kernel drops
// notifications, then deletes one of the node's routes: the watch must
// still report it. Before, the first ENOBUFS ended the watch and the node
// fell back to its resync interval for good.
func TestWatchKernelSurvivesOverrun(t *testing.T) {
	ns := kerneltest.NewNS(t, "nev")
	dev, _ := kerneltest.Veth(t, ns, "eth0", kerneltest.NewNS(t, "nevo"), "eth0")

	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 1)
	var overruns atomic.Int64
	done := make(chan struct{}) // closed when the watch ends, with werr
	var werr error
	go func() {
		defer close(done)
		werr = watchKernel(ctx, ns.NS, true, changed, watchOptions{rcvBuf: 1, overrun: func(error) { overruns.Add(1) }})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if werr != nil {
			t.Errorf("watch: %v", werr)
		}
	})
	select {
	case <-changed: // subscribed
	case <-done:
		t.Fatalf("watch ended: %v", werr)
	case <-time.After(10 * time.Second):
		t.Fatal("no first hint")
	}

	bc, err := nlbatch.Dial(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	route := func(i int) *netlink.Route {
		return &netlink.Route{
			LinkIndex: dev.Attrs().Index, Protocol: RouteProtocol, Scope: netlink.SCOPE_LINK,
			Dst: &net.IPNet{IP: net.IPv4(10, 244, byte(i>>8), byte(i)), Mask: net.CIDRMask(32, 32)},
		}
	}
	const n = 4000
	for round := 0; overruns.Load() == 0; round++ {
		if round == 5 {
			t.Fatalf("no overrun after %d rounds of %d route writes: the test proves nothing", round, n)
		}
		ws := make([]nlbatch.Write, n)
		op := nlbatch.RouteAdd
		if round%2 == 1 {
			op = nlbatch.RouteDel
		}
		for i := range ws {
			ws[i] = nlbatch.Write{Op: op, Route: route(i)}
		}
		for i, err := range bc.WriteBatch(ws) {
			if err != nil {
				t.Fatalf("%v %d: %v", op, i, err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := ns.Handle.RouteAdd(route(n)); err != nil {
		t.Fatal(err)
	}
	// Let the flood's hints pass: quiet for half a second.
	for quiet := time.NewTimer(500 * time.Millisecond); ; {
		select {
		case <-changed:
			quiet.Reset(500 * time.Millisecond)
			continue
		case <-done:
			t.Fatalf("watch ended after %d overruns: %v", overruns.Load(), werr)
		case <-quiet.C:
		}
		break
	}

	if err := ns.Handle.RouteDel(route(n)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-done:
		t.Fatalf("watch ended: %v", werr)
	case <-time.After(30 * time.Second):
		t.Fatalf("the deletion of an owned route after %d overruns was never reported", overruns.Load())
	}
	t.Logf("overruns: %d", overruns.Load())
}
