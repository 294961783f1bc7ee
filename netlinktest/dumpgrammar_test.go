package netlinktest_test

import (
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/netlinktest"
	"github.com/vishvananda/netlink"
)

// Every line of a Dump matches the grammar documented on Dump.
func TestDumpGrammar(t *testing.T) {
	k := netlinktest.New()
	pod, err := k.NewNamespace("/pod")
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}}))
	eth0, _ := k.LinkByName("eth0")
	must(k.LinkSetUp(eth0))
	must(k.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 4, 7, 61), Mask: net.CIDRMask(24, 32)}}))
	must(k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "cali1", MTU: 1450}, PeerName: "eth0", PeerNamespace: netlink.NsFd(pod.Fd())}))
	vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vxlan.calico"}, VxlanId: 4096, Port: 4789, VtepDevIndex: eth0.Attrs().Index, SrcAddr: net.IPv4(10, 4, 7, 61)}
	must(k.LinkAdd(vx))
	l, _ := k.LinkByName("vxlan.calico")
	must(k.LinkSetUp(l))
	must(k.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4(10, 244, 1, 0), Mask: net.CIDRMask(26, 32)}, Gw: net.IPv4(10, 244, 1, 0), LinkIndex: l.Attrs().Index, Flags: 0x4 /* RTNH_F_ONLINK */, Protocol: 80}))
	must(k.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, IP: net.IPv4(10, 244, 1, 0), HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}, State: 0x80 /* NUD_PERMANENT */, Family: netlinktest.FamilyV4}))
	must(k.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, IP: net.IPv4(10, 4, 7, 62), HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}, State: 0x80 /* NUD_PERMANENT */, Family: netlinktest.FamilyBridge, Flags: 0x2 /* NTF_SELF */}))
	must(k.SetSysctl("net/ipv4/ip_forward", "1"))

	grammar := []*regexp.Regexp{
		regexp.MustCompile(`^netns (\S+|"")$`),
		regexp.MustCompile(`^  link \d+ \S+ (loopback|veth|vxlan|bridge|dummy) (down|up,lower_up|up,no-carrier) mtu \d+( mac \S+)?( txqlen \d+)?( peer \d+:\S+(@\S+)?)?( master \S+)?( alias ".*")?$`),
		regexp.MustCompile(`^    vxlan id \d+ port \d+( dev \S+)?( local \S+)?( group \S+)? (learning|nolearning)( ttl \d+)?( tos \d+)?( ageing \d+)?( proxy)?( rsc)?( l2miss)?( l3miss)?( noudpcsum)?( gbp)?( external)?$`),
		regexp.MustCompile(`^    addr \S+/\d+( brd \S+)? scope \S+( secondary)?( label \S+)?( valid_lft \d+ preferred_lft \d+)?$`),
		regexp.MustCompile(`^  route (\S+ )?(default|\S+)( via \S+)?( dev \S+)? table \S+ proto \S+ scope \S+( src \S+)?( metric \d+)?( tos 0x[0-9a-f]+)?( mtu \d+)?( onlink)?( linkdown)?$`),
		regexp.MustCompile(`^  neigh \S+ dev \S+ lladdr \S+ \S+( flags 0x[0-9a-f]+)?$`),
		regexp.MustCompile(`^  fdb \S+ dev \S+( dst \S+)? \S+( flags 0x[0-9a-f]+)?$`),
		regexp.MustCompile(`^  sysctl \S+=\S*$`),
	}
	seen := map[int]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(k.Dump(), "\n"), "\n") {
		ok := false
		for i, re := range grammar {
			if re.MatchString(line) {
				ok, seen[i] = true, true
				break
			}
		}
		if !ok {
			t.Errorf("line does not match the documented grammar: %q", line)
		}
	}
	if len(seen) != len(grammar) {
		t.Errorf("the machine exercised %d of the %d line kinds:\n%s", len(seen), len(grammar), k.Dump())
	}
}
