//go:build linux

package netlinktest_test

import (
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routes6 renders IPv6 routes of every table, without the ones IPv6
// autoconfiguration adds by itself (fe80::/64, ff00::/8 and link-local
// addresses), which the fake does not model.
func routes6(t *testing.T, n *testNS) []string {
	t.Helper()
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	ok(t, err, "route list")
	var keep []netlink.Route
	for _, r := range rs {
		if r.Dst != nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
			continue
		}
		keep = append(keep, r)
	}
	return renderRoutes(t, n, keep)
}

func addrs6(t *testing.T, n *testNS, l netlink.Link) []string {
	t.Helper()
	as, err := n.h.AddrList(l, netlink.FAMILY_V6)
	ok(t, err, "AddrList")
	var out []string
	for _, a := range as {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, fmt.Sprintf("%s scope=%d flags=%#x label=%q", a.IPNet, a.Scope, a.Flags, a.Label))
	}
	return out
}

func contractIPv6(t *testing.T, w world) {
	n := w(t)
	sameSet(t, "lo", routes6(t, n), []string{"table=255 type=2 ::1/128 dev=lo proto=2 scope=0"})
	va, _ := upPair(t, n, "va", "vb")
	idx := va.Attrs().Index
	a := addr("fd00::1/64")
	a.Flags = unix.IFA_F_NODAD
	ok(t, n.h.AddrAdd(va, a), "addr add")
	sameSet(t, "addresses", addrs6(t, n, va), []string{`fd00::1/64 scope=0 flags=0x82 label=""`})
	isErr(t, n.h.AddrAdd(va, a), unix.EEXIST, "addr add again")
	base := []string{
		"table=255 type=2 ::1/128 dev=lo proto=2 scope=0",
		"table=255 type=2 fd00::1/128 dev=va proto=2 scope=0",
		"table=254 type=1 fd00::/64 dev=va proto=2 scope=0 metric=256",
	}
	eventually(t, func() error {
		if got := routes6(t, n); len(got) != len(base) {
			return fmt.Errorf("routes: %v", got)
		}
		return nil
	})
	sameSet(t, "kernel routes of the address", routes6(t, n), base)
	// The kernel picks the scope of an IPv6 address; a /128 gets a
	// prefix route too; IFA_F_NOPREFIXROUTE suppresses it.
	for _, s := range []struct {
		addr  string
		flags int
	}{{"fd00:9::9/128", unix.IFA_F_NODAD}, {"fe80::1234/64", unix.IFA_F_NODAD}, {"fd00:2::1/64", unix.IFA_F_NODAD | unix.IFA_F_NOPREFIXROUTE}} {
		x := addr(s.addr)
		x.Flags = s.flags
		x.Scope = int(netlink.SCOPE_HOST)
		ok(t, n.h.AddrAdd(va, x), "addr add "+s.addr)
	}
	as, err := n.h.AddrList(va, netlink.FAMILY_V6)
	ok(t, err, "AddrList")
	var scopes []string
	for _, a := range as {
		scopes = append(scopes, fmt.Sprintf("%s scope=%d", a.IPNet, a.Scope))
	}
	eventually(t, func() error {
		as, _ := n.h.AddrList(va, netlink.FAMILY_V6)
		scopes = scopes[:0]
		for _, a := range as {
			if a.IPNet.String() == "fe80::1234/64" || !a.IP.IsLinkLocalUnicast() {
				scopes = append(scopes, fmt.Sprintf("%s scope=%d", a.IPNet, a.Scope))
			}
		}
		if len(scopes) != 4 {
			return fmt.Errorf("addresses %v", scopes)
		}
		return nil
	})
	sameSet(t, "IPv6 address scopes", scopes, []string{"fd00::1/64 scope=0", "fd00:9::9/128 scope=0", "fe80::1234/64 scope=253", "fd00:2::1/64 scope=0"})
	base = append(base,
		"table=255 type=2 fd00:9::9/128 dev=va proto=2 scope=0",
		"table=254 type=1 fd00:9::9/128 dev=va proto=2 scope=0 metric=256",
		"table=255 type=2 fd00:2::1/128 dev=va proto=2 scope=0")
	eventually(t, func() error { // local routes of new IPv6 addresses appear asynchronously
		if got := routes6(t, n); len(got) != len(base) {
			return fmt.Errorf("routes: %v", got)
		}
		return nil
	})
	sameSet(t, "kernel routes of a /128 and a noprefixroute address", routes6(t, n), base)
	gw := &netlink.Route{LinkIndex: idx, Dst: ipnet("fd01::/64"), Gw: net.ParseIP("fd00::2"), Protocol: 80}
	ok(t, n.h.RouteAdd(gw), "route via")
	isErr(t, n.h.RouteAdd(gw), unix.EEXIST, "route via again")
	ok(t, n.h.RouteReplace(gw), "replace")
	// The slot is (table, destination, metric), whatever the next hop:
	// NLM_F_EXCL refuses another gateway, replace swaps it.
	other := *gw
	other.Gw = net.ParseIP("fd00::3")
	isErr(t, n.h.RouteAdd(&other), unix.EEXIST, "route via another gateway, same metric")
	ok(t, n.h.RouteReplace(&other), "replace with another gateway")
	rs0, err := n.h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Dst: ipnet("fd01::/64")}, netlink.RT_FILTER_DST)
	ok(t, err, "list")
	sameSet(t, "one route after replacing its gateway", renderRoutes(t, n, rs0), []string{"table=254 type=1 fd01::/64 dev=va proto=80 scope=0 via=fd00::3 metric=1024"})
	ok(t, n.h.RouteReplace(gw), "replace back")
	ok(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("fd02::/64"), Protocol: 80}), "route dev")
	ok(t, n.h.RouteAdd(&netlink.Route{Dst: ipnet("fd03::/64"), Type: unix.RTN_BLACKHOLE, Protocol: 80}), "blackhole")
	sameSet(t, "user routes", routes6(t, n), append(base,
		"table=254 type=1 fd01::/64 dev=va proto=80 scope=0 via=fd00::2 metric=1024",
		"table=254 type=1 fd02::/64 dev=va proto=80 scope=0 metric=1024",
		"table=254 type=6 fd03::/64 dev=lo proto=80 scope=0 metric=1024",
	))
	isErr(t, n.h.RouteDel(&netlink.Route{LinkIndex: idx, Dst: ipnet("fd09::/64")}), unix.ESRCH, "delete missing")
	isErr(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("fd05::/64"), Gw: net.ParseIP("fd09::1")}), unix.EHOSTUNREACH, "gateway no route covers")
	ok(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("fd06::/64"), Gw: net.ParseIP("fd09::1"), Flags: int(netlink.FLAG_ONLINK)}), "onlink gateway")
	ok(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("fd07::/64"), Gw: net.ParseIP("fe80::99")}), "link-local gateway")
	ok(t, n.h.RouteAdd(&netlink.Route{Dst: ipnet("fd08::/64"), Gw: net.ParseIP("fd00::2")}), "gateway without device")
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Dst: ipnet("fd08::/64")}, netlink.RT_FILTER_DST)
	ok(t, err, "list")
	sameSet(t, "device filled in from the gateway", renderRoutes(t, n, rs), []string{"table=254 type=1 fd08::/64 dev=va proto=3 scope=0 via=fd00::2 metric=1024"})
	for _, d := range []string{"fd06::/64", "fd07::/64", "fd08::/64"} {
		ok(t, n.h.RouteDel(&netlink.Route{Dst: ipnet(d)}), "delete "+d)
	}
	ok(t, n.h.RouteDel(&netlink.Route{LinkIndex: idx, Dst: ipnet("fd02::/64")}), "delete")
	ok(t, n.h.LinkSetDown(va), "down")
	sameSet(t, "after link down", routes6(t, n), []string{
		"table=255 type=2 ::1/128 dev=lo proto=2 scope=0",
		"table=254 type=6 fd03::/64 dev=lo proto=80 scope=0 metric=1024",
	})
	sameSet(t, "IPv6 addresses after link down (keep_addr_on_down=0)", addrs6(t, n, va), nil)
}

// linkLocal renders the IPv6 state autoconfiguration makes for one link.
func linkLocal(t *testing.T, n *testNS, l netlink.Link) []string {
	t.Helper()
	var out []string
	as, err := n.h.AddrList(l, netlink.FAMILY_V6)
	ok(t, err, "AddrList")
	for _, a := range as {
		out = append(out, fmt.Sprintf("addr %s scope=%d flags=%#x", a.IPNet, a.Scope, a.Flags))
	}
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_UNSPEC, LinkIndex: l.Attrs().Index}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF)
	ok(t, err, "routes")
	return append(out, renderRoutes(t, n, rs)...)
}

func contractIPv6Autoconf(t *testing.T, w world) {
	n := w(t)
	hw := net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	ok(t, n.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "va", HardwareAddr: hw}, PeerName: "vb"}), "veth")
	va, vb := link(t, n, "va"), link(t, n, "vb")
	ok(t, n.h.LinkSetUp(va), "up va")
	sameSet(t, "no carrier, no link-local", linkLocal(t, n, va), nil)
	ok(t, n.h.LinkSetUp(vb), "up vb")
	want := []string{
		"addr fe80::ecee:eeff:feee:eeee/64 scope=253 flags=0x80",
		"table=254 type=1 fe80::/64 dev=va proto=2 scope=0 metric=256",
		"table=255 type=2 fe80::ecee:eeff:feee:eeee/128 dev=va proto=2 scope=0",
		"table=255 type=5 ff00::/8 dev=va proto=2 scope=0 metric=256",
	}
	eventually(t, func() error { // the kernel's duplicate address detection takes a second or two
		if got := linkLocal(t, n, va); !slices.Equal(got, want) {
			return fmt.Errorf("link-local state of va: %v", got)
		}
		return nil
	})
	ok(t, n.h.LinkSetHardwareAddr(va, net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0x01}), "new MAC")
	ok(t, n.h.LinkSetDown(vb), "peer down")
	sameSet(t, "link-local after a MAC change and carrier loss", linkLocal(t, n, va), want)
	ok(t, n.h.LinkSetDown(va), "down")
	sameSet(t, "link-local after link down", linkLocal(t, n, va), nil)
	ok(t, n.sys.SetSysctl("net/ipv6/conf/va/disable_ipv6", "1"), "disable IPv6")
	ok(t, n.h.LinkSetUp(va), "up")
	ok(t, n.h.LinkSetUp(vb), "up")
	eventually(t, func() error {
		if len(linkLocal(t, n, vb)) != 4 {
			return fmt.Errorf("vb: %v", linkLocal(t, n, vb))
		}
		return nil
	})
	sameSet(t, "with IPv6 disabled", linkLocal(t, n, va), nil)
	sameSet(t, "lo", linkLocal(t, n, link(t, n, "lo")), []string{
		"addr ::1/128 scope=254 flags=0x80",
		"table=255 type=2 ::1/128 dev=lo proto=2 scope=0",
	})
}

func contractIPv6AddressOrder(t *testing.T, w world) {
	n := w(t)
	hw := net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	ok(t, n.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "va", HardwareAddr: hw}, PeerName: "vb"}), "veth")
	va := link(t, n, "va")
	ok(t, n.h.LinkSetUp(va), "up")
	ok(t, n.h.LinkSetUp(link(t, n, "vb")), "up")
	eventually(t, func() error { // autoconfiguration first
		as, _ := n.h.AddrList(va, netlink.FAMILY_V6)
		if len(as) != 1 {
			return fmt.Errorf("addresses %v", as)
		}
		return nil
	})
	for _, s := range []string{"fd00::1/64", "fd00::2/64", "fe80::1/64"} {
		a := addr(s)
		a.Flags = unix.IFA_F_NODAD
		ok(t, n.h.AddrAdd(va, a), s)
	}
	want := []string{"fd00::2/64", "fd00::1/64", "fe80::1/64", "fe80::ecee:eeff:feee:eeee/64"}
	eventually(t, func() error {
		as, err := n.h.AddrList(va, netlink.FAMILY_V6)
		if err != nil {
			return err
		}
		var got []string
		for _, a := range as {
			got = append(got, a.IPNet.String())
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("IPv6 address order %v, want %v (global before link-local, newest first)", got, want)
		}
		return nil
	})
}
