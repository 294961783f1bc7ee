//go:build linux

package netlinktest_test

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// snapshot renders the state of namespaces in a kernel-independent way
// (names instead of indexes, generated MACs left out, neighbours sorted):
// the same operations must give the same snapshot on the fake and on the
// kernel.
func snapshot(t *testing.T, nss map[string]*testNS) string {
	t.Helper()
	var names []string
	for name := range nss {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		n := nss[name]
		fmt.Fprintf(&b, "ns %s\n", name)
		ls, err := n.h.LinkList()
		ok(t, err, "LinkList")
		for _, l := range ls {
			s := linkSummary(l)
			if hw := l.Attrs().HardwareAddr.String(); hw == "ee:ee:ee:ee:ee:ee" || strings.HasPrefix(hw, "66:3a:1e:5c:01:") {
				s += " mac=" + hw // given; others are generated
			}
			fmt.Fprintf(&b, "  %d %s\n", l.Attrs().Index, s)
			if v, isVx := l.(*netlink.Vxlan); isVx {
				fmt.Fprintf(&b, "    vxlan id=%d dev=%d local=%s port=%d learning=%v age=%d csum=%v\n", v.VxlanId, v.VtepDevIndex, v.SrcAddr, v.Port, v.Learning, v.Age, v.UDPCSum)
			}
			as, err := n.h.AddrList(l, netlink.FAMILY_V4)
			ok(t, err, "AddrList")
			for _, a := range as {
				fmt.Fprintf(&b, "    addr %s brd %s label %s scope %d flags %#x\n", a.IPNet, a.Broadcast, a.Label, a.Scope, a.Flags)
			}
		}
		// In the order the kernel dumps them: tables, then destinations.
		rs, err := n.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		ok(t, err, "routes")
		for _, r := range rs {
			if r.Family == netlink.FAMILY_V6 && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
				continue // autoconfigured; settles asynchronously on the kernel
			}
			fmt.Fprintf(&b, "  route %s\n", routeString(t, n, r))
		}
		for _, fam := range []int{netlink.FAMILY_V4, unix.AF_BRIDGE} {
			ns, err := n.h.NeighList(0, fam)
			ok(t, err, "NeighList")
			var lines []string
			for _, e := range ns {
				if fam == unix.AF_BRIDGE && e.IP == nil {
					continue // per-device multicast entries (not modelled)
				}
				lines = append(lines, fmt.Sprintf("  neigh fam=%d dev=%d %s %s state=%#x type=%d flags=%#x", e.Family, e.LinkIndex, e.IP, e.HardwareAddr, e.State, e.Type, e.Flags))
			}
			sort.Strings(lines)
			for _, l := range lines {
				b.WriteString(l + "\n")
			}
		}
		for _, key := range []string{"net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding"} {
			v, err := n.sys.Sysctl(key)
			ok(t, err, key)
			fmt.Fprintf(&b, "  sysctl %s=%s\n", key, v)
		}
	}
	return b.String()
}

// seedNode builds the seed's worker1 (see worker1 in golden_test.go) on a
// world, step by step as tabby's packages would.
func seedNode(t *testing.T, w world) map[string]*testNS {
	node, pod1, pod2 := w(t), w(t), w(t)
	must := func(err error, what string) {
		t.Helper()
		ok(t, err, what)
	}
	must(node.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ens33", TxQLen: -1}, PeerName: "switch0", PeerTxQLen: -1}), "uplink")
	ens33 := link(t, node, "ens33")
	must(node.h.LinkSetUp(ens33), "up")
	must(node.h.LinkSetUp(link(t, node, "switch0")), "up")
	must(node.h.AddrAdd(ens33, addr("10.4.7.61/24")), "addr")
	must(node.h.RouteAdd(&netlink.Route{Gw: net.IPv4(10, 4, 7, 1)}), "default route")
	must(node.h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vxlan.calico", HardwareAddr: net.HardwareAddr{0x66, 0x3a, 0x1e, 0x5c, 0x01, 0x61}},
		VxlanId: 4096, VtepDevIndex: ens33.Attrs().Index, SrcAddr: net.IPv4(10, 4, 7, 61), Port: 4789}), "vxlan")
	vx := link(t, node, "vxlan.calico")
	must(node.h.LinkSetUp(vx), "vxlan up")
	must(node.h.AddrAdd(vx, addr("10.244.235.128/32")), "tunnel address")
	for i, pod := range []*testNS{pod1, pod2} {
		ip := []string{"10.244.235.135", "10.244.235.140"}[i]
		host := fmt.Sprintf("cali%011x", i+1)
		must(node.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host, MTU: 1450, HardwareAddr: net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}},
			PeerName: "eth0", PeerNamespace: netlink.NsFd(pod.fd)}), "pod veth")
		eth0 := link(t, pod, "eth0")
		must(pod.h.LinkSetUp(eth0), "eth0 up")
		must(pod.h.AddrAdd(eth0, addr(ip+"/32")), "pod address")
		must(pod.h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: ipnet("169.254.1.1/32"), Scope: netlink.SCOPE_LINK}), "gateway route")
		must(pod.h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.IPv4(169, 254, 1, 1)}), "default route")
		hl := link(t, node, host)
		must(node.h.LinkSetUp(hl), "host side up")
		must(node.h.RouteAdd(&netlink.Route{LinkIndex: hl.Attrs().Index, Dst: ipnet(ip + "/32"), Scope: netlink.SCOPE_LINK, Protocol: 80}), "pod route")
		must(node.sys.SetSysctl("net/ipv4/conf/"+host+"/proxy_arp", "1"), "proxy_arp")
	}
	must(node.sys.SetSysctl("net/ipv4/ip_forward", "1"), "ip_forward")
	vtep2 := net.HardwareAddr{0x66, 0x3a, 0x1e, 0x5c, 0x01, 0x62}
	must(node.h.RouteReplace(&netlink.Route{LinkIndex: vx.Attrs().Index, Dst: ipnet("10.244.189.64/26"), Gw: net.IPv4(10, 244, 189, 64), Flags: int(netlink.FLAG_ONLINK), Protocol: 80}), "peer block")
	must(node.h.NeighSet(&netlink.Neigh{LinkIndex: vx.Attrs().Index, State: netlink.NUD_PERMANENT, IP: net.IPv4(10, 244, 189, 64), HardwareAddr: vtep2}), "peer neigh")
	must(node.h.NeighSet(&netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, IP: net.IPv4(10, 4, 7, 62), HardwareAddr: vtep2}), "peer fdb")
	must(node.h.RouteReplace(&netlink.Route{Dst: ipnet("10.244.219.64/26"), Gw: net.IPv4(10, 4, 7, 60), Protocol: 80}), "crosssubnet peer")
	must(node.h.RouteReplace(&netlink.Route{Dst: ipnet("10.244.235.128/26"), Type: unix.RTN_BLACKHOLE, Protocol: 80}), "own block")
	// Churn: a third pod comes and goes, a peer moves.
	must(node.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "cali00000000003"}, PeerName: "eth9"}), "third pod")
	must(node.h.LinkDel(link(t, node, "eth9")), "third pod gone")
	must(node.h.NeighSet(&netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, IP: net.IPv4(10, 4, 7, 63), HardwareAddr: vtep2}), "peer moved")
	return map[string]*testNS{"node": node, "pod1": pod1, "pod2": pod2}
}

// TestDifferentialSeedNode builds the same node on the fake and on the
// kernel and compares everything both report.
func TestDifferentialSeedNode(t *testing.T) {
	var want string
	t.Run("fake", func(t *testing.T) { want = snapshot(t, seedNode(t, fakeWorld(t))) })
	t.Run("kernel", func(t *testing.T) {
		w := kernelWorld(t)
		nss := seedNode(t, w)
		// Carrier and operstate settle asynchronously on the kernel.
		deadline := time.Now().Add(5 * time.Second)
		got := snapshot(t, nss)
		for got != want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			got = snapshot(t, nss)
		}
		if got != want {
			t.Fatalf("kernel and fake differ (- fake, + kernel):\n%s", lineDiff(want, got))
		}
	})
	t.Log("\n" + want)
}

// lineDiff lists lines only in a (-) or only in b (+).
func lineDiff(a, b string) string {
	in := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if mb[l] == 0 {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if ma[l] == 0 {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
