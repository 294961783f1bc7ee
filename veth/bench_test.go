//go:build linux

package veth_test

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/veth"
)

// BenchmarkVethSetupTeardown plumbs and unplumbs one pod on the real
// kernel (root only): a node namespace, a pod namespace, default config
// (kernel proxy-ARP mode), one IPv4 address. One op is Setup+Teardown.
func BenchmarkVethSetupTeardown(b *testing.B) {
	node := kerneltest.NewNS(b, "vbench")
	pod := kerneltest.NewNS(b, "vbpod")
	p, err := veth.New(node.Handle, &veth.Config{Sysctl: veth.SysctlAt(node.Path)})
	if err != nil {
		b.Fatal(err)
	}
	spec := veth.Pod{Key: "default.bench-0", NetNS: pod.Path, Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.0.10/32")}}
	ctx := context.Background()
	for b.Loop() {
		if _, err := p.Setup(ctx, spec); err != nil {
			b.Fatal(err)
		}
		if err := p.Teardown(ctx, spec.Key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVethSetup times Setup alone (Teardown runs with the timer
// stopped): the kernel's veth deletion dominates Setup+Teardown.
func BenchmarkVethSetup(b *testing.B) {
	node := kerneltest.NewNS(b, "vbench")
	pod := kerneltest.NewNS(b, "vbpod")
	p, err := veth.New(node.Handle, &veth.Config{Sysctl: veth.SysctlAt(node.Path)})
	if err != nil {
		b.Fatal(err)
	}
	spec := veth.Pod{Key: "default.bench-0", NetNS: pod.Path, Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.0.10/32")}}
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if _, err := p.Setup(ctx, spec); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := p.Teardown(ctx, spec.Key); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkVethSetupIdempotent times Setup of an already plumbed pod: the
// read-only comparison that finds nothing to do.
func BenchmarkVethSetupIdempotent(b *testing.B) {
	node := kerneltest.NewNS(b, "vbench")
	pod := kerneltest.NewNS(b, "vbpod")
	p, err := veth.New(node.Handle, &veth.Config{Sysctl: veth.SysctlAt(node.Path)})
	if err != nil {
		b.Fatal(err)
	}
	spec := veth.Pod{Key: "default.bench-0", NetNS: pod.Path, Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.0.10/32")}}
	ctx := context.Background()
	if _, err := p.Setup(ctx, spec); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := p.Setup(ctx, spec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVethSetupTeardownParallel runs Setup+Teardown of 32 pods at a
// time (as a kubelet runs CNI ADD/DEL concurrently): the kernel's veth
// unregistering waits for an RCU grace period outside the RTNL lock, so
// concurrent Teardowns wait together. ns/op is per pod.
func BenchmarkVethSetupTeardownParallel(b *testing.B) {
	const pods = 32
	node := kerneltest.NewNS(b, "vbench")
	p, err := veth.New(node.Handle, &veth.Config{Sysctl: veth.SysctlAt(node.Path)})
	if err != nil {
		b.Fatal(err)
	}
	specs := make(chan veth.Pod, pods)
	for i := range pods {
		ns := kerneltest.NewNS(b, "vbpod")
		specs <- veth.Pod{Key: fmt.Sprintf("default.bench-%d", i), NetNS: ns.Path,
			Addrs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, 1, byte(i + 1)}), 32)}}
	}
	ctx := context.Background()
	b.SetParallelism((pods + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		spec := <-specs
		defer func() { specs <- spec }()
		for pb.Next() {
			if _, err := p.Setup(ctx, spec); err != nil {
				b.Error(err)
				return
			}
			if err := p.Teardown(ctx, spec.Key); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
