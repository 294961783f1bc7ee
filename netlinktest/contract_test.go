//go:build linux

package netlinktest_test

// The contract suite: one set of behaviour checks, run against the fake
// always and against the real kernel (in throwaway namespaces) as root.
// Every behaviour the fake claims is checked here; where the two differ,
// the fake is wrong.

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/netlinktest"
)

// sysctler is what both the fake and internal/sysctl offer.
type sysctler interface {
	Sysctl(key string) (string, error)
	SetSysctl(key, value string) error
}

// testNS is one namespace of the system under test.
type testNS struct {
	h         handle
	fd        int
	sys       sysctler
	subscribe func(ch chan<- netlink.LinkUpdate, done <-chan struct{}) error
	destroy   func() // deletes the namespace (like `ip netns del` with nothing else holding it)
}

// world makes namespaces: fresh ones with lo up, all on one machine.
type world func(t *testing.T) *testNS

func fakeWorld(t *testing.T) world {
	m := netlinktest.New()
	n := 0
	return func(t *testing.T) *testNS {
		t.Helper()
		n++
		k, err := m.NewNamespace(fmt.Sprintf("/run/netns/contract-%d", n))
		if err != nil {
			t.Fatal(err)
		}
		lo, err := k.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := k.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
		return &testNS{h: k, fd: k.Fd(), sys: k, subscribe: k.LinkSubscribe,
			destroy: func() { ok(t, m.DeleteNamespace(k.Path()), "delete namespace") }}
	}
}

func kernelWorld(t *testing.T) world {
	kerneltest.Require(t)
	return func(t *testing.T) *testNS {
		t.Helper()
		ns := kerneltest.NewNS(t, "nlt")
		return &testNS{
			h: ns.Handle, fd: int(ns.NS), sys: ns.Sysctl(),
			subscribe: func(ch chan<- netlink.LinkUpdate, done <-chan struct{}) error {
				return netlink.LinkSubscribeAt(ns.NS, ch, done)
			},
			destroy: func() {
				// Drop every reference so that the kernel destroys it;
				// kerneltest's cleanup then finds nothing left to do.
				ns.Handle.Close()
				ns.Handle = nil
				ok(t, ns.NS.Close(), "close namespace")
				ns.NS = netns.None()
				ok(t, netns.DeleteNamed(ns.Name), "unbind namespace")
			},
		}
	}
}

var contracts = []struct {
	name string
	fn   func(t *testing.T, w world)
}{
	{"LinkErrors", contractLinkErrors},
	{"VethSameNamespace", contractVethSameNS},
	{"VethAcrossNamespaces", contractVethAcrossNS},
	{"LinkSetters", contractLinkSetters},
	{"AddressesAndKernelRoutes", contractAddrs},
	{"RouteErrorsAndReplace", contractRouteErrors},
	{"OnlinkBlackholeTables", contractOnlinkBlackhole},
	{"RoutesVanishWithLink", contractRoutesVanish},
	{"Neighbours", contractNeighbours},
	{"VxlanAndFDB", contractVxlanFDB},
	{"Sysctls", contractSysctls},
	{"LinkSubscribe", contractSubscribe},
	{"NamespaceDeletion", contractNamespaceDeletion},
	{"Bridge", contractBridge},
	{"AddressOrder", contractAddressOrder},
	{"RouteOrder", contractRouteOrder},
	{"Moves", contractMoves},
	{"IPv6AddressOrder", contractIPv6AddressOrder},
	{"IPv6", contractIPv6},
	{"IPv6Autoconf", contractIPv6Autoconf},
}

func TestContract(t *testing.T) {
	for _, c := range contracts {
		t.Run("fake/"+c.name, func(t *testing.T) { c.fn(t, fakeWorld(t)) })
	}
	for _, c := range contracts {
		t.Run("kernel/"+c.name, func(t *testing.T) { c.fn(t, kernelWorld(t)) })
	}
}

// ---- helpers ----

func ok(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func isErr(t *testing.T, err error, want unix.Errno, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v (%s)", what, err, want, unix.ErrnoName(want))
	}
}

func notFound(t *testing.T, err error, what string) {
	t.Helper()
	var lnf netlink.LinkNotFoundError
	if !errors.As(err, &lnf) {
		t.Fatalf("%s: got %v (%T), want netlink.LinkNotFoundError", what, err, err)
	}
}

func link(t *testing.T, n *testNS, name string) netlink.Link {
	t.Helper()
	l, err := n.h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

// eventually polls fn until it returns nil or a generous deadline passes;
// the kernel applies carrier changes asynchronously (linkwatch).
func eventually(t *testing.T, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func veth(name, peer string) *netlink.Veth {
	return &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}
}

// upPair creates a veth pair in n with both ends up.
func upPair(t *testing.T, n *testNS, a, b string) (netlink.Link, netlink.Link) {
	t.Helper()
	ok(t, n.h.LinkAdd(veth(a, b)), "veth add")
	ok(t, n.h.LinkSetUp(link(t, n, a)), "up "+a)
	ok(t, n.h.LinkSetUp(link(t, n, b)), "up "+b)
	return link(t, n, a), link(t, n, b)
}

func ipnet(s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	if v4 := ip.To4(); v4 != nil {
		n.IP = n.IP.To4()
	}
	return n
}

func addr(s string) *netlink.Addr {
	a, err := netlink.ParseAddr(s)
	if err != nil {
		panic(err)
	}
	return a
}

var mac1 = net.HardwareAddr{0x66, 0x55, 0x44, 0x33, 0x22, 0x11}
var mac2 = net.HardwareAddr{0x66, 0x55, 0x44, 0x33, 0x22, 0x12}

// routes renders every IPv4 route of every table (LINKDOWN masked: the
// kernel sets it asynchronously), sorted.
func routes(t *testing.T, n *testNS) []string {
	t.Helper()
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	ok(t, err, "route list")
	return renderRoutes(t, n, rs)
}

func renderRoutes(t *testing.T, n *testNS, rs []netlink.Route) []string {
	var out []string
	for _, r := range rs {
		out = append(out, routeString(t, n, r))
	}
	sort.Strings(out)
	return out
}

func routeString(t *testing.T, n *testNS, r netlink.Route) string {
	dev := "-"
	if r.LinkIndex != 0 {
		if l, err := n.h.LinkByIndex(r.LinkIndex); err == nil {
			dev = l.Attrs().Name
		} else {
			dev = fmt.Sprint(r.LinkIndex)
		}
	}
	s := fmt.Sprintf("table=%d type=%d %s dev=%s proto=%d scope=%d", r.Table, r.Type, r.Dst, dev, r.Protocol, r.Scope)
	if r.Gw != nil {
		s += " via=" + r.Gw.String()
	}
	if r.Src != nil {
		s += " src=" + r.Src.String()
	}
	if r.Priority != 0 {
		s += fmt.Sprintf(" metric=%d", r.Priority)
	}
	if f := r.Flags &^ unix.RTNH_F_LINKDOWN; f != 0 {
		s += fmt.Sprintf(" flags=%#x", f)
	}
	return s
}

func loRoutes() []string {
	return []string{
		"table=255 type=2 127.0.0.0/8 dev=lo proto=2 scope=254 src=127.0.0.1",
		"table=255 type=2 127.0.0.1/32 dev=lo proto=2 scope=254 src=127.0.0.1",
		"table=255 type=3 127.255.255.255/32 dev=lo proto=2 scope=253 src=127.0.0.1",
	}
}

func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	sort.Strings(g)
	sort.Strings(w)
	if !slices.Equal(g, w) {
		t.Fatalf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(g, "\n  "), strings.Join(w, "\n  "))
	}
}

func withLo(rs ...string) []string { return append(loRoutes(), rs...) }

// ---- contracts ----

func contractLinkErrors(t *testing.T, w world) {
	n := w(t)
	_, err := n.h.LinkByName("nope0")
	notFound(t, err, "LinkByName missing")
	_, err = n.h.LinkByIndex(9999)
	notFound(t, err, "LinkByIndex missing")
	isErr(t, n.h.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nope0"}}), unix.EINVAL, "LinkDel by unknown name")
	isErr(t, n.h.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: 9999}}), unix.ENODEV, "LinkDel by unknown index")
	isErr(t, n.h.LinkSetUp(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: 9999}}), unix.ENODEV, "LinkSetUp unknown index")
	isErr(t, n.h.LinkSetMTU(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nope0"}}, 1400), unix.EINVAL, "LinkSetMTU unknown name")

	ok(t, n.h.LinkAdd(veth("ct0", "ct1")), "veth add")
	isErr(t, n.h.LinkAdd(veth("ct0", "ct9")), unix.EEXIST, "veth add, name taken")
	isErr(t, n.h.LinkAdd(veth("ct9", "ct0")), unix.EEXIST, "veth add, peer name taken")
	isErr(t, n.h.LinkAdd(veth("ct9", "ct9")), unix.EEXIST, "veth add, both ends the same name")
	isErr(t, n.h.LinkAdd(veth("0123456789abcdef", "ct9")), unix.ERANGE, "veth add, 16-byte name")
	isErr(t, n.h.LinkAdd(veth("a/b", "ct9")), unix.EINVAL, "veth add, name with /")
	isErr(t, n.h.LinkAdd(veth("a b", "ct9")), unix.EINVAL, "veth add, name with space")
	isErr(t, n.h.LinkAdd(veth("ct8", "")), unix.EINVAL, "veth add, empty peer name")
	for _, mtu := range []int{67, 65536} {
		v := veth("ct8", "ct9")
		v.MTU = mtu
		isErr(t, n.h.LinkAdd(v), unix.EINVAL, fmt.Sprintf("veth add, MTU %d", mtu))
	}
	v := veth("ct8", "ct9")
	v.HardwareAddr = net.HardwareAddr{0x01, 0, 0, 0, 0, 1}
	isErr(t, n.h.LinkAdd(v), unix.EADDRNOTAVAIL, "veth add, multicast MAC")
	if _, err := n.h.LinkByName("ct8"); err == nil {
		t.Fatal("a failed add left a link behind")
	}
	ct0 := link(t, n, "ct0")
	isErr(t, n.h.LinkSetMTU(ct0, 67), unix.EINVAL, "MTU 67")
	isErr(t, n.h.LinkSetMTU(ct0, 65536), unix.EINVAL, "MTU 65536")
	isErr(t, n.h.LinkSetName(ct0, "ct1"), unix.EEXIST, "rename to a taken name")
	isErr(t, n.h.LinkSetName(ct0, "0123456789abcdef"), unix.ERANGE, "rename, 16 bytes")
	isErr(t, n.h.LinkSetHardwareAddr(ct0, net.HardwareAddr{0, 0, 0, 0, 0, 0}), unix.EADDRNOTAVAIL, "zero MAC")
	isErr(t, n.h.LinkSetHardwareAddr(ct0, net.HardwareAddr{1, 2, 3}), unix.EINVAL, "short MAC")
	_, err = n.h.LinkByIndex(0)
	isErr(t, err, unix.EINVAL, "LinkByIndex(0)")
	ok(t, n.h.LinkSetAlias(ct0, strings.Repeat("x", 255)), "alias of 255 bytes")
	isErr(t, n.h.LinkSetAlias(ct0, strings.Repeat("x", 256)), unix.ERANGE, "alias of 256 bytes")
}

// linkSummary renders the attributes the kernel fills and the fake claims.
func linkSummary(l netlink.Link) string {
	a := l.Attrs()
	return fmt.Sprintf("%T %s mtu=%d txqlen=%d flags=%v oper=%v parent=%d netnsid=%d master=%d alias=%q encap=%s",
		l, a.Name, a.MTU, a.TxQLen, a.Flags, a.OperState, a.ParentIndex, a.NetNsID, a.MasterIndex, a.Alias, a.EncapType)
}

func expectLink(t *testing.T, n *testNS, name, want string) {
	t.Helper()
	eventually(t, func() error {
		l, err := n.h.LinkByName(name)
		if err != nil {
			return err
		}
		if got := linkSummary(l); got != want {
			return fmt.Errorf("link %s:\n got %s\nwant %s", name, got, want)
		}
		return nil
	})
}

func contractVethSameNS(t *testing.T, w world) {
	n := w(t)
	lo := link(t, n, "lo")
	if got, want := linkSummary(lo), `*netlink.Device lo mtu=65536 txqlen=1000 flags=up|loopback|running oper=unknown parent=0 netnsid=-1 master=0 alias="" encap=loopback`; got != want {
		t.Fatalf("lo:\n got %s\nwant %s", got, want)
	}
	if lo.Attrs().Index != 1 || lo.Attrs().HardwareAddr != nil {
		t.Fatalf("lo index %d mac %v", lo.Attrs().Index, lo.Attrs().HardwareAddr)
	}
	hw := net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "va", MTU: 1450, HardwareAddr: hw, TxQLen: -1}, PeerName: "vb"}
	ok(t, n.h.LinkAdd(v), "veth add")
	if v.Index == 0 {
		t.Fatal("LinkAdd did not fill in the index")
	}
	va, vb := link(t, n, "va"), link(t, n, "vb")
	if va.Attrs().Index != v.Index || vb.Attrs().Index != va.Attrs().Index-1 {
		t.Fatalf("indexes: va %d (LinkAdd said %d), vb %d: the peer is registered first", va.Attrs().Index, v.Index, vb.Attrs().Index)
	}
	if va.Attrs().HardwareAddr.String() != hw.String() || len(vb.Attrs().HardwareAddr) != 6 {
		t.Fatalf("MACs %v %v", va.Attrs().HardwareAddr, vb.Attrs().HardwareAddr)
	}
	if byIdx, err := n.h.LinkByIndex(va.Attrs().Index); err != nil || byIdx.Attrs().Name != "va" {
		t.Fatalf("LinkByIndex: %v %v", byIdx, err)
	}
	ia, ib := va.Attrs().Index, vb.Attrs().Index
	expectLink(t, n, "va", fmt.Sprintf(`*netlink.Veth va mtu=1450 txqlen=1000 flags=broadcast|multicast oper=down parent=%d netnsid=-1 master=0 alias="" encap=ether`, ib))
	expectLink(t, n, "vb", fmt.Sprintf(`*netlink.Veth vb mtu=1450 txqlen=0 flags=broadcast|multicast oper=down parent=%d netnsid=-1 master=0 alias="" encap=ether`, ia))
	ok(t, n.h.LinkSetUp(va), "up va")
	expectLink(t, n, "va", fmt.Sprintf(`*netlink.Veth va mtu=1450 txqlen=1000 flags=up|broadcast|multicast oper=lower-layer-down parent=%d netnsid=-1 master=0 alias="" encap=ether`, ib))
	ok(t, n.h.LinkSetUp(vb), "up vb")
	expectLink(t, n, "va", fmt.Sprintf(`*netlink.Veth va mtu=1450 txqlen=1000 flags=up|broadcast|multicast|running oper=up parent=%d netnsid=-1 master=0 alias="" encap=ether`, ib))
	expectLink(t, n, "vb", fmt.Sprintf(`*netlink.Veth vb mtu=1450 txqlen=0 flags=up|broadcast|multicast|running oper=up parent=%d netnsid=-1 master=0 alias="" encap=ether`, ia))
	ok(t, n.h.LinkSetDown(vb), "down vb")
	expectLink(t, n, "va", fmt.Sprintf(`*netlink.Veth va mtu=1450 txqlen=1000 flags=up|broadcast|multicast oper=lower-layer-down parent=%d netnsid=-1 master=0 alias="" encap=ether`, ib))

	// Created up: up at once, without carrier while the peer is down.
	ok(t, n.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ve", Flags: net.FlagUp, TxQLen: -1}, PeerName: "vf", PeerTxQLen: -1}), "veth created up")
	expectLink(t, n, "ve", fmt.Sprintf(`*netlink.Veth ve mtu=1500 txqlen=1000 flags=up|broadcast|multicast oper=lower-layer-down parent=%d netnsid=-1 master=0 alias="" encap=ether`, link(t, n, "vf").Attrs().Index))
	ok(t, n.h.LinkDel(link(t, n, "ve")), "delete")

	// A zero LinkAttrs literal sends TxQLen 0 (and PeerTxQLen 0 for the
	// peer): netlink's quirk, kept.
	ok(t, n.h.LinkAdd(veth("vc", "vd")), "veth add")
	if q := link(t, n, "vc").Attrs().TxQLen; q != 0 {
		t.Fatalf("txqlen of a LinkAttrs{} veth = %d, want 0", q)
	}
	names := func() []string {
		ls, err := n.h.LinkList()
		ok(t, err, "LinkList")
		var out []string
		for _, l := range ls {
			out = append(out, fmt.Sprintf("%d:%s", l.Attrs().Index, l.Attrs().Name))
		}
		return out
	}
	sameSet(t, "links", names(), []string{"1:lo", fmt.Sprintf("%d:vb", ib), fmt.Sprintf("%d:va", ia),
		fmt.Sprintf("%d:vd", link(t, n, "vd").Attrs().Index), fmt.Sprintf("%d:vc", link(t, n, "vc").Attrs().Index)})

	ok(t, n.h.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vb"}}), "delete vb by name")
	_, err := n.h.LinkByName("va")
	notFound(t, err, "va after deleting its peer")
	isErr(t, n.h.LinkDel(va), unix.ENODEV, "delete a deleted link by its stale index")
}

func contractVethAcrossNS(t *testing.T, w world) {
	a, b := w(t), w(t)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(b.fd)}
	ok(t, a.h.LinkAdd(v), "veth across namespaces")
	host, pod := link(t, a, "host0"), link(t, b, "eth0")
	if _, err := a.h.LinkByName("eth0"); err == nil {
		t.Fatal("the peer is visible in the creating namespace")
	}
	if host.Attrs().ParentIndex != pod.Attrs().Index || pod.Attrs().ParentIndex != host.Attrs().Index {
		t.Fatalf("peer indexes: host %d parent %d, pod %d parent %d", host.Attrs().Index, host.Attrs().ParentIndex, pod.Attrs().Index, pod.Attrs().ParentIndex)
	}
	if host.Attrs().NetNsID != 0 || pod.Attrs().NetNsID != 0 {
		t.Fatalf("link-netnsid: host side %d, pod side %d, want 0 and 0 (first id each namespace assigns)", host.Attrs().NetNsID, pod.Attrs().NetNsID)
	}
	// Ids are assigned when the links are made, not when first looked at.
	c := w(t)
	ok(t, a.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host2"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(c.fd)}), "second pod")
	d := w(t)
	ok(t, a.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host3"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(d.fd)}), "third pod")
	if id3, id2 := link(t, a, "host3").Attrs().NetNsID, link(t, a, "host2").Attrs().NetNsID; id2 != 1 || id3 != 2 {
		t.Fatalf("link-netnsids of later pods: %d, %d; want 1, 2 in creation order", id2, id3)
	}

	// Without carrier a veth is lower-layer-down, unless its peer has
	// the same index (possible across namespaces): then it is down.
	ok(t, a.h.LinkSetUp(host), "up host0")
	oper := "down"
	if host.Attrs().Index != pod.Attrs().Index {
		oper = "lower-layer-down"
	}
	expectLink(t, a, "host0", fmt.Sprintf(`*netlink.Veth host0 mtu=1500 txqlen=0 flags=up|broadcast|multicast oper=%s parent=%d netnsid=0 master=0 alias="" encap=ether`, oper, pod.Attrs().Index))
	ok(t, b.h.LinkSetUp(pod), "up eth0")
	expectLink(t, b, "eth0", fmt.Sprintf(`*netlink.Veth eth0 mtu=1500 txqlen=0 flags=up|broadcast|multicast|running oper=up parent=%d netnsid=0 master=0 alias="" encap=ether`, host.Attrs().Index))
	isErr(t, a.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host1"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(b.fd)}),
		unix.EEXIST, "peer name taken in the peer namespace")
	ok(t, a.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth1", PeerNamespace: netlink.NsFd(b.fd)}),
		"a name taken only in the other namespace is free here")

	// Move one end of a same-namespace pair: it keeps its index (free in
	// the target), both ends now report the other namespace's id.
	ok(t, a.h.LinkAdd(veth("mva", "mvb")), "veth add")
	mvb := link(t, a, "mvb")
	idx := mvb.Attrs().Index
	ok(t, a.h.LinkSetUp(mvb), "up before the move")
	ok(t, a.h.LinkSetNsFd(mvb, b.fd), "move")
	_, err := a.h.LinkByName("mvb")
	notFound(t, err, "moved link in the old namespace")
	moved := link(t, b, "mvb")
	if moved.Attrs().Index != idx {
		t.Fatalf("moved link index %d, was %d", moved.Attrs().Index, idx)
	}
	if moved.Attrs().Flags&net.FlagUp != 0 {
		t.Fatal("a moved link stays up")
	}
	mva := link(t, a, "mva")
	if mva.Attrs().NetNsID != 0 || moved.Attrs().NetNsID != 0 || mva.Attrs().ParentIndex != idx || moved.Attrs().ParentIndex != mva.Attrs().Index {
		t.Fatalf("after move: mva %s / mvb %s", linkSummary(mva), linkSummary(moved))
	}
	ok(t, a.h.LinkAdd(veth("mvc", "mvd")), "veth add")
	ok(t, b.h.LinkAdd(veth("mvd", "xx1")), "veth in b")
	isErr(t, a.h.LinkSetNsFd(link(t, a, "mvd"), b.fd), unix.EEXIST, "move onto a taken name")
	link(t, a, "mvd") // still there

	// LinkAttrs.Namespace creates the link there; the peer without
	// PeerNamespace goes to the requesting namespace.
	nv := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nsv0", Namespace: netlink.NsFd(b.fd)}, PeerName: "nsv1"}
	ok(t, a.h.LinkAdd(nv), "veth created in another namespace")
	if nv.Index != 0 {
		t.Fatalf("LinkAdd filled in index %d for a link in another namespace", nv.Index)
	}
	link(t, b, "nsv0")
	link(t, a, "nsv1")
	nv2 := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nsv2", Namespace: netlink.NsFd(b.fd)}, PeerName: "nsv3", PeerNamespace: netlink.NsFd(b.fd)}
	ok(t, a.h.LinkAdd(nv2), "both ends in another namespace")
	if l := link(t, b, "nsv2"); l.Attrs().NetNsID != -1 {
		t.Fatalf("same-namespace pair made elsewhere: netnsid %d", l.Attrs().NetNsID)
	}
	link(t, b, "nsv3")

	// Moving an end back next to its peer: no link-netnsid any more.
	ok(t, b.h.LinkSetNsFd(link(t, b, "mvb"), a.fd), "move back")
	if l := link(t, a, "mvb"); l.Attrs().NetNsID != -1 || link(t, a, "mva").Attrs().NetNsID != -1 {
		t.Fatalf("after moving back: netnsid %d / %d", l.Attrs().NetNsID, link(t, a, "mva").Attrs().NetNsID)
	}

	// Deleting either end deletes the pair.
	ok(t, b.h.LinkDel(pod), "delete the pod end")
	_, err = a.h.LinkByName("host0")
	notFound(t, err, "host end after deleting the pod end")
}

func contractLinkSetters(t *testing.T, w world) {
	n := w(t)
	ok(t, n.h.LinkAdd(veth("s0", "s1")), "veth add")
	s0 := link(t, n, "s0")
	ok(t, n.h.LinkSetMTU(s0, 1400), "mtu")
	ok(t, n.h.LinkSetAlias(s0, "pod-a"), "alias")
	hw := net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	ok(t, n.h.LinkSetHardwareAddr(s0, hw), "mac")
	ok(t, n.h.LinkSetUp(s0), "up")
	ok(t, n.h.LinkSetName(s0, "s0new"), "rename while up")
	l := link(t, n, "s0new")
	if l.Attrs().MTU != 1400 || l.Attrs().Alias != "pod-a" || l.Attrs().HardwareAddr.String() != hw.String() || l.Attrs().Index != s0.Attrs().Index {
		t.Fatalf("after setters: %s mac %s", linkSummary(l), l.Attrs().HardwareAddr)
	}
	if link(t, n, "s1").Attrs().MTU != 1500 {
		t.Fatal("the peer's MTU changed with ours")
	}
	ok(t, n.h.LinkSetAlias(l, ""), "clear alias")
	if a := link(t, n, "s0new").Attrs().Alias; a != "" {
		t.Fatalf("alias after clearing: %q", a)
	}
	// Master: a bridge.
	ok(t, n.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}), "bridge add")
	br := link(t, n, "br0")
	if _, isBridge := br.(*netlink.Bridge); !isBridge {
		t.Fatalf("bridge is %T", br)
	}
	ok(t, n.h.LinkSetMaster(l, br), "set master")
	if m := link(t, n, "s0new").Attrs().MasterIndex; m != br.Attrs().Index {
		t.Fatalf("master index %d, want %d", m, br.Attrs().Index)
	}
	isErr(t, n.h.LinkSetMaster(link(t, n, "s1"), link(t, n, "s0new")), unix.EOPNOTSUPP, "a veth as master")
	ok(t, n.h.LinkSetNoMaster(l), "no master")
	ok(t, n.h.LinkSetNoMaster(l), "no master again")
	if m := link(t, n, "s0new").Attrs().MasterIndex; m != 0 {
		t.Fatalf("master index %d after LinkSetNoMaster", m)
	}
	ok(t, n.h.LinkSetMaster(l, br), "set master again")
	ok(t, n.h.LinkDel(br), "delete the bridge")
	if m := link(t, n, "s0new").Attrs().MasterIndex; m != 0 {
		t.Fatalf("master index %d after the bridge went", m)
	}
}

func contractAddrs(t *testing.T, w world) {
	n := w(t)
	ok(t, n.h.LinkAdd(veth("va", "vb")), "veth add")
	va := link(t, n, "va")
	ok(t, n.h.AddrAdd(va, addr("10.4.7.61/24")), "addr add on a down link")
	sameSet(t, "routes with an address on a down link", routes(t, n), withLo(
		"table=255 type=2 10.4.7.61/32 dev=va proto=2 scope=254 src=10.4.7.61"))
	isErr(t, n.h.AddrAdd(va, addr("10.4.7.61/24")), unix.EEXIST, "addr add again")
	ok(t, n.h.AddrReplace(va, addr("10.4.7.61/24")), "addr replace of an existing address")
	ok(t, n.h.LinkSetUp(va), "up")
	up := withLo(
		"table=255 type=2 10.4.7.61/32 dev=va proto=2 scope=254 src=10.4.7.61",
		"table=255 type=3 10.4.7.255/32 dev=va proto=2 scope=253 src=10.4.7.61",
		"table=254 type=1 10.4.7.0/24 dev=va proto=2 scope=253 src=10.4.7.61")
	sameSet(t, "routes once up (peer down)", routes(t, n), up)
	main, err := n.h.RouteList(nil, netlink.FAMILY_V4)
	ok(t, err, "RouteList")
	sameSet(t, "RouteList: the main table only", renderRoutes(t, n, main), []string{
		"table=254 type=1 10.4.7.0/24 dev=va proto=2 scope=253 src=10.4.7.61"})

	as, err := n.h.AddrList(va, netlink.FAMILY_V4)
	ok(t, err, "AddrList")
	if len(as) != 1 {
		t.Fatalf("addresses: %v", as)
	}
	got := as[0]
	if got.IPNet.String() != "10.4.7.61/24" || got.Label != "va" || got.Broadcast.String() != "10.4.7.255" ||
		got.Flags&unix.IFA_F_PERMANENT == 0 || got.Scope != 0 || got.LinkIndex != va.Attrs().Index {
		t.Fatalf("address: %+v", got)
	}
	ok(t, n.h.AddrAdd(va, addr("10.4.7.70/24")), "second address in the subnet")
	as, _ = n.h.AddrList(va, netlink.FAMILY_V4)
	if len(as) != 2 || as[1].Flags&unix.IFA_F_SECONDARY == 0 {
		t.Fatalf("second address not secondary: %+v", as)
	}
	ok(t, n.h.AddrAdd(va, addr("10.244.1.5/32")), "a /32")
	sameSet(t, "routes with a secondary and a /32", routes(t, n), append(slices.Clone(up),
		"table=255 type=2 10.4.7.70/32 dev=va proto=2 scope=254 src=10.4.7.61",
		"table=255 type=2 10.244.1.5/32 dev=va proto=2 scope=254 src=10.244.1.5"))
	ok(t, n.h.AddrDel(va, addr("10.4.7.61/24")), "delete the primary")
	as, _ = n.h.AddrList(va, netlink.FAMILY_V4)
	if len(as) != 1 || as[0].IPNet.String() != "10.244.1.5/32" {
		t.Fatalf("after deleting the primary (promote_secondaries=0): %v", as)
	}
	sameSet(t, "routes after deleting the primary", routes(t, n), withLo(
		"table=255 type=2 10.244.1.5/32 dev=va proto=2 scope=254 src=10.244.1.5"))
	isErr(t, n.h.AddrDel(va, addr("10.4.7.61/24")), unix.EADDRNOTAVAIL, "delete a missing address")
	isErr(t, n.h.AddrAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: 9999}}, addr("10.4.7.1/24")), unix.ENODEV, "address on a missing link")
	ok(t, n.h.AddrAdd(va, addr("10.4.7.61/24")), "re-add")
	ok(t, n.h.LinkSetDown(va), "down")
	sameSet(t, "routes after link down", routes(t, n), withLo(
		"table=255 type=2 10.244.1.5/32 dev=va proto=2 scope=254 src=10.244.1.5",
		"table=255 type=2 10.4.7.61/32 dev=va proto=2 scope=254 src=10.4.7.61"))
	as, _ = n.h.AddrList(va, netlink.FAMILY_V4)
	if len(as) != 2 {
		t.Fatalf("IPv4 addresses must survive link down: %v", as)
	}
	all, err := n.h.AddrList(nil, netlink.FAMILY_V4)
	ok(t, err, "AddrList all")
	var s []string
	for _, a := range all {
		s = append(s, a.IPNet.String()+" "+a.Label)
	}
	sameSet(t, "all IPv4 addresses", s, []string{"127.0.0.1/8 lo", "10.244.1.5/32 va", "10.4.7.61/24 va"})
	labelled := addr("10.6.0.1/24")
	labelled.Label = "va:x"
	ok(t, n.h.AddrAdd(va, labelled), "labelled address")
	ok(t, n.h.LinkSetName(va, "vz"), "rename")
	all, err = n.h.AddrList(link(t, n, "vz"), netlink.FAMILY_V4)
	ok(t, err, "AddrList")
	s = s[:0]
	for _, a := range all {
		s = append(s, a.IPNet.String()+" "+a.Label)
	}
	// inetdev_changename: the first address takes the name, the others
	// keep their ":suffix" or get ":<position>".
	sameSet(t, "labels follow a rename", s, []string{"10.244.1.5/32 vz", "10.4.7.61/24 vz:2", "10.6.0.1/24 vz:x"})
}

func contractRouteErrors(t *testing.T, w world) {
	n := w(t)
	va, _ := upPair(t, n, "va", "vb")
	ok(t, n.h.AddrAdd(va, addr("10.4.7.61/24")), "addr")
	idx := va.Attrs().Index
	r := &netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.1.0/26"), Gw: net.ParseIP("10.4.7.62"), Protocol: 80}
	ok(t, n.h.RouteAdd(r), "route add")
	isErr(t, n.h.RouteAdd(r), unix.EEXIST, "route add again")
	r81 := *r
	r81.Protocol = 81
	isErr(t, n.h.RouteAdd(&r81), unix.EEXIST, "route add, same slot, other protocol")
	ok(t, n.h.RouteReplace(&r81), "replace")
	ok(t, n.h.RouteReplace(&r81), "replace again (idempotent)")
	byProto := func(p int) []string {
		rs, err := n.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: netlink.RouteProtocol(p)}, netlink.RT_FILTER_PROTOCOL)
		ok(t, err, "RouteListFiltered by protocol")
		return renderRoutes(t, n, rs)
	}
	sameSet(t, "protocol 81", byProto(81), []string{"table=254 type=1 10.244.1.0/26 dev=va proto=81 scope=0 via=10.4.7.62"})
	sameSet(t, "protocol 80 after replace", byProto(80), nil)
	r10 := r81
	r10.Priority = 10
	ok(t, n.h.RouteAdd(&r10), "same destination, other metric")
	sameSet(t, "protocol 81 with two metrics", byProto(81), []string{
		"table=254 type=1 10.244.1.0/26 dev=va proto=81 scope=0 via=10.4.7.62",
		"table=254 type=1 10.244.1.0/26 dev=va proto=81 scope=0 via=10.4.7.62 metric=10"})
	isErr(t, n.h.RouteDel(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.1.0/26"), Protocol: 99}), unix.ESRCH, "delete, wrong protocol")
	isErr(t, n.h.RouteDel(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.9.0/26")}), unix.ESRCH, "delete a missing route")
	ok(t, n.h.RouteDel(&r10), "delete the metric-10 route")
	ok(t, n.h.RouteDel(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.1.0/26")}), "delete without protocol")
	isErr(t, n.h.RouteDel(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.1.0/26")}), unix.ESRCH, "delete again")

	isErr(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.2.0/26"), Gw: net.ParseIP("10.9.9.9")}), unix.ENETUNREACH, "gateway not on link")
	isErr(t, n.h.RouteAdd(&netlink.Route{LinkIndex: 9999, Dst: ipnet("10.244.2.0/26")}), unix.ENODEV, "missing device")
	isErr(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: net.IPv4(10, 244, 2, 1).To4(), Mask: net.CIDRMask(24, 32)}}), unix.EINVAL, "host bits set")
	host := &netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.3.7/32"), Scope: netlink.SCOPE_LINK, Protocol: 80}
	ok(t, n.h.RouteAdd(host), "scope link route")
	isErr(t, n.h.RouteDel(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.3.7/32")}), unix.ESRCH, "delete with scope universe (netlink always sends the scope)")
	ok(t, n.h.RouteDel(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.3.7/32"), Scope: netlink.SCOPE_LINK}), "delete with the right scope")
	isErr(t, n.h.RouteDel(host), unix.ESRCH, "delete again")
	ok(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.4.0/24"), Src: net.ParseIP("10.4.7.61")}), "preferred source that is local")
	isErr(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.5.0/24"), Src: net.ParseIP("10.4.7.99")}), unix.EINVAL, "preferred source that is not local")

	ok(t, n.h.LinkAdd(veth("vc", "vd")), "a down pair")
	isErr(t, n.h.RouteAdd(&netlink.Route{LinkIndex: link(t, n, "vc").Attrs().Index, Dst: ipnet("10.244.6.0/24"), Scope: netlink.SCOPE_LINK}), unix.ENETDOWN, "route on a down link")
	isErr(t, n.h.RouteAdd(&netlink.Route{LinkIndex: link(t, n, "vc").Attrs().Index, Dst: ipnet("10.244.6.0/24"), Gw: net.ParseIP("10.9.9.9"), Flags: int(netlink.FLAG_ONLINK)}), unix.ENETDOWN, "onlink route on a down link")
	// Gateway resolved without a device.
	ok(t, n.h.RouteAdd(&netlink.Route{Dst: ipnet("10.244.7.0/24"), Gw: net.ParseIP("10.4.7.1")}), "gateway without device")
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: ipnet("10.244.7.0/24")}, netlink.RT_FILTER_DST)
	ok(t, err, "filter by dst")
	sameSet(t, "device filled in from the gateway", renderRoutes(t, n, rs), []string{"table=254 type=1 10.244.7.0/24 dev=va proto=3 scope=0 via=10.4.7.1"})
}

func contractOnlinkBlackhole(t *testing.T, w world) {
	n := w(t)
	va, _ := upPair(t, n, "va", "vb")
	idx := va.Attrs().Index
	// The pod pattern: a gateway reachable only through a scope link route.
	gw := net.ParseIP("169.254.1.1")
	isErr(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Gw: gw}), unix.ENETUNREACH, "default via 169.254.1.1 before its scope link route")
	ok(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("169.254.1.1/32"), Scope: netlink.SCOPE_LINK}), "169.254.1.1 dev va scope link")
	ok(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Gw: gw}), "default via 169.254.1.1")
	// Onlink on a device without addresses (vxlan.calico style).
	onl := &netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.189.64/26"), Gw: net.ParseIP("10.244.189.64"), Flags: int(netlink.FLAG_ONLINK), Protocol: 80}
	ok(t, n.h.RouteAdd(onl), "onlink via an address no route covers")
	isErr(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.190.0/26"), Gw: net.ParseIP("10.244.190.0"), Flags: int(netlink.FLAG_ONLINK), Scope: netlink.SCOPE_LINK}), unix.EINVAL, "onlink with scope link")
	isErr(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.190.0/26"), Flags: int(netlink.FLAG_ONLINK)}), unix.EINVAL, "onlink without gateway")
	// Blackhole.
	bh := &netlink.Route{Dst: ipnet("10.244.3.0/24"), Type: unix.RTN_BLACKHOLE, Protocol: 80}
	ok(t, n.h.RouteAdd(bh), "blackhole")
	isErr(t, n.h.RouteAdd(bh), unix.EEXIST, "blackhole again")
	isErr(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.8.0/24"), Type: unix.RTN_BLACKHOLE}), unix.EINVAL, "blackhole with a device")
	// Another table.
	ok(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.3.0/24"), Table: 100, Scope: netlink.SCOPE_LINK}), "table 100")
	ok(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.9.0/24"), Table: 1000, Scope: netlink.SCOPE_LINK}), "table 1000")
	main, err := n.h.RouteList(nil, netlink.FAMILY_V4)
	ok(t, err, "RouteList")
	sameSet(t, "main table", renderRoutes(t, n, main), []string{
		"table=254 type=1 0.0.0.0/0 dev=va proto=3 scope=0 via=169.254.1.1",
		"table=254 type=1 169.254.1.1/32 dev=va proto=3 scope=253",
		"table=254 type=1 10.244.189.64/26 dev=va proto=80 scope=0 via=10.244.189.64 flags=0x4",
		"table=254 type=6 10.244.3.0/24 dev=- proto=80 scope=0",
	})
	for _, tc := range []struct {
		table int
		want  []string
	}{
		{100, []string{"table=100 type=1 10.244.3.0/24 dev=va proto=3 scope=253"}},
		{1000, []string{"table=1000 type=1 10.244.9.0/24 dev=va proto=3 scope=253"}},
	} {
		rs, err := n.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: tc.table}, netlink.RT_FILTER_TABLE)
		ok(t, err, "by table")
		sameSet(t, fmt.Sprintf("table %d", tc.table), renderRoutes(t, n, rs), tc.want)
	}
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: 80, Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	ok(t, err, "by protocol, every table")
	var iterated []netlink.Route
	ok(t, n.h.RouteListFilteredIter(netlink.FAMILY_V4, &netlink.Route{Protocol: 80, Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE,
		func(r netlink.Route) bool { iterated = append(iterated, r); return true }), "iterate")
	sameSet(t, "RouteListFilteredIter", renderRoutes(t, n, iterated), renderRoutes(t, n, rs))
	calls := 0
	ok(t, n.h.RouteListFilteredIter(netlink.FAMILY_V4, &netlink.Route{}, 0, func(netlink.Route) bool { calls++; return false }), "iterate, stop at once")
	if calls != 1 {
		t.Fatalf("iteration went on after false: %d calls", calls)
	}
	sameSet(t, "protocol 80, all tables", renderRoutes(t, n, rs), []string{
		"table=254 type=1 10.244.189.64/26 dev=va proto=80 scope=0 via=10.244.189.64 flags=0x4",
		"table=254 type=6 10.244.3.0/24 dev=- proto=80 scope=0",
	})
	rs, err = n.h.RouteList(va, netlink.FAMILY_V4)
	ok(t, err, "RouteList(link)")
	if len(rs) != 3 {
		t.Fatalf("RouteList(va): %v", renderRoutes(t, n, rs))
	}
	// Blackholes have no device: a link filter with Index 0 matches them.
	rs, err = n.h.RouteList(&netlink.Veth{}, netlink.FAMILY_V4)
	ok(t, err, "RouteList(link with index 0)")
	sameSet(t, "RouteList(index 0)", renderRoutes(t, n, rs), []string{"table=254 type=6 10.244.3.0/24 dev=- proto=80 scope=0"})
	ok(t, n.h.RouteDel(&netlink.Route{Dst: ipnet("10.244.3.0/24")}), "delete the blackhole without naming its type")
	ok(t, n.h.RouteDel(&netlink.Route{Dst: ipnet("10.244.9.0/24"), Table: 1000, Scope: netlink.SCOPE_LINK}), "delete in table 1000")
	ok(t, n.h.RouteDel(onl), "delete the onlink route")
}

func contractRoutesVanish(t *testing.T, w world) {
	n := w(t)
	va, _ := upPair(t, n, "va", "vb")
	idx := va.Attrs().Index
	ok(t, n.h.AddrAdd(va, addr("10.4.7.61/24")), "addr")
	add := func() {
		ok(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.1.0/26"), Gw: net.ParseIP("10.4.7.62"), Protocol: 80}), "via")
		ok(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.1.7/32"), Scope: netlink.SCOPE_LINK, Protocol: 80}), "scope link")
		ok(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.2.0/26"), Gw: net.ParseIP("10.244.2.0"), Flags: int(netlink.FLAG_ONLINK), Protocol: 80}), "onlink")
		ok(t, n.h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipnet("10.244.3.0/24"), Table: 100, Scope: netlink.SCOPE_LINK}), "table 100")
	}
	add()
	ok(t, n.h.RouteAdd(&netlink.Route{Dst: ipnet("10.244.4.0/24"), Type: unix.RTN_BLACKHOLE}), "blackhole")
	ok(t, n.h.LinkSetDown(va), "down")
	blackhole := "table=254 type=6 10.244.4.0/24 dev=- proto=3 scope=0"
	sameSet(t, "routes after link down", routes(t, n), withLo(blackhole,
		"table=255 type=2 10.4.7.61/32 dev=va proto=2 scope=254 src=10.4.7.61"))
	ok(t, n.h.LinkSetUp(va), "up again")
	sameSet(t, "routes after up: kernel routes only", routes(t, n), withLo(blackhole,
		"table=255 type=2 10.4.7.61/32 dev=va proto=2 scope=254 src=10.4.7.61",
		"table=255 type=3 10.4.7.255/32 dev=va proto=2 scope=253 src=10.4.7.61",
		"table=254 type=1 10.4.7.0/24 dev=va proto=2 scope=253 src=10.4.7.61"))
	add()
	// The peer going down takes the carrier, not the routes.
	ok(t, n.h.LinkSetDown(link(t, n, "vb")), "peer down")
	if got := len(routes(t, n)); got != len(loRoutes())+1+3+4 {
		t.Fatalf("routes after the peer went down: %v", routes(t, n))
	}
	ok(t, n.h.LinkDel(va), "delete")
	sameSet(t, "routes after link delete", routes(t, n), withLo(blackhole))
}

func neighs(t *testing.T, n *testNS, idx, family int) []string {
	t.Helper()
	ns, err := n.h.NeighList(idx, family)
	ok(t, err, "NeighList")
	var out []string
	for _, e := range ns {
		out = append(out, fmt.Sprintf("fam=%d dev=%d %s %s state=%#x type=%d flags=%#x", e.Family, e.LinkIndex, e.IP, e.HardwareAddr, e.State, e.Type, e.Flags))
	}
	return out
}

func contractNeighbours(t *testing.T, w world) {
	n := w(t)
	va, _ := upPair(t, n, "va", "vb")
	idx := va.Attrs().Index
	ip := net.ParseIP("10.244.1.0")
	ne := &netlink.Neigh{LinkIndex: idx, State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: mac1}
	ok(t, n.h.NeighAdd(ne), "neigh add")
	isErr(t, n.h.NeighAdd(ne), unix.EEXIST, "neigh add again")
	other := *ne
	other.HardwareAddr = mac2
	ok(t, n.h.NeighAppend(&other), "append with another MAC")
	one := func(mac net.HardwareAddr) []string {
		return []string{fmt.Sprintf("fam=2 dev=%d 10.244.1.0 %s state=0x80 type=1 flags=0x0", idx, mac)}
	}
	sameSet(t, "append does not override a permanent entry", neighs(t, n, idx, netlink.FAMILY_V4), one(mac1))
	ok(t, n.h.NeighSet(&other), "set with another MAC")
	sameSet(t, "set overrides", neighs(t, n, idx, netlink.FAMILY_V4), one(mac2))
	ok(t, n.h.NeighSet(&other), "set again")
	sameSet(t, "set is idempotent", neighs(t, n, idx, netlink.FAMILY_V4), one(mac2))
	ok(t, n.h.NeighAdd(&netlink.Neigh{LinkIndex: idx, State: netlink.NUD_NOARP, IP: net.ParseIP("10.244.2.0"), HardwareAddr: mac1}), "noarp")
	ok(t, n.h.NeighAdd(&netlink.Neigh{LinkIndex: idx, State: netlink.NUD_REACHABLE, IP: net.ParseIP("10.244.3.0"), HardwareAddr: mac1}), "reachable")
	sameSet(t, "three entries", neighs(t, n, 0, netlink.FAMILY_V4), []string{
		one(mac2)[0],
		fmt.Sprintf("fam=2 dev=%d 10.244.2.0 %s state=0x40 type=1 flags=0x0", idx, mac1),
		fmt.Sprintf("fam=2 dev=%d 10.244.3.0 %s state=0x2 type=1 flags=0x0", idx, mac1),
	})
	ok(t, n.h.NeighDel(&netlink.Neigh{LinkIndex: idx, IP: net.ParseIP("10.244.3.0")}), "delete")
	isErr(t, n.h.NeighDel(&netlink.Neigh{LinkIndex: idx, IP: net.ParseIP("10.244.3.0")}), unix.ENOENT, "delete again")
	isErr(t, n.h.NeighAdd(&netlink.Neigh{LinkIndex: 9999, State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: mac1}), unix.ENODEV, "missing link")
	isErr(t, n.h.NeighAdd(&netlink.Neigh{State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: mac1}), unix.EINVAL, "no link")
	// Carrier loss keeps only permanent entries (asynchronously on the
	// kernel: linkwatch).
	ok(t, n.h.NeighAdd(&netlink.Neigh{LinkIndex: idx, State: netlink.NUD_REACHABLE, IP: net.ParseIP("10.244.3.0"), HardwareAddr: mac1}), "reachable")
	ok(t, n.h.NeighAdd(&netlink.Neigh{LinkIndex: idx, State: netlink.NUD_STALE, IP: net.ParseIP("10.244.4.0"), HardwareAddr: mac1}), "stale")
	ok(t, n.h.LinkSetDown(link(t, n, "vb")), "peer down")
	eventually(t, func() error {
		if got := neighs(t, n, idx, netlink.FAMILY_V4); !slices.Equal(got, one(mac2)) {
			return fmt.Errorf("neighbours after carrier loss: %v", got)
		}
		return nil
	})
	ok(t, n.h.LinkSetUp(link(t, n, "vb")), "peer up")
	// A new MAC address flushes every neighbour, permanent ones too.
	ok(t, n.h.LinkSetHardwareAddr(va, net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}), "new MAC")
	sameSet(t, "neighbours after a MAC change", neighs(t, n, idx, netlink.FAMILY_V4), nil)
	ok(t, n.h.NeighSet(&other), "set again")
	ok(t, n.h.LinkSetMTU(va, 1400), "MTU change")
	sameSet(t, "neighbours survive an MTU change", neighs(t, n, idx, netlink.FAMILY_V4), one(mac2))
	ok(t, n.h.LinkSetDown(va), "down")
	sameSet(t, "neighbours after link down (permanent ones too)", neighs(t, n, idx, netlink.FAMILY_V4), nil)
	ok(t, n.h.NeighAdd(ne), "neigh add on a down link")
	sameSet(t, "neighbour on a down link", neighs(t, n, idx, netlink.FAMILY_V4), one(mac1))
	ok(t, n.h.LinkDel(va), "delete link")
	sameSet(t, "neighbours after link delete", neighs(t, n, 0, netlink.FAMILY_V4), nil)
}

func contractVxlanFDB(t *testing.T, w world) {
	n := w(t)
	under, _ := upPair(t, n, "ens33", "peer0")
	ok(t, n.h.AddrAdd(under, addr("10.4.7.61/24")), "underlay address")
	vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vxlan.calico"}, VxlanId: 4096,
		VtepDevIndex: under.Attrs().Index, SrcAddr: net.ParseIP("10.4.7.61"), Port: 4789}
	ok(t, n.h.LinkAdd(vx), "vxlan add")
	l := link(t, n, "vxlan.calico")
	got, isVx := l.(*netlink.Vxlan)
	if !isVx {
		t.Fatalf("vxlan is %T", l)
	}
	if s := linkSummary(l); s != `*netlink.Vxlan vxlan.calico mtu=1450 txqlen=0 flags=broadcast|multicast oper=down parent=0 netnsid=-1 master=0 alias="" encap=ether` {
		t.Fatalf("vxlan link: %s", s)
	}
	if got.VxlanId != 4096 || got.VtepDevIndex != under.Attrs().Index || got.SrcAddr.String() != "10.4.7.61" || got.Port != 4789 ||
		got.Learning || !got.UDPCSum || got.Age != 300 || got.NoAge || got.Group != nil || got.TTL != 0 || got.L2miss || got.L3miss || got.Proxy {
		t.Fatalf("vxlan attributes: %+v", *got)
	}
	isErr(t, n.h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx2"}, VxlanId: 4096, Port: 4789}), unix.EEXIST, "same VNI and port")
	ok(t, n.h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx3", MTU: 9000}, VxlanId: 4097}), "vxlan with defaults")
	vx3 := link(t, n, "vx3").(*netlink.Vxlan)
	if vx3.Port != 8472 || vx3.MTU != 9000 || vx3.VtepDevIndex != 0 || vx3.SrcAddr != nil {
		t.Fatalf("vxlan defaults: port %d mtu %d dev %d src %v", vx3.Port, vx3.MTU, vx3.VtepDevIndex, vx3.SrcAddr)
	}
	ok(t, n.h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx4", MTU: 1500}, VxlanId: 4098, VtepDevIndex: under.Attrs().Index}), "MTU above the lower device's")
	if m := link(t, n, "vx4").Attrs().MTU; m != 1450 {
		t.Fatalf("vx4 MTU %d, want it clamped to 1450", m)
	}
	isErr(t, n.h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx5"}, VxlanId: 1 << 24}), unix.ERANGE, "VNI too big")
	isErr(t, n.h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx5"}, VxlanId: 5000, VtepDevIndex: 9999}), unix.ENODEV, "missing lower device")
	ok(t, n.h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx6"}, VxlanId: 4096, VtepDevIndex: under.Attrs().Index, SrcAddr: net.ParseIP("2001:db8::61"), Port: 4789}), "IPv6 vxlan, same VNI and port as an IPv4 one")
	if m := link(t, n, "vx6").Attrs().MTU; m != 1430 {
		t.Fatalf("IPv6 vxlan MTU %d, want 1500-70", m)
	}
	vx6 := link(t, n, "vx6").Attrs().Index
	fdb6 := func(ip string) *netlink.Neigh {
		return &netlink.Neigh{LinkIndex: vx6, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, IP: net.ParseIP(ip), HardwareAddr: mac1}
	}
	ok(t, n.h.NeighAppend(fdb6("2001:db8::62")), "IPv6 remote on an IPv6 vxlan")
	isErr(t, n.h.NeighAppend(fdb6("10.4.7.62")), unix.EAFNOSUPPORT, "IPv4 remote on an IPv6 vxlan")
	isErr(t, n.h.NeighAppend(&netlink.Neigh{LinkIndex: link(t, n, "vxlan.calico").Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
		State: netlink.NUD_PERMANENT, IP: net.ParseIP("2001:db8::62"), HardwareAddr: mac2}), unix.EAFNOSUPPORT, "IPv6 remote on an IPv4 vxlan")
	sameSet(t, "IPv6 FDB", neighs(t, n, vx6, unix.AF_BRIDGE), []string{fmt.Sprintf("fam=7 dev=%d 2001:db8::62 %s state=0x80 type=1 flags=0x2", vx6, mac1)})
	ok(t, n.h.LinkDel(link(t, n, "vx6")), "delete")
	isErr(t, n.h.LinkSetMTU(l, 1451), unix.EINVAL, "MTU above lower - 50")
	ok(t, n.h.LinkSetMTU(l, 1400), "MTU 1400")

	idx := l.Attrs().Index
	fdb := func(mac net.HardwareAddr, ip string, state int) *netlink.Neigh {
		return &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: state, IP: net.ParseIP(ip), HardwareAddr: mac}
	}
	entry := func(mac net.HardwareAddr, ip string, state int) string {
		return fmt.Sprintf("fam=7 dev=%d %s %s state=%#x type=1 flags=0x2", idx, ip, mac, state)
	}
	sameSet(t, "fresh FDB", neighs(t, n, idx, unix.AF_BRIDGE), nil)
	ok(t, n.h.NeighAppend(fdb(mac1, "10.4.7.62", netlink.NUD_PERMANENT)), "fdb append")
	sameSet(t, "one entry", neighs(t, n, idx, unix.AF_BRIDGE), []string{entry(mac1, "10.4.7.62", 0x80)})
	ok(t, n.h.NeighAppend(fdb(mac1, "10.4.7.62", netlink.NUD_PERMANENT)), "fdb append again")
	isErr(t, n.h.NeighAdd(fdb(mac1, "10.4.7.62", netlink.NUD_PERMANENT)), unix.EEXIST, "fdb add of an existing entry")
	ok(t, n.h.NeighAppend(fdb(mac1, "10.4.7.63", netlink.NUD_PERMANENT)), "fdb append, unicast MAC, other remote")
	sameSet(t, "a unicast MAC has one remote", neighs(t, n, idx, unix.AF_BRIDGE), []string{entry(mac1, "10.4.7.62", 0x80)})
	ok(t, n.h.NeighSet(fdb(mac1, "10.4.7.63", netlink.NUD_PERMANENT)), "fdb set replaces the remote")
	sameSet(t, "replaced", neighs(t, n, idx, unix.AF_BRIDGE), []string{entry(mac1, "10.4.7.63", 0x80)})
	ok(t, n.h.NeighSet(fdb(mac1, "10.4.7.63", netlink.NUD_PERMANENT)), "fdb set again")
	zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	ok(t, n.h.NeighAppend(fdb(zero, "10.4.7.62", netlink.NUD_PERMANENT)), "flood entry 1")
	ok(t, n.h.NeighAppend(fdb(zero, "10.4.7.64", netlink.NUD_PERMANENT)), "flood entry 2")
	isErr(t, n.h.NeighSet(fdb(zero, "10.4.7.65", netlink.NUD_PERMANENT)), unix.EOPNOTSUPP, "fdb set on the all-zeros entry")
	ok(t, n.h.NeighAdd(fdb(mac2, "10.4.7.62", netlink.NUD_REACHABLE)), "reachable entry")
	isErr(t, n.h.NeighAdd(fdb(net.HardwareAddr{0x66, 0, 0, 0, 0, 9}, "10.4.7.62", netlink.NUD_STALE)), unix.EINVAL, "stale entry")
	sameSet(t, "four entries", neighs(t, n, idx, unix.AF_BRIDGE), []string{
		entry(mac1, "10.4.7.63", 0x80), entry(zero, "10.4.7.62", 0x80), entry(zero, "10.4.7.64", 0x80), entry(mac2, "10.4.7.62", 0x2)})
	ok(t, n.h.NeighDel(fdb(mac1, "10.4.7.99", 0)), "fdb del naming a remote the entry lacks: a no-op")
	ok(t, n.h.NeighDel(fdb(zero, "10.4.7.64", 0)), "fdb del one flood remote")
	ok(t, n.h.NeighDel(fdb(mac1, "10.4.7.63", 0)), "fdb del")
	isErr(t, n.h.NeighDel(fdb(mac1, "10.4.7.63", 0)), unix.ENOENT, "fdb del again")
	isErr(t, n.h.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, HardwareAddr: mac2}), unix.EAFNOSUPPORT, "fdb del without IP")
	sameSet(t, "two entries", neighs(t, n, idx, unix.AF_BRIDGE), []string{entry(zero, "10.4.7.62", 0x80), entry(mac2, "10.4.7.62", 0x2)})

	// Neighbours on the vxlan device (the remote VTEP's MAC).
	ok(t, n.h.LinkSetUp(l), "vxlan up")
	expectLink(t, n, "vxlan.calico", `*netlink.Vxlan vxlan.calico mtu=1400 txqlen=0 flags=up|broadcast|multicast|running oper=unknown parent=0 netnsid=-1 master=0 alias="" encap=ether`)
	ok(t, n.h.NeighSet(&netlink.Neigh{LinkIndex: idx, State: netlink.NUD_PERMANENT, IP: net.ParseIP("10.244.189.64"), HardwareAddr: mac1}), "neigh on vxlan")
	sameSet(t, "vxlan neighbour", neighs(t, n, idx, netlink.FAMILY_V4), []string{fmt.Sprintf("fam=2 dev=%d 10.244.189.64 %s state=0x80 type=1 flags=0x0", idx, mac1)})
	ok(t, n.h.NeighSet(&netlink.Neigh{LinkIndex: idx, State: netlink.NUD_PERMANENT, IP: net.ParseIP("fd00:10:244:2::"), HardwareAddr: mac1}), "IPv6 neighbour")
	isErr(t, n.h.NeighAdd(&netlink.Neigh{LinkIndex: idx, State: netlink.NUD_PERMANENT, IP: net.ParseIP("fd00:10:244:2::"), HardwareAddr: mac2}), unix.EEXIST, "IPv6 neighbour again")
	var v6 []string
	for _, e := range neighs(t, n, idx, netlink.FAMILY_V6) {
		if strings.Contains(e, "fd00:10:244:2::") {
			v6 = append(v6, e)
		}
	}
	sameSet(t, "IPv6 neighbour", v6, []string{fmt.Sprintf("fam=10 dev=%d fd00:10:244:2:: %s state=0x80 type=1 flags=0x0", idx, mac1)})
	ok(t, n.h.NeighDel(&netlink.Neigh{LinkIndex: idx, IP: net.ParseIP("fd00:10:244:2::")}), "delete IPv6 neighbour")
	ok(t, n.h.LinkSetDown(l), "vxlan down")
	sameSet(t, "permanent FDB entries survive link down", neighs(t, n, idx, unix.AF_BRIDGE), []string{entry(zero, "10.4.7.62", 0x80)})
	sameSet(t, "neighbours do not", neighs(t, n, idx, netlink.FAMILY_V4), nil)
	// The vxlan device goes away with its lower device.
	ok(t, n.h.LinkDel(under), "delete the underlay")
	for _, name := range []string{"vxlan.calico", "vx4"} {
		_, err := n.h.LinkByName(name)
		notFound(t, err, name+" after its lower device went")
	}
	link(t, n, "vx3") // no lower device: stays
	sameSet(t, "FDB after the device went", neighs(t, n, idx, unix.AF_BRIDGE), nil)
}

func contractSysctls(t *testing.T, w world) {
	n := w(t)
	get := func(key string) string {
		t.Helper()
		v, err := n.sys.Sysctl(key)
		ok(t, err, "sysctl "+key)
		return v
	}
	missing := func(key string) {
		t.Helper()
		_, err := n.sys.Sysctl(key)
		isErr(t, err, unix.ENOENT, "sysctl "+key)
	}
	missing("net/ipv4/conf/va/forwarding")
	ok(t, n.h.LinkAdd(veth("va", "vb")), "veth add")
	for key, want := range map[string]string{
		"net/ipv4/conf/va/forwarding":       "0",
		"net/ipv4/conf/va/proxy_arp":        "0",
		"net/ipv4/conf/va/rp_filter":        "0",
		"net/ipv4/neigh/va/proxy_delay":     "80",
		"net/ipv6/conf/va/accept_ra":        "1",
		"net/ipv6/conf/va/mtu":              "1500",
		"net/ipv4/ip_forward":               "0",
		"net/ipv4/conf/all/forwarding":      "0",
		"net/ipv6/neigh/va/retrans_time_ms": "1000",
		"net/ipv4/ip_nonlocal_bind":         "0",
		"net/ipv6/conf/va/disable_ipv6":     "0",
	} {
		if got := get(key); got != want {
			t.Fatalf("%s = %q, want %q", key, got, want)
		}
	}
	ok(t, n.sys.SetSysctl("net/ipv4/conf/va/proxy_arp", "1"), "set proxy_arp")
	if get("net/ipv4/conf/va/proxy_arp") != "1" {
		t.Fatal("proxy_arp not set")
	}
	isErr(t, n.sys.SetSysctl("net/ipv4/conf/va/proxy_arp", "yes"), unix.EINVAL, "non-numeric value")
	isErr(t, n.sys.SetSysctl("net/ipv4/conf/nope0/proxy_arp", "1"), unix.ENOENT, "key of a missing link")
	ok(t, n.h.LinkSetMTU(link(t, n, "va"), 1400), "mtu")
	if get("net/ipv6/conf/va/mtu") != "1400" {
		t.Fatal("ipv6 mtu does not follow the link MTU")
	}
	ok(t, n.h.LinkSetName(link(t, n, "va"), "va2"), "rename")
	missing("net/ipv4/conf/va/proxy_arp")
	if get("net/ipv4/conf/va2/proxy_arp") != "1" {
		t.Fatal("a rename loses the link's sysctls")
	}
	ok(t, n.sys.SetSysctl("net/ipv4/conf/all/forwarding", "1"), "all/forwarding")
	for _, key := range []string{"net/ipv4/conf/va2/forwarding", "net/ipv4/conf/vb/forwarding", "net/ipv4/ip_forward", "net/ipv4/conf/default/forwarding", "net/ipv4/conf/lo/forwarding"} {
		if get(key) != "1" {
			t.Fatalf("%s not 1 after all/forwarding=1", key)
		}
	}
	ok(t, n.sys.SetSysctl("net/ipv4/conf/default/rp_filter", "2"), "default rp_filter")
	ok(t, n.h.LinkAdd(veth("vc", "vd")), "veth add")
	if get("net/ipv4/conf/vc/forwarding") != "1" || get("net/ipv4/conf/vc/rp_filter") != "2" {
		t.Fatal("a new link does not copy conf/default")
	}
	ok(t, n.h.LinkDel(link(t, n, "va2")), "delete")
	missing("net/ipv4/conf/va2/forwarding")
	missing("net/ipv4/conf/vb/forwarding")
	missing("net/ipv4/neigh/va2/proxy_delay")
}

func contractSubscribe(t *testing.T, w world) {
	n := w(t)
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	ok(t, n.subscribe(ch, done), "subscribe")
	waitFor := func(what string, match func(netlink.LinkUpdate) bool) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case u := <-ch:
				if match(u) {
					return
				}
			case <-timeout:
				t.Fatalf("no update: %s", what)
			}
		}
	}
	ok(t, n.h.LinkAdd(veth("sa", "sb")), "veth add")
	waitFor("RTM_NEWLINK sa", func(u netlink.LinkUpdate) bool {
		return u.Header.Type == unix.RTM_NEWLINK && u.Link.Attrs().Name == "sa" && u.Link.Type() == "veth"
	})
	sa := link(t, n, "sa")
	ok(t, n.h.LinkSetUp(sa), "up")
	waitFor("RTM_NEWLINK sa up", func(u netlink.LinkUpdate) bool {
		return u.Header.Type == unix.RTM_NEWLINK && u.Attrs().Index == sa.Attrs().Index && u.Link.Attrs().Flags&net.FlagUp != 0 && u.IfInfomsg.Flags&unix.IFF_UP != 0
	})
	ok(t, n.h.LinkSetMTU(sa, 1400), "mtu")
	waitFor("RTM_NEWLINK sa mtu", func(u netlink.LinkUpdate) bool {
		return u.Header.Type == unix.RTM_NEWLINK && u.Attrs().Index == sa.Attrs().Index && u.Link.Attrs().MTU == 1400
	})
	ok(t, n.h.LinkDel(sa), "delete")
	waitFor("RTM_DELLINK sa", func(u netlink.LinkUpdate) bool {
		return u.Header.Type == unix.RTM_DELLINK && u.Link.Attrs().Name == "sa"
	})
	waitFor("RTM_DELLINK sb", func(u netlink.LinkUpdate) bool {
		return u.Header.Type == unix.RTM_DELLINK && u.Link.Attrs().Name == "sb"
	})
	// A link leaving the namespace is deleted as far as it can tell; the
	// other namespace sees it arrive.
	other := w(t)
	och := make(chan netlink.LinkUpdate, 64)
	ok(t, other.subscribe(och, done), "subscribe there")
	ok(t, n.h.LinkAdd(veth("sc", "sd")), "veth add")
	ok(t, n.h.LinkSetNsFd(link(t, n, "sd"), other.fd), "move")
	waitFor("RTM_DELLINK sd", func(u netlink.LinkUpdate) bool {
		return u.Header.Type == unix.RTM_DELLINK && u.Link.Attrs().Name == "sd"
	})
	ch = och
	waitFor("RTM_NEWLINK sd there", func(u netlink.LinkUpdate) bool {
		return u.Header.Type == unix.RTM_NEWLINK && u.Link.Attrs().Name == "sd" && u.Link.Attrs().NetNsID == 0
	})
}

func contractNamespaceDeletion(t *testing.T, w world) {
	a, b := w(t), w(t)
	ok(t, a.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(b.fd)}), "veth")
	ok(t, a.h.LinkAdd(veth("keep0", "keep1")), "a pair that stays")
	host0 := link(t, a, "host0")
	ok(t, a.h.RouteAdd(&netlink.Route{Dst: ipnet("10.244.1.0/24"), Type: unix.RTN_BLACKHOLE}), "unrelated route")
	ok(t, a.h.LinkSetUp(host0), "up")
	ok(t, a.h.RouteAdd(&netlink.Route{LinkIndex: host0.Attrs().Index, Dst: ipnet("10.244.2.5/32"), Scope: netlink.SCOPE_LINK}), "route via host0")
	b.destroy()
	eventually(t, func() error { // the kernel destroys namespaces in a workqueue
		if _, err := a.h.LinkByName("host0"); err == nil {
			return fmt.Errorf("host0 still there after its peer's namespace went")
		}
		return nil
	})
	link(t, a, "keep0")
	c := w(t)
	ok(t, a.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host1"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(c.fd)}), "veth to a new namespace")
	if id := link(t, a, "host1").Attrs().NetNsID; id != 0 {
		t.Fatalf("link-netnsid %d: the gone namespace's id 0 is free again", id)
	}
	sameSet(t, "routes after the peer namespace went", routes(t, a), withLo("table=254 type=6 10.244.1.0/24 dev=- proto=3 scope=0"))
}

func contractBridge(t *testing.T, w world) {
	n := w(t)
	ok(t, n.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}), "bridge")
	br := link(t, n, "br0")
	ok(t, n.h.LinkSetUp(br), "up")
	state := func(flags, oper string, mtu int) string {
		return fmt.Sprintf(`*netlink.Bridge br0 mtu=%d txqlen=0 flags=%s oper=%s parent=0 netnsid=-1 master=0 alias="" encap=ether`, mtu, flags, oper)
	}
	expectLink(t, n, "br0", state("up|broadcast|multicast|running", "unknown", 1500))
	ok(t, n.h.LinkAdd(veth("s0", "s1")), "veth")
	ok(t, n.h.LinkSetMaster(link(t, n, "s0"), br), "enslave a down port")
	expectLink(t, n, "br0", state("up|broadcast|multicast", "down", 1500))
	ok(t, n.h.LinkSetUp(link(t, n, "s0")), "port up")
	ok(t, n.h.LinkSetUp(link(t, n, "s1")), "port's peer up")
	expectLink(t, n, "br0", state("up|broadcast|multicast|running", "up", 1500))
	ok(t, n.h.LinkSetMTU(link(t, n, "s0"), 1400), "port MTU")
	expectLink(t, n, "br0", state("up|broadcast|multicast|running", "up", 1400))
	ok(t, n.h.LinkSetDown(link(t, n, "s1")), "port loses carrier")
	expectLink(t, n, "br0", state("up|broadcast|multicast", "down", 1400))
	ok(t, n.h.LinkSetUp(link(t, n, "s1")), "port's peer up")
	ok(t, n.h.LinkSetNoMaster(link(t, n, "s0")), "release the last port")
	expectLink(t, n, "br0", state("up|broadcast|multicast", "down", 1500))
	ok(t, n.h.LinkSetMTU(br, 1300), "bridge MTU set by hand")
	ok(t, n.h.LinkSetMaster(link(t, n, "s0"), br), "enslave")
	ok(t, n.h.LinkAdd(veth("s2", "s3")), "veth")
	ok(t, n.h.LinkSetMTU(link(t, n, "s2"), 1200), "small port")
	ok(t, n.h.LinkSetMaster(link(t, n, "s2"), br), "enslave a smaller port")
	if m := link(t, n, "br0").Attrs().MTU; m != 1300 {
		t.Fatalf("bridge MTU %d: a hand-set MTU must stay", m)
	}
	ok(t, n.h.LinkSetMTU(br, 1500), "bridge MTU above a port's")
	ok(t, n.h.LinkDel(link(t, n, "s0")), "delete a port")
	if m := link(t, n, "s2").Attrs().MasterIndex; m != br.Attrs().Index {
		t.Fatalf("other port's master %d", m)
	}
}

func contractAddressOrder(t *testing.T, w world) {
	n := w(t)
	ok(t, n.h.LinkAdd(veth("va", "vb")), "veth")
	va := link(t, n, "va")
	for _, a := range []string{"10.4.7.61/24", "10.4.7.70/24", "10.5.0.1/24", "10.4.7.71/24", "192.0.2.1/32"} {
		ok(t, n.h.AddrAdd(va, addr(a)), a)
	}
	as, err := n.h.AddrList(va, netlink.FAMILY_V4)
	ok(t, err, "AddrList")
	var got []string
	for _, a := range as {
		got = append(got, a.IPNet.String())
	}
	want := []string{"10.4.7.61/24", "10.5.0.1/24", "192.0.2.1/32", "10.4.7.70/24", "10.4.7.71/24"}
	if !slices.Equal(got, want) {
		t.Fatalf("address order %v, want %v (primaries, then secondaries)", got, want)
	}
}

// contractRouteOrder: routes are listed in the kernel's order (the IPv4
// fib trie by address, longer prefixes first; the IPv6 fib6 tree children
// first), which golden tests and diffs of listings rely on.
func contractRouteOrder(t *testing.T, w world) {
	n := w(t)
	dsts := []string{"10.0.0.0/8", "10.0.0.0/16", "10.0.0.0/24", "10.1.0.0/16", "9.0.0.0/8", "10.0.0.128/25", "0.0.0.0/1",
		"fd00::/16", "fd00::/64", "fd00:1::/32", "fc00::/7", "fd00::/8", "::/1", "fd00::1/128", "::/0",
		"2001:db8::/32", "2001:db8:1::/48", "2001:db8::/48", "fd00::/56"}
	for _, d := range dsts {
		ok(t, n.h.RouteAdd(&netlink.Route{Dst: ipnet(d), Type: unix.RTN_BLACKHOLE}), d)
	}
	for _, pr := range []int{5, 1, 3} {
		ok(t, n.h.RouteAdd(&netlink.Route{Dst: ipnet("10.9.0.0/16"), Type: unix.RTN_BLACKHOLE, Priority: pr}), "metric")
	}
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{}, 0)
	ok(t, err, "list")
	var got []string
	for _, r := range rs {
		got = append(got, fmt.Sprintf("%s/%d", r.Dst, r.Priority))
	}
	want := []string{"0.0.0.0/1/0", "9.0.0.0/8/0", "10.0.0.0/24/0", "10.0.0.0/16/0", "10.0.0.0/8/0", "10.0.0.128/25/0",
		"10.1.0.0/16/0", "10.9.0.0/16/1", "10.9.0.0/16/3", "10.9.0.0/16/5",
		"2001:db8::/48/1024", "2001:db8:1::/48/1024", "2001:db8::/32/1024", "::/1/1024",
		"fd00::1/128/1024", "fd00::/64/1024", "fd00::/56/1024", "fd00:1::/32/1024", "fd00::/16/1024", "fd00::/8/1024", "fc00::/7/1024",
		"::/0/1024"}
	if !slices.Equal(got, want) {
		t.Fatalf("route order:\n got %v\nwant %v", got, want)
	}
}

func contractMoves(t *testing.T, w world) {
	a, b := w(t), w(t)
	ok(t, a.h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx"}, VxlanId: 7}), "vxlan")
	vxIdx := link(t, a, "vx").Attrs().Index
	ok(t, a.h.LinkSetNsFd(link(t, a, "vx"), b.fd), "a vxlan device moves")
	if l := link(t, b, "vx"); l.Attrs().Index != vxIdx || l.(*netlink.Vxlan).VxlanId != 7 {
		t.Fatalf("moved vxlan: %s", linkSummary(l))
	}
	ok(t, a.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br"}}), "bridge")
	isErr(t, a.h.LinkSetNsFd(link(t, a, "br"), b.fd), unix.EINVAL, "a bridge is netns-local")
	isErr(t, a.h.LinkSetNsFd(link(t, a, "lo"), b.fd), unix.EINVAL, "lo is netns-local")
	ok(t, a.h.LinkAdd(veth("p0", "p1")), "veth")
	ok(t, a.h.LinkSetMaster(link(t, a, "p0"), link(t, a, "br")), "enslave")
	ok(t, a.h.LinkSetNsFd(link(t, a, "p0"), b.fd), "a bridge port moves")
	if m := link(t, b, "p0").Attrs().MasterIndex; m != 0 {
		t.Fatalf("moved port keeps master %d", m)
	}
	ok(t, a.h.LinkSetNsFd(link(t, a, "p1"), a.fd), "a move to the same namespace does nothing")
}
