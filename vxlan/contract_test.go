//go:build linux

package vxlan

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/netlinktest"
)

// The fake is only worth what it matches: one scenario on netlinktest and
// on the real kernel must leave the same owned state and cost the same
// number of writes at every step.

// owned lists, in a comparable form, what a Manager owns in nl.
func owned(t *testing.T, nl Netlink, dev string) []string {
	t.Helper()
	names := map[int]string{}
	for _, n := range []string{dev, "eth0"} {
		if l, err := nl.LinkByName(n); err == nil {
			names[l.Attrs().Index] = n
		}
	}
	var out []string
	rs, err := nl.RouteListFiltered(afInet, &netlink.Route{Protocol: DefaultRouteProtocol, Table: rtTableMain}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		out = append(out, fmt.Sprintf("route %s type %d gw %s dev %s onlink %v", r.Dst, r.Type, r.Gw, names[r.LinkIndex], r.Flags&rtnhFOnlink != 0))
	}
	l, err := nl.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := nl.NeighList(l.Attrs().Index, afInet)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		out = append(out, fmt.Sprintf("neigh %s %s permanent %v", n.IP, n.HardwareAddr, n.State&nudPermanent != 0))
	}
	fs, err := nl.NeighList(l.Attrs().Index, afBridge)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.IP != nil {
			out = append(out, fmt.Sprintf("fdb %s dst %s permanent %v", f.HardwareAddr, f.IP, f.State&nudPermanent != 0))
		}
	}
	a := l.(*netlink.Vxlan)
	out = append(out, fmt.Sprintf("device vni %d port %d learning %v mtu %d mac %s", a.VxlanId, a.Port, a.Learning, a.MTU, a.HardwareAddr))
	slices.Sort(out)
	return out
}

func TestContractFakeMatchesKernel(t *testing.T) {
	kns := kernelNode(t, "10.4.7.61/24")
	fk, err := netlinktest.New().NewNamespace("/node")
	if err != nil {
		t.Fatal(err)
	}
	_ = fk.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}})
	eth0, _ := fk.LinkByName("eth0")
	_ = fk.LinkSetUp(eth0)
	a, _ := netlink.ParseAddr("10.4.7.61/24")
	_ = fk.AddrAdd(eth0, a)

	cfg := func() *Config {
		return &Config{Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"), Mode: ModeCrossSubnet,
			TunnelAddr: netip.MustParseAddr("10.244.235.128"), NodeName: "worker1", Offloader: &fakeOffloader{}}
	}
	mk, err := New(kns.Handle, cfg())
	if err != nil {
		t.Fatal(err)
	}
	mf, err := New(fk, cfg())
	if err != nil {
		t.Fatal(err)
	}
	near := Peer{Name: "master", NodeIP: netip.MustParseAddr("10.4.7.60"), TunnelIP: netip.MustParseAddr("10.244.219.64"),
		TunnelMAC: MACFromName("master"), Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.219.64/26")}}
	far := Peer{Name: "far", NodeIP: netip.MustParseAddr("192.0.2.10"), TunnelIP: netip.MustParseAddr("10.244.7.0"),
		TunnelMAC: MACFromName("far"), Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.7.0/26")},
		Addrs: []netip.Addr{netip.MustParseAddr("10.244.235.150")}}
	far2 := far
	far2.TunnelMAC = MACFromName("far-rebooted")
	far2.NodeIP = netip.MustParseAddr("192.0.2.11")
	steps := []struct {
		name  string
		local []netip.Prefix
		peers []Peer
	}{
		{"empty", nil, nil},
		{"local block", []netip.Prefix{netip.MustParsePrefix("10.244.235.128/26")}, nil},
		{"two peers", []netip.Prefix{netip.MustParsePrefix("10.244.235.128/26")}, []Peer{near, far}},
		{"no-op", []netip.Prefix{netip.MustParsePrefix("10.244.235.128/26")}, []Peer{near, far}},
		{"far rebooted and moved", []netip.Prefix{netip.MustParsePrefix("10.244.235.128/26")}, []Peer{near, far2}},
		{"near gone", []netip.Prefix{netip.MustParsePrefix("10.244.235.128/26")}, []Peer{far2}},
		{"all gone", nil, nil},
	}
	for _, s := range steps {
		var writes [2]int
		for i, m := range []*Manager{mk, mf} {
			if err := m.SetLocalBlocks(s.local); err != nil {
				t.Fatal(err)
			}
			if err := m.SetPeers(s.peers); err != nil {
				t.Fatal(err)
			}
			if err := m.Sync(context.Background()); err != nil {
				t.Fatalf("%s (%s): %v", s.name, []string{"kernel", "fake"}[i], err)
			}
			writes[i] = m.LastResult().Writes
		}
		k, f := owned(t, kns.Handle, "vxlan.calico"), owned(t, fk, "vxlan.calico")
		if !slices.Equal(k, f) || writes[0] != writes[1] {
			t.Fatalf("%s: kernel (%d writes):\n%s\nfake (%d writes):\n%s", s.name, writes[0], strings.Join(k, "\n"), writes[1], strings.Join(f, "\n"))
		}
	}
}
