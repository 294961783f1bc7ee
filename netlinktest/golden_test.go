//go:build linux

package netlinktest_test

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/netlinktest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		ok(t, os.WriteFile(path, []byte(got), 0o644), "write golden")
		return
	}
	want, err := os.ReadFile(path)
	ok(t, err, "read golden (run with -update to create it)")
	if got != string(want) {
		t.Fatalf("%s differs from %s (run with -update to accept):\n%s", name, path, got)
	}
}

// worker1 builds the seed's worker1: uplink ens33, vxlan.calico with its
// tunnel address, two pods, routes to worker2's block (Always mode) and
// to a same-subnet node (CrossSubnet), and the per-peer neighbour and FDB
// entries.
func worker1(t *testing.T) *netlinktest.Kernel {
	k := netlinktest.New()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	lo, _ := k.LinkByName("lo")
	must(k.LinkSetUp(lo))
	must(k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ens33", TxQLen: -1}, PeerName: "switch0", PeerTxQLen: -1}))
	ens33, _ := k.LinkByName("ens33")
	must(k.LinkSetUp(ens33))
	must(k.LinkSetUp(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "switch0"}}))
	must(k.AddrAdd(ens33, addr("10.4.7.61/24")))
	must(k.RouteAdd(&netlink.Route{Gw: net.IPv4(10, 4, 7, 1)}))
	must(k.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vxlan.calico", HardwareAddr: net.HardwareAddr{0x66, 0x3a, 0x1e, 0x5c, 0x01, 0x61}},
		VxlanId: 4096, VtepDevIndex: ens33.Attrs().Index, SrcAddr: net.IPv4(10, 4, 7, 61), Port: 4789}))
	vx, _ := k.LinkByName("vxlan.calico")
	must(k.LinkSetUp(vx))
	must(k.AddrAdd(vx, addr("10.244.235.128/32")))
	for i, ip := range []string{"10.244.235.135", "10.244.235.140"} {
		path := fmt.Sprintf("/var/run/netns/pod%d", i+1)
		pod, err := k.NewNamespace(path)
		must(err)
		host := fmt.Sprintf("cali%011x", i+1)
		must(k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host, MTU: 1450, HardwareAddr: net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}},
			PeerName: "eth0", PeerNamespace: netlink.NsFd(pod.Fd())}))
		eth0, _ := pod.LinkByName("eth0")
		plo, _ := pod.LinkByName("lo")
		must(pod.LinkSetUp(plo))
		must(pod.LinkSetUp(eth0))
		must(pod.AddrAdd(eth0, addr(ip+"/32")))
		must(pod.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: ipnet("169.254.1.1/32"), Scope: netlink.SCOPE_LINK}))
		must(pod.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.IPv4(169, 254, 1, 1)}))
		hl, _ := k.LinkByName(host)
		must(k.LinkSetUp(hl))
		must(k.RouteAdd(&netlink.Route{LinkIndex: hl.Attrs().Index, Dst: ipnet(ip + "/32"), Scope: netlink.SCOPE_LINK, Protocol: 80}))
		must(k.SetSysctl("net/ipv4/conf/"+host+"/proxy_arp", "1"))
		must(k.SetSysctl("net/ipv4/neigh/"+host+"/proxy_delay", "0"))
		must(k.SetSysctl("net/ipv6/conf/"+host+"/accept_ra", "0"))
	}
	must(k.SetSysctl("net/ipv4/ip_forward", "1"))
	// worker2 over VXLAN.
	vtep2 := net.HardwareAddr{0x66, 0x3a, 0x1e, 0x5c, 0x01, 0x62}
	must(k.RouteReplace(&netlink.Route{LinkIndex: vx.Attrs().Index, Dst: ipnet("10.244.189.64/26"), Gw: net.IPv4(10, 244, 189, 64), Flags: int(netlink.FLAG_ONLINK), Protocol: 80}))
	must(k.NeighSet(&netlink.Neigh{LinkIndex: vx.Attrs().Index, State: netlink.NUD_PERMANENT, IP: net.IPv4(10, 244, 189, 64), HardwareAddr: vtep2}))
	must(k.NeighSet(&netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, IP: net.IPv4(10, 4, 7, 62), HardwareAddr: vtep2}))
	// A same-subnet node in CrossSubnet mode: a plain route.
	must(k.RouteReplace(&netlink.Route{Dst: ipnet("10.244.219.64/26"), Gw: net.IPv4(10, 4, 7, 60), Protocol: 80}))
	// The node's own block.
	must(k.RouteReplace(&netlink.Route{Dst: ipnet("10.244.235.128/26"), Type: unix.RTN_BLACKHOLE, Protocol: 80}))
	return k
}

func TestGoldenDump(t *testing.T) {
	k := worker1(t)
	golden(t, "worker1", k.Dump())
	if k.Dump() != k.Dump() {
		t.Fatal("Dump is not deterministic")
	}
	if worker1(t).Dump() != k.Dump() {
		t.Fatal("two identical machines dump differently")
	}
	// Tearing a pod down changes exactly its parts.
	ok(t, k.DeleteNamespace("/var/run/netns/pod2"), "delete pod2")
	golden(t, "worker1-pod2-gone", k.Dump())
}
