//go:build linux

package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/tabbynet/tabby/examples/internal/nettools"
	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/node"
)

// TestDemo runs the README's main command in-process, in both VXLAN modes,
// and checks that every question passes and nothing is left behind.
func TestDemo(t *testing.T) {
	kerneltest.Require(t)
	for _, mode := range []node.VXLANMode{node.VXLANAlways, node.VXLANCrossSubnet} {
		t.Run(mode.String(), func(t *testing.T) {
			prefix := kerneltest.UniqueName("tabby-demo-t") + "-"
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ok, err := run(ctx, options{mode: mode, prefix: prefix, holdTime: 30 * time.Second}, &out)
			t.Log("\n" + out.String())
			if err != nil || !ok {
				t.Fatalf("demo: ok=%v err=%v", ok, err)
			}
			for _, q := range []string{"PASS Q1", "PASS Q3", "PASS Q4", "PASS Q5", "PASS Q6", "PASS Q7", "PASS Q8"} {
				if !bytes.Contains(out.Bytes(), []byte(q)) {
					t.Errorf("output lacks %q", q)
				}
			}
			if left, _ := nettools.ListNS(prefix); len(left) > 0 {
				t.Errorf("namespaces left behind: %v", left)
			}
		})
	}
}

// TestDemoKernelProxyARP runs the demo with the kernel's proxy ARP instead
// of the userspace responder.
func TestDemoKernelProxyARP(t *testing.T) {
	kerneltest.Require(t)
	prefix := kerneltest.UniqueName("tabby-demo-t") + "-"
	var out bytes.Buffer
	ok, err := run(context.Background(), options{mode: node.VXLANAlways, prefix: prefix, holdTime: 30 * time.Second, proxyARP: "kernel"}, &out)
	if err != nil || !ok {
		t.Fatalf("demo: ok=%v err=%v\n%s", ok, err, out.String())
	}
	if !bytes.Contains(out.Bytes(), []byte("kernel proxy ARP")) {
		t.Errorf("Q5 did not use kernel mode:\n%s", out.String())
	}
}

// TestDemoRemovesLeftovers: a namespace of the same name (a crashed run)
// is removed at start and the demo still passes.
func TestDemoRemovesLeftovers(t *testing.T) {
	kerneltest.Require(t)
	prefix := kerneltest.UniqueName("tabby-demo-t") + "-"
	n, err := nettools.NewNS(prefix + "worker1")
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	t.Cleanup(func() { nettools.DeleteNS(prefix + "worker1") })
	var out bytes.Buffer
	ok, err := run(context.Background(), options{mode: node.VXLANAlways, prefix: prefix, holdTime: 30 * time.Second}, &out)
	if err != nil || !ok {
		t.Fatalf("demo: ok=%v err=%v\n%s", ok, err, out.String())
	}
	if !bytes.Contains(out.Bytes(), []byte("removing leftover namespace "+prefix+"worker1")) {
		t.Errorf("leftover not reported:\n%s", out.String())
	}
	if left, _ := nettools.ListNS(prefix); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}

// TestDemoCancelled: cancelling mid-run (Ctrl-C) still removes everything.
func TestDemoCancelled(t *testing.T) {
	kerneltest.Require(t)
	prefix := kerneltest.UniqueName("tabby-demo-t") + "-"
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx, options{mode: node.VXLANAlways, prefix: prefix, holdTime: 30 * time.Second, keep: true}, &out)
	}()
	// Wait until the cluster is up, then "press Ctrl-C".
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if left, _ := nettools.ListNS(prefix); len(left) >= 9 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if left, _ := nettools.ListNS(prefix); len(left) > 0 {
		t.Errorf("namespaces left behind after cancel: %v", left)
	}
}
