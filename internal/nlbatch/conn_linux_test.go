//go:build linux

package nlbatch_test

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/internal/nlbatch"
)

// setup gives ns a vxlan device vx0 (ifindex known to the caller through
// the returned link) with IPv4 and IPv6 addresses, as both contenders need.
func setup(t *testing.T, ns *kerneltest.NS) int {
	t.Helper()
	mac, _ := net.ParseMAC("66:00:00:00:00:01")
	vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx0", HardwareAddr: mac}, VxlanId: 4096, Port: 4789}
	if err := ns.Handle.LinkAdd(vx); err != nil {
		t.Fatal(err)
	}
	l := ns.Link(t, "vx0")
	if err := ns.Handle.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	ns.AddAddr(t, "vx0", "10.9.0.1/32")
	return l.Attrs().Index
}

// writes is a sequence exercising every Op and shape the encoder takes,
// with three that the kernel refuses, and more than MaxBatch routes.
func writes(idx int) []nlbatch.Write {
	mac, _ := net.ParseMAC("66:00:00:00:00:02")
	mac6, _ := net.ParseMAC("66:00:00:00:00:03")
	ip := net.ParseIP
	route := func(dst, gw string) *netlink.Route {
		r := &netlink.Route{Dst: kerneltest.IPNet(dst), Protocol: 80, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST, LinkIndex: idx, Flags: int(netlink.FLAG_ONLINK)}
		if gw != "" {
			r.Gw = ip(gw)
		}
		return r
	}
	ws := []nlbatch.Write{
		{Op: nlbatch.NeighSet, Neigh: &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF, IP: ip("192.0.2.7"), HardwareAddr: mac}},
		{Op: nlbatch.NeighSet, Neigh: &netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: ip("10.9.0.2"), HardwareAddr: mac}},
		{Op: nlbatch.NeighSet, Neigh: &netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET6, State: netlink.NUD_PERMANENT, IP: ip("fd00::2"), HardwareAddr: mac6}},
		{Op: nlbatch.RouteAdd, Route: route("10.244.1.0/26", "10.9.0.2")},
		{Op: nlbatch.RouteAdd, Route: route("10.244.1.0/26", "10.9.0.2")}, // EEXIST
		{Op: nlbatch.RouteAdd, Route: &netlink.Route{Dst: kerneltest.IPNet("10.244.0.0/26"), Protocol: 80, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_BLACKHOLE}},
		{Op: nlbatch.RouteReplace, Route: route("10.244.1.0/26", "10.9.0.3")},
		{Op: nlbatch.RouteReplace, Route: route("10.244.2.0/26", "10.9.0.3")},
		{Op: nlbatch.RouteAdd, Route: &netlink.Route{Dst: kerneltest.IPNet("10.244.3.0/26"), Gw: ip("10.9.0.2"), LinkIndex: idx, Flags: int(netlink.FLAG_ONLINK), Protocol: 80, Table: 300}},
		{Op: nlbatch.RouteAdd, Route: route("fd00:244::/122", "fd00::2")},
		{Op: nlbatch.RouteDel, Route: route("10.244.2.0/26", "10.9.0.3")},
		{Op: nlbatch.RouteDel, Route: route("10.244.9.0/26", "10.9.0.3")},                                                                                         // ESRCH
		{Op: nlbatch.NeighDel, Neigh: &netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: ip("10.9.0.99"), HardwareAddr: mac}}, // ENOENT
		{Op: nlbatch.RouteAdd, Route: &netlink.Route{Dst: kerneltest.IPNet("10.244.8.0/26"), Priority: 7}},                                                        // unsupported, not sent
	}
	for i := range 2*nlbatch.MaxBatch + 3 {
		ws = append(ws, nlbatch.Write{Op: nlbatch.RouteAdd, Route: route(fmt.Sprintf("10.245.%d.%d/30", i/64, (i%64)*4), "10.9.0.2")})
	}
	return ws
}

// state is what the writes touch, in a form both namespaces can compare.
func state(t *testing.T, ns *kerneltest.NS, idx int) string {
	t.Helper()
	var lines []string
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rs, err := ns.Handle.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Protocol == 80 {
				lines = append(lines, fmt.Sprintf("route %s table %d type %d flags %d", r, r.Table, r.Type, r.Flags))
			}
		}
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6, unix.AF_BRIDGE} {
		ns2, err := ns.Handle.NeighList(idx, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns2 {
			if n.State&netlink.NUD_PERMANENT != 0 && n.IP != nil {
				lines = append(lines, fmt.Sprintf("neigh fam %d %s %s state %#x flags %#x", fam, n.IP, n.HardwareAddr, n.State, n.Flags))
			}
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestConnMatchesHandle applies the same writes one call at a time through
// *netlink.Handle in one namespace and batched through a Conn in another:
// the kernel state and every write's answer are the same.
func TestConnMatchesHandle(t *testing.T) {
	kerneltest.Require(t)
	a, b := kerneltest.NewNS(t, "nba"), kerneltest.NewNS(t, "nbb")
	ia, ib := setup(t, a), setup(t, b)
	if ia != ib {
		t.Fatalf("ifindexes differ: %d, %d", ia, ib)
	}
	ws := writes(ia)
	want := nlbatch.Sequential(a.Handle, ws)
	c, err := nlbatch.Dial(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := c.WriteBatch(ws)
	if len(got) != len(ws) {
		t.Fatalf("%d answers for %d writes", len(got), len(ws))
	}
	var refused []string
	for i := range ws {
		var we, ge syscall.Errno
		wOK, gOK := errors.As(want[i], &we), errors.As(got[i], &ge)
		switch {
		case ws[i].Route != nil && ws[i].Route.Priority != 0:
			// The Handle sends this one; the Conn refuses it unsent.
			if !errors.Is(got[i], nlbatch.ErrUnsupported) {
				t.Errorf("write %d (%v with a priority): %v, want ErrUnsupported", i, ws[i].Op, got[i])
			}
			if want[i] == nil {
				if err := a.Handle.RouteDel(ws[i].Route); err != nil {
					t.Fatal(err)
				}
			}
		case (want[i] == nil) != (got[i] == nil) || wOK != gOK || we != ge:
			t.Errorf("write %d (%v): handle %v, batch %v", i, ws[i].Op, want[i], got[i])
		case got[i] != nil:
			refused = append(refused, ge.Error())
		}
	}
	if w := []string{"file exists", "no such process", "no such file or directory"}; !slices.Equal(refused, w) {
		t.Errorf("kernel refused %q, want %q", refused, w)
	}
	sa, sb := state(t, a, ia), state(t, b, ib)
	if sa != sb {
		t.Fatalf("state after Handle:\n%s\n\nafter Conn:\n%s", sa, sb)
	}
	if n := strings.Count(sb, "\n") + 1; n < 2*nlbatch.MaxBatch+3+6 {
		t.Fatalf("only %d entries:\n%s", n, sb)
	}
}

// TestConnInNamespace: a Conn dialled at a path writes there, not in the
// caller's namespace.
func TestConnInNamespace(t *testing.T) {
	kerneltest.Require(t)
	ns := kerneltest.NewNS(t, "nbn")
	idx := setup(t, ns)
	c, err := nlbatch.Dial(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := &netlink.Route{Dst: kerneltest.IPNet("10.244.7.0/26"), Gw: net.ParseIP("10.9.0.2"), LinkIndex: idx, Flags: int(netlink.FLAG_ONLINK), Protocol: 80}
	if errs := c.WriteBatch([]nlbatch.Write{{Op: nlbatch.RouteAdd, Route: r}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if !strings.Contains(state(t, ns, idx), "10.244.7.0/26") {
		t.Fatalf("route not in the namespace:\n%s", state(t, ns, idx))
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if errs := c.WriteBatch([]nlbatch.Write{{Op: nlbatch.RouteDel, Route: r}}); !errors.Is(errs[0], nlbatch.ErrNoAck) {
		t.Fatalf("write on a closed Conn: %v, want ErrNoAck", errs[0])
	}
}
