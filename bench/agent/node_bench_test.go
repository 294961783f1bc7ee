//go:build linux

package agentbench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/node"
)

// BenchmarkNodePeers is BenchmarkAgentPeers in process: package node on the
// real kernel of a fresh namespace, on the same bolt datastore of n peers,
// from New to Ready. It is the one to profile (-cpuprofile, -memprofile);
// heap-MB is the live heap after a GC once ready;
// TABBY_BENCH_HEAPPROFILE=file writes that heap's profile.
func BenchmarkNodePeers(b *testing.B) {
	kerneltest.Require(b)
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			db := filepath.Join(dir, "tabby.db")
			populate(b, db, n)
			var heapMax uint64
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				ns := nodeNS(b)
				runtime.GC()
				b.StartTimer()
				heap := runNode(b, ns, db, filepath.Join(dir, "state"), n)
				heapMax = max(heapMax, heap)
			}
			b.ReportMetric(float64(heapMax)/(1<<20), "heap-MB")
		})
	}
}

// runNode starts a node, waits until it is ready, measures the live heap
// and stops it (graceful: the announcement stays).
func runNode(b *testing.B, ns *kerneltest.NS, db, state string, n int) uint64 {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := bolt.Open(ctx, db, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	k, err := node.OpenKernel(ns.Path, "")
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	nd, err := node.New(node.Config{
		Name: "bench-node", NodeIP: netip.MustParsePrefix("10.4.7.61/24"), Uplink: "eth0",
		Store: st, Kernel: k, StateDir: state, HoldTime: time.Hour,
	})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- nd.Run(ctx) }()
	select {
	case <-nd.Started():
	case err := <-done:
		b.Fatalf("node stopped before ready: %v", err)
	}
	b.StopTimer()
	if got := vxRoutes(ns); got < n {
		b.Errorf("ready with %d routes on vxlan.calico, want %d", got, n)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if path := os.Getenv("TABBY_BENCH_HEAPPROFILE"); path != "" {
		// The live heap of a ready node (go test's -memprofile is taken
		// after the benchmark, when the node is gone).
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	return ms.HeapAlloc
}
