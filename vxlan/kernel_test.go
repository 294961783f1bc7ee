//go:build linux

package vxlan

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/kerneltest"
)

// kernelNode is a namespace with an underlay device "eth0" (a dummy
// link) holding addr.
func kernelNode(t *testing.T, addr string) *kerneltest.NS {
	t.Helper()
	ns := kerneltest.NewNS(t, "vx")
	other := kerneltest.NewNS(t, "vxo")
	kerneltest.Veth(t, ns, "eth0", other, "eth0")
	ns.AddAddr(t, "eth0", addr)
	return ns
}

func TestKernelSyncPeers(t *testing.T) {
	ns := kernelNode(t, "10.4.7.61/24")
	ctx := context.Background()
	off := &fakeOffloader{}
	m, err := New(ns.Handle, &Config{
		Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"),
		TunnelAddr: netip.MustParseAddr("10.244.235.128"), NodeName: "worker1",
		Offloader: off, KernelRelease: "5.4.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetLocalBlocks([]netip.Prefix{netip.MustParsePrefix("10.244.235.128/26")}); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatalf("%v\n%s", err, ns.Dump())
	}
	l := ns.Link(t, "vxlan.calico")
	v, ok := l.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("vxlan.calico is %T", l)
	}
	if v.VxlanId != 4096 || v.Port != 4789 || v.Learning || v.MTU != 1450 || v.VtepDevIndex != ns.Link(t, "eth0").Attrs().Index ||
		!v.SrcAddr.Equal(net.ParseIP("10.4.7.61")) || v.HardwareAddr.String() != MACFromName("worker1").String() || v.Flags&net.FlagUp == 0 {
		t.Fatalf("device: %+v", v)
	}
	if len(off.calls) != 1 || off.calls[0] != "vxlan.calico=false" {
		t.Fatalf("offload calls %v", off.calls)
	}
	// Resync with no change: zero writes.
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if w := m.LastResult().Writes; w != 0 {
		t.Fatalf("no-op sync wrote %d times\n%s", w, ns.Dump())
	}
	peer := Peer{Name: "worker2", NodeIP: netip.MustParseAddr("10.4.7.62"), TunnelIP: netip.MustParseAddr("10.244.189.64"),
		TunnelMAC: MACFromName("worker2"), Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.189.64/26")}}
	if err := m.SetPeers([]Peer{peer}); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatalf("%v\n%s", err, ns.Dump())
	}
	if r := m.LastResult(); r.Writes != 3 || r.Routes != 2 || r.Neighbours != 1 || r.FDB != 1 {
		t.Fatalf("one peer: %+v\n%s", r, ns.Dump())
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if r := m.LastResult(); r.Writes != 0 {
		t.Fatalf("resync: %+v\n%s", r, ns.Dump())
	}
	// MAC change: neighbour replaced, new FDB entry, old one removed.
	peer.TunnelMAC = MACFromName("worker2-rebooted")
	_ = m.SetPeers([]Peer{peer})
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if r := m.LastResult(); r.Writes != 3 || r.FDB != 1 || r.Neighbours != 1 {
		t.Fatalf("mac change: %+v\n%s", r, ns.Dump())
	}
	if err := m.Sync(ctx); err != nil || m.LastResult().Writes != 0 {
		t.Fatalf("resync after mac change: %v %+v", err, m.LastResult())
	}
	fdbs, _ := ns.Handle.NeighList(v.Index, afBridge)
	var got []string
	for _, f := range fdbs {
		got = append(got, f.HardwareAddr.String()+" "+f.IP.String())
	}
	t.Logf("fdb: %v", got)
	if !strings.Contains(strings.Join(got, ","), peer.TunnelMAC.String()+" 10.4.7.62") {
		t.Fatalf("fdb %v", got)
	}
	// Remove the peer: route, neighbour, fdb gone; blackhole stays.
	_ = m.SetPeers(nil)
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if r := m.LastResult(); r.Writes != 3 || r.Routes != 1 || r.FDB != 0 || r.Neighbours != 0 {
		t.Fatalf("remove: %+v\n%s", r, ns.Dump())
	}
	// Delete the device: next Sync restores it.
	if err := ns.Handle.LinkDel(ns.Link(t, "vxlan.calico")); err != nil {
		t.Fatal(err)
	}
	_ = m.SetPeers([]Peer{peer})
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil || m.LastResult().Writes != 0 {
		t.Fatalf("resync after restore: %v %+v\n%s", err, m.LastResult(), ns.Dump())
	}
}

type fakeOffloader struct{ calls []string }

func (f *fakeOffloader) SetTxChecksum(dev string, on bool) error {
	f.calls = append(f.calls, dev+"="+map[bool]string{true: "true", false: "false"}[on])
	return nil
}

// The default Offloader really turns TX checksum offload off, in the
// device's namespace, through the ethtool ioctl.
func TestKernelChecksumOffloadIoctl(t *testing.T) {
	ns := kernelNode(t, "10.4.7.61/24")
	m, err := New(ns.Handle, &Config{
		Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"),
		TunnelAddr: netip.MustParseAddr("10.244.235.128"), NodeName: "worker1",
		ChecksumOffload: ChecksumOff, Namespace: ns.Path,
	})
	if err != nil {
		t.Fatal(err)
	}
	read := func() bool {
		var on bool
		if err := ns.Do(func() error { var err error; on, err = txChecksum("vxlan.calico"); return err }); err != nil {
			t.Fatal(err)
		}
		return on
	}
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if read() {
		t.Fatal("tx checksum offload still on")
	}
	m2, _ := New(ns.Handle, &Config{
		Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"),
		TunnelAddr: netip.MustParseAddr("10.244.235.128"), NodeName: "worker1",
		ChecksumOffload: ChecksumOn, Namespace: ns.Path,
	})
	if err := m2.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !read() {
		t.Fatal("tx checksum offload not turned back on")
	}
}

// The parent going down flushes the routes through it (and, on the real
// kernel, may take the VXLAN device's carrier); the next Sync restores
// everything, and the one after writes nothing.
func TestKernelParentDownUp(t *testing.T) {
	ns := kernelNode(t, "10.4.7.61/24")
	ctx := context.Background()
	m, err := New(ns.Handle, &Config{
		Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"), Mode: ModeCrossSubnet,
		TunnelAddr: netip.MustParseAddr("10.244.235.128"), NodeName: "worker1", Offloader: &fakeOffloader{},
	})
	if err != nil {
		t.Fatal(err)
	}
	near := Peer{Name: "worker2", NodeIP: netip.MustParseAddr("10.4.7.62"), TunnelIP: netip.MustParseAddr("10.244.189.64"),
		TunnelMAC: MACFromName("worker2"), Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.189.64/26")}}
	far := Peer{Name: "far", NodeIP: netip.MustParseAddr("192.0.2.9"), TunnelIP: netip.MustParseAddr("10.244.7.0"),
		TunnelMAC: MACFromName("far"), Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.7.0/26")}}
	if err := m.SetPeers([]Peer{near, far}); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	want := ns.Dump()
	eth0 := ns.Link(t, "eth0")
	if err := ns.Handle.LinkSetDown(eth0); err != nil {
		t.Fatal(err)
	}
	down := ns.Dump()
	if err := ns.Handle.LinkSetUp(eth0); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatalf("%v\n%s", err, ns.Dump())
	}
	t.Logf("while down:\n%s\nrestored with %d writes", down, m.LastResult().Writes)
	if m.LastResult().Writes == 0 {
		t.Fatal("nothing was restored")
	}
	if got := ns.Dump(); got != want {
		t.Fatalf("after down/up:\n%s\nwant:\n%s", got, want)
	}
	if err := m.Sync(ctx); err != nil || m.LastResult().Writes != 0 {
		t.Fatalf("resync: %v %+v", err, m.LastResult())
	}
}

// On the real kernel: an incompatible device of the same name (another VNI,
// learning on) is replaced; compatible drift (MTU, MAC, address, down) is
// repaired in place.
func TestKernelDeviceReplaceAndRepair(t *testing.T) {
	ns := kernelNode(t, "10.4.7.61/24")
	eth0 := ns.Link(t, "eth0")
	bad := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vxlan.calico"}, VxlanId: 1, VtepDevIndex: eth0.Attrs().Index, Port: 4789, Learning: true}
	if err := ns.Handle.LinkAdd(bad); err != nil {
		t.Fatal(err)
	}
	m, err := New(ns.Handle, &Config{
		Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"),
		TunnelAddr: netip.MustParseAddr("10.244.235.128"), NodeName: "worker1", Offloader: &fakeOffloader{},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	v := ns.Link(t, "vxlan.calico").(*netlink.Vxlan)
	if v.VxlanId != 4096 || v.Learning {
		t.Fatalf("not replaced: %+v", v)
	}
	idx := v.Index
	want := ns.Dump()
	if err := ns.Handle.LinkSetMTU(v, 1300); err != nil {
		t.Fatal(err)
	}
	if err := ns.Handle.LinkSetDown(v); err != nil {
		t.Fatal(err)
	}
	if err := ns.Handle.LinkSetHardwareAddr(v, net.HardwareAddr{2, 0, 0, 0, 0, 9}); err != nil {
		t.Fatal(err)
	}
	ns.AddAddr(t, "vxlan.calico", "10.1.2.3/32")
	if err := ns.Handle.AddrDel(v, &netlink.Addr{IPNet: kerneltest.IPNet("10.244.235.128/32")}); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ns.Link(t, "vxlan.calico").Attrs().Index; got != idx {
		t.Fatalf("compatible drift replaced the device (%d -> %d)", idx, got)
	}
	if got := ns.Dump(); got != want {
		t.Fatalf("not repaired:\n%s\nwant:\n%s", got, want)
	}
	if err := m.Sync(ctx); err != nil || m.LastResult().Writes != 0 {
		t.Fatalf("resync: %v %+v", err, m.LastResult())
	}
}
