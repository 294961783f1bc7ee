package vxlan_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/vxlan"
)

// benchPeers6 returns n IPv6 peers with one /122 block each in
// fd00:10:244::/48 and underlay addresses in 2001:db8:4::/48.
func benchPeers6(n int) []vxlan.Peer {
	peers := make([]vxlan.Peer, n)
	for i := range peers {
		v := uint32(i) << 6 // /122 blocks: 64 addresses each
		block := netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 1, 12: byte(v >> 24), 13: byte(v >> 16), 14: byte(v >> 8), 15: byte(v)})
		peers[i] = vxlan.Peer{
			Name:      fmt.Sprintf("node-%05d", i),
			NodeIP:    netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 4, 14: byte((i + 2) >> 8), 15: byte(i + 2)}),
			TunnelIP:  block,
			TunnelMAC: net.HardwareAddr{0x02, 0xbe, 0, 0, byte(i >> 8), byte(i)},
			Blocks:    []netip.Prefix{netip.PrefixFrom(block, 122)},
		}
	}
	return peers
}

func fakeManager6(b testing.TB) (*netlinktest.Kernel, *vxlan.Manager) {
	b.Helper()
	k, err := netlinktest.New().NewNamespace("/node")
	if err != nil {
		b.Fatal(err)
	}
	if err := k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}}); err != nil {
		b.Fatal(err)
	}
	eth0, err := k.LinkByName("eth0")
	if err != nil {
		b.Fatal(err)
	}
	if err := k.LinkSetUp(eth0); err != nil {
		b.Fatal(err)
	}
	a, _ := netlink.ParseAddr("2001:db8:4::1/64")
	if err := k.AddrAdd(eth0, a); err != nil {
		b.Fatal(err)
	}
	m, err := vxlan.New(k, &vxlan.Config{
		Parent: "eth0", LocalAddr: netip.MustParsePrefix("2001:db8:4::1/64"),
		TunnelAddr: netip.MustParseAddr("fd00:10:244:ffff::"), NodeName: "bench",
		Offloader: noOffload{}, KernelRelease: "6.1.0",
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.SetLocalBlocks([]netip.Prefix{netip.MustParsePrefix("fd00:10:244:ffff::/122")}); err != nil {
		b.Fatal(err)
	}
	return k, m
}

// BenchmarkSyncPeers6Fake: Sync of an IPv6 Manager (vxlan-v6.calico) from
// an empty device to n IPv6 peers, one block each (3n writes: FDB entry,
// neighbour, route), on the in-memory kernel (netlinktest): the Manager's
// own cost at that size, without the kernel's.
func BenchmarkSyncPeers6Fake(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			k, m := fakeManager6(b)
			ctx := context.Background()
			peers := benchPeers6(n)
			b.ReportAllocs()
			writes := 0
			for b.Loop() {
				b.StopTimer()
				if l, err := k.LinkByName(m.Device()); err == nil {
					if err := k.LinkDel(l); err != nil {
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

// BenchmarkResync6Fake: a no-op Sync with n IPv6 peers in place.
func BenchmarkResync6Fake(b *testing.B) {
	_, m := fakeManager6(b)
	ctx := context.Background()
	if err := m.SetPeers(benchPeers6(5000)); err != nil {
		b.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		if w := m.LastResult().Writes; w != 0 {
			b.Fatalf("no-op Sync wrote %d", w)
		}
	}
}
