package vxlan_test

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/vxlan"
)

var _ vxlan.Netlink = (*netlinktest.Kernel)(nil)

// Kernel constants that netlink defines only on Linux.
const (
	scopeLink    netlink.Scope = 253  // RT_SCOPE_LINK, netlink.SCOPE_LINK
	nudReachable               = 0x02 // NUD_REACHABLE, netlink.NUD_REACHABLE
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// fakeNode is a fake machine whose namespace "/node" has eth0 (a dummy
// link) with addr.
func fakeNode(t *testing.T, addr string) *netlinktest.Kernel {
	t.Helper()
	k, err := netlinktest.New().NewNamespace("/node")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}}); err != nil {
		t.Fatal(err)
	}
	eth0, _ := k.LinkByName("eth0")
	if err := k.LinkSetUp(eth0); err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr(addr)
	if err := k.AddrAdd(eth0, a); err != nil {
		t.Fatal(err)
	}
	return k
}

// noOffload records nothing: the fake has no ethtool.
type noOffload struct{}

func (noOffload) SetTxChecksum(string, bool) error { return nil }

func fakeManager(t *testing.T, k *netlinktest.Kernel, mode vxlan.Mode) *vxlan.Manager {
	t.Helper()
	m, err := vxlan.New(k, &vxlan.Config{
		Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"),
		TunnelAddr: netip.MustParseAddr("10.244.235.128"), NodeName: "worker1", Mode: mode,
		Offloader: noOffload{}, KernelRelease: "6.1.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetLocalBlocks([]netip.Prefix{netip.MustParsePrefix("10.244.235.128/26")}); err != nil {
		t.Fatal(err)
	}
	return m
}

// The seed's three nodes, plus one on another subnet.
var (
	master = vxlan.Peer{Name: "master", NodeIP: netip.MustParseAddr("10.4.7.60"), TunnelIP: netip.MustParseAddr("10.244.219.64"),
		TunnelMAC: mustMAC("66:a1:d3:0e:5b:01"), Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.219.64/26")}}
	worker2 = vxlan.Peer{Name: "worker2", NodeIP: netip.MustParseAddr("10.4.7.62"), TunnelIP: netip.MustParseAddr("10.244.189.64"),
		TunnelMAC: mustMAC("66:a1:d3:0e:5b:02"), Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.189.64/26")},
		Addrs: []netip.Addr{netip.MustParseAddr("10.244.235.190")}}
	remote = vxlan.Peer{Name: "remote", NodeIP: netip.MustParseAddr("192.0.2.10"), TunnelIP: netip.MustParseAddr("10.244.7.0"),
		TunnelMAC: mustMAC("66:a1:d3:0e:5b:03"), Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.7.0/26"), netip.MustParsePrefix("10.244.8.0/26")}}
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func syncPeers(t *testing.T, m *vxlan.Manager, k *netlinktest.Kernel, peers ...vxlan.Peer) int {
	t.Helper()
	if err := m.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
	before := k.Writes()
	if err := m.Sync(context.Background()); err != nil {
		t.Fatalf("sync: %v\n%s", err, k.Dump())
	}
	if got := m.LastResult().Writes; got != k.Writes()-before {
		t.Fatalf("manager counted %d writes, kernel saw %d", got, k.Writes()-before)
	}
	return k.Writes() - before
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(want) != got {
		t.Fatalf("%s differs (run with -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestFakeGoldenAlways(t *testing.T) {
	k := fakeNode(t, "10.4.7.61/24")
	m := fakeManager(t, k, vxlan.ModeAlways)
	if w := syncPeers(t, m, k, master, worker2, remote); w == 0 {
		t.Fatal("nothing written")
	}
	golden(t, "always", k.Dump())
	if w := syncPeers(t, m, k, master, worker2, remote); w != 0 {
		t.Fatalf("no-op sync wrote %d", w)
	}
}

func TestFakeGoldenCrossSubnet(t *testing.T) {
	k := fakeNode(t, "10.4.7.61/24")
	m := fakeManager(t, k, vxlan.ModeCrossSubnet)
	syncPeers(t, m, k, master, worker2, remote)
	golden(t, "crosssubnet", k.Dump())
	if w := syncPeers(t, m, k, master, worker2, remote); w != 0 {
		t.Fatalf("no-op sync wrote %d", w)
	}
}

func TestFakePeerLifecycle(t *testing.T) {
	k := fakeNode(t, "10.4.7.61/24")
	m := fakeManager(t, k, vxlan.ModeAlways)
	syncPeers(t, m, k)
	one := master
	if w := syncPeers(t, m, k, one); w != 3 {
		t.Fatalf("one peer with one block: %d writes, want 3", w)
	}
	if w := syncPeers(t, m, k, one); w != 0 {
		t.Fatalf("no-op: %d writes", w)
	}
	// New MAC after a reboot: neighbour replaced, FDB entry moved.
	one.TunnelMAC = mustMAC("66:a1:d3:0e:5b:99")
	if w := syncPeers(t, m, k, one); w != 3 {
		t.Fatalf("mac change: %d writes", w)
	}
	d := k.Dump()
	if strings.Contains(d, "66:a1:d3:0e:5b:01") || !strings.Contains(d, "66:a1:d3:0e:5b:99") {
		t.Fatalf("old MAC left or new MAC missing:\n%s", d)
	}
	// Removal: route, neighbour, FDB entry go; the blackhole stays.
	if w := syncPeers(t, m, k); w != 3 {
		t.Fatalf("removal: %d writes", w)
	}
	golden(t, "empty", k.Dump())
}

// State left by an earlier run (another Manager, peers that no longer
// exist) is cleaned; what is still wanted is not rewritten; what tabby does
// not own is left alone.
func TestFakeStaleFromEarlierRun(t *testing.T) {
	k := fakeNode(t, "10.4.7.61/24")
	old := fakeManager(t, k, vxlan.ModeAlways)
	syncPeers(t, old, k, master, worker2, remote)
	// Someone else's routes: another protocol, and a veth-style pod route
	// with tabby's protocol but no gateway.
	vx, _ := k.LinkByName("vxlan.calico")
	eth0, _ := k.LinkByName("eth0")
	foreign := []*netlink.Route{
		{Dst: ipnet("10.99.0.0/16"), Gw: net.ParseIP("10.4.7.1"), LinkIndex: eth0.Attrs().Index, Protocol: 3 /* RTPROT_BOOT */},
		{Dst: ipnet("10.244.235.130/32"), LinkIndex: eth0.Attrs().Index, Scope: scopeLink, Protocol: vxlan.DefaultRouteProtocol},
	}
	for _, r := range foreign {
		if err := k.RouteAdd(r); err != nil {
			t.Fatal(err)
		}
	}
	// A learned (not permanent) neighbour is not ours either.
	if err := k.NeighSet(&netlink.Neigh{LinkIndex: vx.Attrs().Index, IP: net.ParseIP("10.244.1.1"), HardwareAddr: mustMAC("02:00:00:00:01:01"), State: nudReachable}); err != nil {
		t.Fatal(err)
	}
	m := fakeManager(t, k, vxlan.ModeAlways) // the new run
	// worker2 and remote are gone: 3 routes (block+borrowed) + 2 for remote's
	// blocks = 4 routes? worker2 has a block and an address, remote two
	// blocks: 4 routes, 2 neighbours, 2 FDB entries.
	if w := syncPeers(t, m, k, master); w != 8 {
		t.Fatalf("cleanup: %d writes, want 8\n%s", w, k.Dump())
	}
	d := k.Dump()
	for _, gone := range []string{"10.244.189.64", "10.244.7.0", "10.244.8.0", "192.0.2.10", "66:a1:d3:0e:5b:02"} {
		if strings.Contains(d, gone) {
			t.Errorf("stale %s left:\n%s", gone, d)
		}
	}
	for _, kept := range []string{"10.99.0.0/16", "10.244.235.130", "10.244.1.1", "10.244.219.64/26"} {
		if !strings.Contains(d, kept) {
			t.Errorf("%s removed:\n%s", kept, d)
		}
	}
}

func ipnet(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// Injected failures: errors are joined and reported, a failed neighbour
// holds back its peer's routes, the rest is applied, and the next Sync
// finishes the job.
func TestFakeInjectedFailures(t *testing.T) {
	for _, tc := range []struct {
		op   string
		nth  int
		what string // in the error
	}{
		{"NeighSet", 1, "set fdb 66:a1:d3:0e:5b:01"}, // master's FDB entry (FDB first, sorted by MAC)
		{"NeighSet", 3, "set neigh 10.244.189.64"},   // worker2's neighbour (sorted by IP)
		{"RouteAdd", 2, "add route"},
		{"LinkAdd", 1, "add device"},
		{"AddrAdd", 1, "add address"},
		{"LinkSetUp", 1, "up"},
	} {
		t.Run(tc.op, func(t *testing.T) {
			k := fakeNode(t, "10.4.7.61/24")
			m := fakeManager(t, k, vxlan.ModeAlways)
			if err := m.SetPeers([]vxlan.Peer{master, worker2}); err != nil {
				t.Fatal(err)
			}
			k.FailNth(tc.op, tc.nth, syscall.EIO)
			err := m.Sync(context.Background())
			if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), tc.what) {
				t.Fatalf("err = %v, want EIO mentioning %q", err, tc.what)
			}
			r := m.LastResult()
			t.Logf("after failure: %+v", r)
			if tc.op == "NeighSet" {
				// The failed peer has no routes: no traffic into a tunnel
				// without neighbour or FDB entry.
				failed := r.Failed[0]
				p := map[string]vxlan.Peer{"master": master, "worker2": worker2}[failed]
				if strings.Contains(k.Dump(), p.Blocks[0].String()) {
					t.Fatalf("route for %s installed without its neighbour/FDB:\n%s", failed, k.Dump())
				}
			}
			if err := m.Sync(context.Background()); err != nil {
				t.Fatalf("second sync: %v", err)
			}
			want := fakeNode(t, "10.4.7.61/24")
			wm := fakeManager(t, want, vxlan.ModeAlways)
			syncPeers(t, wm, want, master, worker2)
			if k.Dump() != want.Dump() {
				t.Fatalf("after recovery:\n%s\nwant:\n%s", k.Dump(), want.Dump())
			}
		})
	}
}

// Drift: MTU, address, down state repaired in place; an incompatible
// device (wrong VNI) replaced; a deleted device restored.
func TestFakeDeviceRepair(t *testing.T) {
	k := fakeNode(t, "10.4.7.61/24")
	m := fakeManager(t, k, vxlan.ModeAlways)
	syncPeers(t, m, k, master)
	clean := k.Dump()
	vx, _ := k.LinkByName("vxlan.calico")
	idx := vx.Attrs().Index
	_ = k.LinkSetMTU(vx, 1400)
	_ = k.LinkSetDown(vx)
	a, _ := netlink.ParseAddr("10.244.235.128/32")
	_ = k.AddrDel(vx, a)
	stray, _ := netlink.ParseAddr("10.1.1.1/32")
	_ = k.AddrAdd(vx, stray)
	syncPeers(t, m, k, master)
	vx, _ = k.LinkByName("vxlan.calico")
	if vx.Attrs().Index != idx {
		t.Fatal("compatible drift replaced the device")
	}
	if k.Dump() != clean {
		t.Fatalf("not repaired:\n%s\nwant:\n%s", k.Dump(), clean)
	}
	// Incompatible: another VNI.
	_ = k.LinkDel(vx)
	bad := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vxlan.calico"}, VxlanId: 1, VtepDevIndex: 2, Port: 4789}
	if eth0, _ := k.LinkByName("eth0"); eth0 != nil {
		bad.VtepDevIndex = eth0.Attrs().Index
	}
	if err := k.LinkAdd(bad); err != nil {
		t.Fatal(err)
	}
	syncPeers(t, m, k, master)
	vx, _ = k.LinkByName("vxlan.calico")
	if v := vx.(*netlink.Vxlan); v.VxlanId != 4096 {
		t.Fatalf("VNI %d", v.VxlanId)
	}
	if w := syncPeers(t, m, k, master); w != 0 {
		t.Fatalf("after replace, no-op wrote %d", w)
	}
	// Deleted device: everything back on the next Sync.
	_ = k.LinkDel(vx)
	syncPeers(t, m, k, master)
	if w := syncPeers(t, m, k, master); w != 0 {
		t.Fatalf("after restore, no-op wrote %d", w)
	}
}

func TestFakeParentMissing(t *testing.T) {
	k, _ := netlinktest.New().NewNamespace("/node")
	m := fakeManager(t, k, vxlan.ModeAlways)
	if err := m.Sync(context.Background()); !errors.Is(err, vxlan.ErrNoParent) {
		t.Fatalf("err = %v", err)
	}
	if k.Writes() != 0 {
		t.Fatal("wrote without a parent")
	}
}

// IPv6 is designed in: one Manager per family, the IPv6 one on its own
// device with /128 tunnel address and AF_INET6 neighbours.
func TestFakeIPv6(t *testing.T) {
	k := fakeNode(t, "2001:db8:7::61/64")
	m, err := vxlan.New(k, &vxlan.Config{
		Parent: "eth0", LocalAddr: netip.MustParsePrefix("2001:db8:7::61/64"),
		TunnelAddr: netip.MustParseAddr("fd00:10:244:1::"), NodeName: "worker1",
		Offloader: noOffload{}, KernelRelease: "6.1.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.Device() != "vxlan-v6.calico" {
		t.Fatal(m.Device())
	}
	p := vxlan.Peer{Name: "worker2", NodeIP: netip.MustParseAddr("2001:db8:7::62"), TunnelIP: netip.MustParseAddr("fd00:10:244:2::"),
		TunnelMAC: mustMAC("66:a1:d3:0e:5b:02"), Blocks: []netip.Prefix{netip.MustParsePrefix("fd00:10:244:2::/122")}}
	if w := syncPeers(t, m, k, p); w == 0 {
		t.Fatal("nothing written")
	}
	if w := syncPeers(t, m, k, p); w != 0 {
		t.Fatalf("no-op wrote %d\n%s", w, k.Dump())
	}
	golden(t, "ipv6", k.Dump())
	if err := m.SetPeers([]vxlan.Peer{worker2}); !errors.Is(err, vxlan.ErrInvalidPeer) {
		t.Fatalf("IPv4 peer on the IPv6 manager: %v", err)
	}
}
