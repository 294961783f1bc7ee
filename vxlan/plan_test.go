package vxlan

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func peerN(i int) Peer {
	return Peer{
		Name:      "node" + string(rune('0'+i)),
		NodeIP:    netip.AddrFrom4([4]byte{10, 4, 7, byte(60 + i)}),
		TunnelIP:  netip.AddrFrom4([4]byte{10, 244, byte(i), 0}),
		TunnelMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, byte(i)},
		Blocks:    []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 26)},
	}
}

func planStrings(steps []step) string {
	var b []string
	for _, s := range steps {
		b = append(b, s.String())
	}
	return strings.Join(b, "\n")
}

// apply simulates the steps on an observed state (what a perfect kernel
// would then hold), for the "plan of the result is empty" property.
func simulate(have state, steps []step) state {
	for _, s := range steps {
		switch s.Action {
		case setNeigh:
			have.Neighs = del(have.Neighs, func(n neigh) bool { return n.IP == s.Neigh.IP })
			have.Neighs = append(have.Neighs, s.Neigh)
		case delNeigh:
			have.Neighs = del(have.Neighs, func(n neigh) bool { return n.IP == s.Neigh.IP })
		case setFDB:
			replaced := false
			for i, f := range have.FDB {
				if f.MAC == s.FDB.MAC && !replaced {
					have.FDB[i].Dst, replaced = s.FDB.Dst, true
				}
			}
			if !replaced {
				have.FDB = append(have.FDB, s.FDB)
			}
		case delFDB:
			have.FDB = del(have.FDB, func(f fdb) bool { return f.MAC == s.FDB.MAC && f.Dst == s.FDB.Dst })
		case addRoute, replaceRoute:
			have.Routes = del(have.Routes, func(r route) bool { return r.Dst == s.Route.Dst })
			have.Routes = append(have.Routes, s.Route)
		case delRoute:
			have.Routes = del(have.Routes, func(r route) bool { return r.Dst == s.Route.Dst })
		}
	}
	return have
}

func del[T any](s []T, f func(T) bool) []T {
	out := s[:0:0]
	for _, x := range s {
		if !f(x) {
			out = append(out, x)
		}
	}
	return out
}

func TestPlan(t *testing.T) {
	local := []netip.Prefix{netip.MustParsePrefix("10.244.1.0/26")}
	p2, p3 := peerN(2), peerN(3)
	p3.NodeIP = netip.MustParseAddr("192.0.2.63") // another subnet
	p2b := p2
	p2b.TunnelMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x22}
	p2c := p2
	p2c.Addrs = []netip.Addr{netip.MustParseAddr("10.244.1.9")}
	sub := netip.MustParsePrefix("10.4.7.0/24")
	const vx, par = 5, 2
	want := func(mode Mode, ps ...Peer) state { return desiredState(mode, sub, ps, local, vx, par) }
	for _, tc := range []struct {
		name string
		have state
		want state
		plan string
	}{
		{"empty to one peer", want(ModeAlways), want(ModeAlways, p2), `set fdb 02:00:00:00:00:02 dst 10.4.7.62
set neigh 10.244.2.0 lladdr 02:00:00:00:00:02
add route 10.244.2.0/26 via 10.244.2.0 dev #5 onlink`},
		{"no-op", want(ModeAlways, p2, p3), want(ModeAlways, p2, p3), ``},
		{"blackhole from scratch", state{}, want(ModeAlways), `add route blackhole 10.244.1.0/26`},
		{"mac change", want(ModeAlways, p2), want(ModeAlways, p2b), `set fdb 02:00:00:00:00:22 dst 10.4.7.62
set neigh 10.244.2.0 lladdr 02:00:00:00:00:22
del fdb 02:00:00:00:00:02 dst 10.4.7.62`},
		{"peer removed", want(ModeAlways, p2, p3), want(ModeAlways, p3), `del route 10.244.2.0/26 via 10.244.2.0 dev #5 onlink
del neigh 10.244.2.0 lladdr 02:00:00:00:00:02
del fdb 02:00:00:00:00:02 dst 10.4.7.62`},
		{"borrowed address", want(ModeAlways, p2), want(ModeAlways, p2c), `add route 10.244.1.9/32 via 10.244.2.0 dev #5 onlink`},
		{"always to crosssubnet", want(ModeAlways, p2, p3), want(ModeCrossSubnet, p2, p3), `replace route 10.244.2.0/26 via 10.4.7.62 dev #2
del neigh 10.244.2.0 lladdr 02:00:00:00:00:02
del fdb 02:00:00:00:00:02 dst 10.4.7.62`},
		{"node moved underlay address", want(ModeAlways, p2), func() state { q := p2; q.NodeIP = netip.MustParseAddr("10.4.7.99"); return want(ModeAlways, q) }(),
			`set fdb 02:00:00:00:00:02 dst 10.4.7.99`},
		{"learned neighbour is overwritten, duplicate fdb dst removed", state{
			Neighs: []neigh{{IP: p2.TunnelIP, MAC: macOf(p2.TunnelMAC)}},
			FDB:    []fdb{{MAC: macOf(p2.TunnelMAC), Dst: p2.NodeIP}, {MAC: macOf(p2.TunnelMAC), Dst: netip.MustParseAddr("10.4.7.200")}},
			Routes: want(ModeAlways, p2).Routes,
		}, want(ModeAlways, p2), `set neigh 10.244.2.0 lladdr 02:00:00:00:00:02
del fdb 02:00:00:00:00:02 dst 10.4.7.200`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps := plan(tc.want, tc.have)
			if got := planStrings(steps); got != tc.plan {
				t.Fatalf("plan:\n%s\nwant:\n%s", got, tc.plan)
			}
			after := simulate(tc.have, steps)
			if again := plan(tc.want, after); len(again) != 0 {
				t.Fatalf("plan after applying is not empty:\n%s", planStrings(again))
			}
		})
	}
}

func TestValidatePeers(t *testing.T) {
	p := peerN(2)
	bad := []func(*Peer){
		func(p *Peer) { p.Name = "" },
		func(p *Peer) { p.NodeIP = netip.Addr{} },
		func(p *Peer) { p.TunnelIP = netip.MustParseAddr("fd00::1") },
		func(p *Peer) { p.TunnelMAC = net.HardwareAddr{1, 2, 3, 4, 5, 6} },
		func(p *Peer) { p.TunnelMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0} },
		func(p *Peer) { p.Blocks = []netip.Prefix{netip.MustParsePrefix("10.244.2.1/26")} },
		func(p *Peer) { p.Blocks = []netip.Prefix{netip.MustParsePrefix("fd00::/64")} },
		func(p *Peer) { p.Addrs = []netip.Addr{{}} },
	}
	for i, f := range bad {
		q := p
		f(&q)
		if _, err := validatePeers(false, []Peer{q}); err == nil {
			t.Errorf("case %d accepted: %+v", i, q)
		}
	}
	q := peerN(3)
	q.Blocks = p.Blocks
	if _, err := validatePeers(false, []Peer{p, q}); err == nil {
		t.Error("duplicate block accepted")
	}
	q = peerN(3)
	q.TunnelMAC = p.TunnelMAC
	if _, err := validatePeers(false, []Peer{p, q}); err == nil {
		t.Error("duplicate MAC accepted")
	}
	if _, err := validatePeers(false, []Peer{p, p}); err == nil {
		t.Error("duplicate name accepted")
	}
}

func TestMACFromName(t *testing.T) {
	a, b := MACFromName("worker1"), MACFromName("worker1")
	if a.String() != b.String() || a.String() == MACFromName("worker2").String() {
		t.Fatal("not stable or not distinct")
	}
	if a[0]&2 == 0 || a[0]&1 != 0 {
		t.Fatalf("%s not locally administered unicast", a)
	}
}

func TestChecksumPolicy(t *testing.T) {
	for rel, want := range map[string]bool{"5.7.19": true, "5.8.0": false, "4.19.0-17-amd64": true, "6.18.44-fc": false, "3.10.0-1160.el7.x86_64": true} {
		got, err := needsChecksumOff(rel)
		if err != nil || got != want {
			t.Errorf("%s: %v %v", rel, got, err)
		}
	}
	if _, err := needsChecksumOff("garbage"); err == nil {
		t.Error("garbage parsed")
	}
}

func FuzzParseKernelRelease(f *testing.F) {
	for _, s := range []string{"5.4.0-42-generic", "6.18.44-fc", "5.7", "4", "", "a.b", "5.-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ma, mi, err := ParseKernelRelease(s)
		if err == nil && (ma < 0 || mi < 0) {
			t.Fatalf("%q -> %d.%d", s, ma, mi)
		}
	})
}

func TestConfigDefaults(t *testing.T) {
	if _, err := (*Config)(nil).withDefaults(); err == nil {
		t.Fatal("nil config accepted")
	}
	c, err := (&Config{Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"), TunnelAddr: netip.MustParseAddr("10.244.1.0"), NodeName: "n"}).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Device != "vxlan.calico" || c.VNI != 4096 || c.Port != 4789 || c.Mode != ModeAlways || c.ChecksumOffload != ChecksumAuto || c.RouteProtocol != 80 {
		t.Fatalf("%+v", c)
	}
	c6, err := (&Config{Parent: "eth0", LocalAddr: netip.MustParsePrefix("fd00::1/64"), TunnelAddr: netip.MustParseAddr("fd10::1"), NodeName: "n"}).withDefaults()
	if err != nil || c6.Device != "vxlan-v6.calico" {
		t.Fatalf("%+v %v", c6, err)
	}
	for _, bad := range []Config{
		{Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"), TunnelAddr: netip.MustParseAddr("10.244.1.0")},
		{Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"), TunnelAddr: netip.MustParseAddr("10.244.1.0"), NodeName: "n", VNI: 1 << 24},
		{Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"), TunnelAddr: netip.MustParseAddr("10.244.1.0"), NodeName: "n", Mode: 7},
		{Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"), TunnelAddr: netip.MustParseAddr("10.244.1.0"), NodeName: "n", RouteProtocol: 2},
		{Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"), TunnelAddr: netip.MustParseAddr("10.244.1.0"), MAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}},
		{LocalAddr: netip.MustParsePrefix("10.4.7.61/24"), TunnelAddr: netip.MustParseAddr("10.244.1.0"), NodeName: "n"},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}
