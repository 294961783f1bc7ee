//go:build linux

package vxlan

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/internal/nlbatch"
)

// benchPeers returns n peers with one block each. Test addresses are
// confined to 10.244.0.0/16 (pods) and the four underlay ranges, which hold
// only 1,024 /26 blocks: the blocks are /29s (8,192 fit), one route each as
// with /26s. Underlay addresses cycle through the allowed underlays.
func benchPeers(n int) []Peer {
	unders := [][3]byte{{10, 4, 7}, {192, 0, 2}, {198, 51, 100}, {203, 0, 113}}
	peers := make([]Peer, n)
	for i := range peers {
		u := unders[(i/250)%4]
		base := netip.AddrFrom4([4]byte{10, 244, byte(i >> 5), byte(i&31) << 3})
		peers[i] = Peer{
			Name:      fmt.Sprintf("node-%05d", i),
			NodeIP:    netip.AddrFrom4([4]byte{u[0], u[1], u[2], byte(2 + i%250)}),
			TunnelIP:  base,
			TunnelMAC: net.HardwareAddr{0x02, 0xbe, 0, 0, byte(i >> 8), byte(i)},
			Blocks:    []netip.Prefix{netip.PrefixFrom(base, 29)},
		}
	}
	return peers
}

// batchedNL is a handle with a batching socket beside it, as
// node.OpenKernel builds.
type batchedNL struct {
	*netlink.Handle
	conn *nlbatch.Conn
}

func (n batchedNL) WriteBatch(ws []nlbatch.Write) []error { return n.conn.WriteBatch(ws) }

func benchManager(b testing.TB, batched ...bool) (*kerneltest.NS, *Manager) {
	b.Helper()
	ns := kerneltest.NewNS(b, "vxb")
	other := kerneltest.NewNS(b, "vxbo")
	kerneltest.Veth(b, ns, "eth0", other, "eth0")
	ns.AddAddr(b, "eth0", "10.4.7.1/24")
	var nl Netlink = ns.Handle
	if len(batched) > 0 && batched[0] {
		c, err := nlbatch.Dial(ns.Path)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		nl = batchedNL{Handle: ns.Handle, conn: c}
	}
	m, err := New(nl, &Config{
		Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.1/24"),
		TunnelAddr: netip.MustParseAddr("10.244.255.192"), NodeName: "bench",
		Offloader: &fakeOffloader{},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.SetLocalBlocks([]netip.Prefix{netip.MustParsePrefix("10.244.255.192/26")}); err != nil {
		b.Fatal(err)
	}
	return ns, m
}

// BenchmarkSyncPeers: Sync from an empty device to n peers, one block each
// (3n kernel writes), on the real kernel in a namespace, through a plain
// *netlink.Handle (one write per system call) and batched (nlbatch, as
// node.OpenKernel's Netlink does), side by side.
func BenchmarkSyncPeers(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		for _, batched := range []bool{false, true} {
			b.Run(fmt.Sprintf("peers=%d/netlink=%s", n, map[bool]string{false: "handle", true: "batched"}[batched]), func(b *testing.B) {
				ns, m := benchManager(b, batched)
				ctx := context.Background()
				peers := benchPeers(n)
				b.ReportAllocs()
				writes := 0
				for b.Loop() {
					b.StopTimer()
					// Start from an empty device: deleting it drops every
					// route, neighbour and FDB entry on it.
					if l, err := ns.Handle.LinkByName(m.Device()); err == nil {
						if err := ns.Handle.LinkDel(l); err != nil {
							b.Fatal(err)
						}
					}
					_ = m.SetPeers(nil)
					if err := m.Sync(ctx); err != nil {
						b.Fatal(err)
					}
					if err := m.SetPeers(peers); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if err := m.Sync(ctx); err != nil {
						b.Fatal(err)
					}
					writes += m.LastResult().Writes
				}
				b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
				if r := m.LastResult(); r.Routes != n+1 || r.Neighbours != n || r.FDB != n {
					b.Fatalf("in place: %+v", r)
				}
			})
		}
	}
}

// BenchmarkResync: a Sync with n peers in place and nothing to change.
func BenchmarkResync(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			_, m := benchManager(b)
			ctx := context.Background()
			if err := m.SetPeers(benchPeers(n)); err != nil {
				b.Fatal(err)
			}
			if err := m.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			writes := 0
			for b.Loop() {
				if err := m.Sync(ctx); err != nil {
					b.Fatal(err)
				}
				writes += m.LastResult().Writes
			}
			if writes != 0 {
				b.Fatalf("no-op syncs wrote %d times", writes)
			}
			b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
		})
	}
}

// BenchmarkManagerMemory reports the heap a Manager retains with n peers
// (its desired state; observed state is not kept between Syncs).
func BenchmarkManagerMemory(b *testing.B) {
	for _, n := range []int{5000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			var retained uint64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				peers := benchPeers(n) // the caller's copy is dropped below
				m, err := New(&nopNetlink{}, &Config{Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.1/24"), TunnelAddr: netip.MustParseAddr("10.244.255.192"), NodeName: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				if err := m.SetPeers(peers); err != nil {
					b.Fatal(err)
				}
				peers = nil
				runtime.GC()
				runtime.ReadMemStats(&after)
				retained = after.HeapAlloc - before.HeapAlloc
				runtime.KeepAlive(m)
			}
			b.ReportMetric(float64(retained), "retained-B")
			b.ReportMetric(float64(retained)/float64(n), "B/peer")
		})
	}
}
