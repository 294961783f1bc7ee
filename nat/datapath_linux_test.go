//go:build linux

package nat_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/nat"
)

// topo is a node with two pods, a router without a route back to the pod
// pool, and an "internet" host behind the router:
//
//	pod1 10.244.1.2 --calia1--+
//	                          node 192.0.2.1 --eth1-- 192.0.2.2 (+.3) router 198.51.100.1 --eth2-- 198.51.100.2 internet
//	pod2 10.244.2.2 --calib2--+
type topo struct {
	node, pod1, pod2, router, inet *kerneltest.NS
}

const (
	pod1If = "calia000000001"
	pod2If = "calib000000002"
)

func newTopo(t *testing.T) *topo {
	t.Helper()
	tp := &topo{
		node: kerneltest.NewNS(t, "natnode"), pod1: kerneltest.NewNS(t, "natpod1"), pod2: kerneltest.NewNS(t, "natpod2"),
		router: kerneltest.NewNS(t, "natrtr"), inet: kerneltest.NewNS(t, "natinet"),
	}
	kerneltest.Veth(t, tp.node, pod1If, tp.pod1, "eth0")
	kerneltest.Veth(t, tp.node, pod2If, tp.pod2, "eth0")
	kerneltest.Veth(t, tp.node, "eth1", tp.router, "eth1")
	kerneltest.Veth(t, tp.router, "eth2", tp.inet, "eth2")

	tp.node.AddAddr(t, pod1If, "10.244.1.1/24")
	tp.node.AddAddr(t, pod2If, "10.244.2.1/24")
	tp.node.AddAddr(t, "eth1", "192.0.2.1/24")
	tp.pod1.AddAddr(t, "eth0", "10.244.1.2/24")
	tp.pod2.AddAddr(t, "eth0", "10.244.2.2/24")
	tp.router.AddAddr(t, "eth1", "192.0.2.2/24")
	tp.router.AddAddr(t, "eth1", "192.0.2.3/24")
	tp.router.AddAddr(t, "eth2", "198.51.100.1/24")
	tp.inet.AddAddr(t, "eth2", "198.51.100.2/24")

	defRoute := func(ns *kerneltest.NS, dev, gw string) {
		ns.AddRoute(t, &netlink.Route{LinkIndex: ns.Link(t, dev).Attrs().Index, Gw: kerneltest.IP(addr(gw))})
	}
	defRoute(tp.pod1, "eth0", "10.244.1.1")
	defRoute(tp.pod2, "eth0", "10.244.2.1")
	defRoute(tp.node, "eth1", "192.0.2.2")
	defRoute(tp.inet, "eth2", "198.51.100.1")
	// The router has no route to 10.244.0.0/16 and no default route.
	for _, ns := range []*kerneltest.NS{tp.node, tp.router} {
		ns.SetSysctl(t, "net/ipv4/ip_forward", "1")
	}
	// Let only nftables decide about spoofed sources in this test.
	for _, k := range []string{"all", "default", pod1If, pod2If} {
		tp.node.SetSysctl(t, "net/ipv4/conf/"+k+"/rp_filter", "0")
	}
	return tp
}

// listenUDP opens a UDP socket in ns bound to ap.
func listenUDP(t *testing.T, ns *kerneltest.NS, ap string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(ap)))
		return err
	})
	if err != nil {
		t.Fatalf("%s: listen %s: %v", ns.Name, ap, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendUDP sends the payloads, one datagram each, from (from) to (to) inside
// ns, on one socket.
func sendUDP(t *testing.T, ns *kerneltest.NS, from, to string, payloads ...string) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from)), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(to)))
		if err != nil {
			return err
		}
		defer c.Close()
		for _, p := range payloads {
			if _, err := c.Write([]byte(p)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: send %s -> %s: %v", ns.Name, from, to, err)
	}
}

// recvUDP returns the next datagram on c and its source, waiting up to a
// generous deadline.
func recvUDP(t *testing.T, c *net.UDPConn) (string, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("receive on %s: %v", c.LocalAddr(), err)
	}
	return string(buf[:n]), netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// nothingQueued asserts that c has no datagram waiting. Called after a later
// datagram on the same path arrived elsewhere, it proves an earlier one was
// dropped, without a timing assumption.
func nothingQueued(t *testing.T, c *net.UDPConn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now())
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err == nil {
		t.Fatalf("%s: got %q from %s, want it dropped", what, buf[:n], from)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal(err)
	}
}

func topoDesired() nat.Desired {
	return nat.Desired{
		Pools:      []nat.Pool{{CIDR: pfx("10.244.0.0/16"), NATOutgoing: true}},
		VXLANPeers: []netip.Addr{addr("192.0.2.2")},
		Workloads: []nat.Workload{
			{Interface: pod1If, Addrs: []netip.Addr{addr("10.244.1.2")}},
			{Interface: pod2If, Addrs: []netip.Addr{addr("10.244.2.2")}},
		},
	}
}

func TestKernelMasquerade(t *testing.T) {
	tp := newTopo(t)
	m, _ := kernelManager(t, tp.node, nil)
	ctx := context.Background()
	internet := addr("198.51.100.2")

	// Without tabby's table the router cannot return replies to the pod.
	if _, err := tp.pod1.Ping(internet, time.Second); err == nil {
		t.Fatal("ping to the internet host worked without masquerade")
	}
	tp.pod1.MustPing(t, addr("10.244.2.2")) // inside the node it works

	if err := m.SetDesired(topoDesired()); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	tp.pod1.MustPing(t, internet)

	// The internet host sees the node's address; a pod flow from the VXLAN
	// port is moved off it (Calico #12244). Fully random masquerade picks
	// from 1024-65535 and the port guard drops the one packet in ~64,500
	// that lands on 4789 (TestKernelPortGuard), so send twice on one socket:
	// the second datagram gets a new translation if the first was dropped.
	ln4789 := listenUDP(t, tp.inet, "198.51.100.2:5001")
	sendUDP(t, tp.pod1, "10.244.1.2:4789", "198.51.100.2:5001", "from-4789", "from-4789")
	msg, from := recvUDP(t, ln4789)
	if msg != "from-4789" || from.Addr() != addr("192.0.2.1") || from.Port() < 1024 || from.Port() == nat.DefaultVXLANPort {
		t.Fatalf("internet host got %q from %s, want the node 192.0.2.1 with a port other than 4789", msg, from)
	}
	ln := listenUDP(t, tp.inet, "198.51.100.2:5000")

	// Pod to pod inside the pools keeps the pod's source.
	ln2 := listenUDP(t, tp.pod2, "10.244.2.2:5000")
	sendUDP(t, tp.pod1, "10.244.1.2:4000", "10.244.2.2:5000", "p2p")
	if msg, from := recvUDP(t, ln2); msg != "p2p" || from != netip.MustParseAddrPort("10.244.1.2:4000") {
		t.Fatalf("pod2 got %q from %s, want 10.244.1.2:4000", msg, from)
	}

	// An excluded destination is not NATed, and so is unreachable here.
	d := topoDesired()
	d.ExcludeDestinations = []netip.Prefix{pfx("198.51.100.0/24")}
	if err := m.SetDesired(d); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.pod1.Ping(internet, time.Second); err == nil {
		t.Fatal("excluded destination was masqueraded")
	}

	// SNAT to a fixed address: the router knows 192.0.2.1 only, so use it.
	d = topoDesired()
	d.SNATTo = addr("192.0.2.1")
	if err := m.SetDesired(d); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	tp.pod1.MustPing(t, internet)
	sendUDP(t, tp.pod1, "10.244.1.2:4789", "198.51.100.2:5000", "snat")
	lo, hi := nat.SNATPortRange(nat.DefaultVXLANPort)
	if msg, from := recvUDP(t, ln); msg != "snat" || from.Addr() != addr("192.0.2.1") || from.Port() < lo || from.Port() > hi {
		t.Fatalf("SNAT: got %q from %s", msg, from)
	}
	if got, _ := m.Dump(ctx); got != m.Render() {
		t.Fatalf("dump differs from render\n%s", got)
	}

	// A pool without natOutgoing: no translation, no reply.
	d = topoDesired()
	d.Pools[0].NATOutgoing = false
	if err := m.SetDesired(d); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.pod1.Ping(internet, time.Second); err == nil {
		t.Fatal("ping worked with natOutgoing off")
	}
}

func TestKernelVXLANAllowList(t *testing.T) {
	tp := newTopo(t)
	m, _ := kernelManager(t, tp.node, nil)
	ctx := context.Background()
	vx := listenUDP(t, tp.node, "192.0.2.1:4789")
	other := listenUDP(t, tp.node, "192.0.2.1:5000") // sentinel port

	d := topoDesired()
	d.VXLANPeers = nil
	if err := m.SetDesired(d); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// No peer known: both senders dropped; the sentinel proves it.
	sendUDP(t, tp.router, "192.0.2.2:40000", "192.0.2.1:4789", "peer-early")
	sendUDP(t, tp.router, "192.0.2.3:40000", "192.0.2.1:4789", "stranger")
	sendUDP(t, tp.router, "192.0.2.2:40001", "192.0.2.1:5000", "sentinel")
	if msg, _ := recvUDP(t, other); msg != "sentinel" {
		t.Fatalf("sentinel got %q", msg)
	}
	nothingQueued(t, vx, "VXLAN with no known peer")

	// 192.0.2.2 becomes a peer: it passes, 192.0.2.3 is still dropped.
	if err := m.SetDesired(topoDesired()); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	sendUDP(t, tp.router, "192.0.2.3:40000", "192.0.2.1:4789", "stranger")
	sendUDP(t, tp.router, "192.0.2.2:40000", "192.0.2.1:4789", "peer")
	msg, from := recvUDP(t, vx)
	if msg != "peer" || from.Addr() != addr("192.0.2.2") {
		t.Fatalf("VXLAN port got %q from %s first, want the peer's", msg, from)
	}
	nothingQueued(t, vx, "VXLAN from unknown source")
}

func TestKernelWorkloadSourceGuard(t *testing.T) {
	tp := newTopo(t)
	m, _ := kernelManager(t, tp.node, nil)
	ctx := context.Background()
	tp.pod1.AddAddr(t, "eth0", "10.244.1.99/32") // the pod claims an address it was not given
	ln := listenUDP(t, tp.pod2, "10.244.2.2:5000")

	tp.pod1.AddAddr(t, "eth0", "10.244.2.77/32") // and one routed to another pod

	// Resolve the gateway first: an ARP request sourced from the spoofed
	// 10.244.2.77 would itself fail rp_filter and delay the test by a retry.
	tp.pod1.MustPing(t, addr("10.244.1.1"))

	// Without the pod in the guard, strict rp_filter (veth's option) is the
	// only check: it drops 10.244.2.77, whose route leads to another
	// interface, but passes 10.244.1.99, which is routed back to pod1.
	for _, k := range []string{"all", pod1If} {
		tp.node.SetSysctl(t, "net/ipv4/conf/"+k+"/rp_filter", "1")
	}
	d := topoDesired()
	d.Workloads = nil
	if err := m.SetDesired(d); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	sendUDP(t, tp.pod1, "10.244.2.77:4000", "10.244.2.2:5000", "spoof-other")
	sendUDP(t, tp.pod1, "10.244.1.99:4000", "10.244.2.2:5000", "spoof")
	if msg, from := recvUDP(t, ln); msg != "spoof" || from.Addr() != addr("10.244.1.99") {
		t.Fatalf("got %q from %s, want rp_filter to pass 10.244.1.99 and drop 10.244.2.77", msg, from)
	}
	for _, k := range []string{"all", pod1If} {
		tp.node.SetSysctl(t, "net/ipv4/conf/"+k+"/rp_filter", "0")
	}

	if err := m.SetDesired(topoDesired()); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	sendUDP(t, tp.pod1, "10.244.1.99:4000", "10.244.2.2:5000", "spoof")
	sendUDP(t, tp.pod1, "10.244.1.2:4000", "10.244.2.2:5000", "genuine")
	if msg, from := recvUDP(t, ln); msg != "genuine" || from.Addr() != addr("10.244.1.2") {
		t.Fatalf("pod2 got %q from %s first, want the genuine datagram", msg, from)
	}
	nothingQueued(t, ln, "spoofed source")
	tp.pod2.MustPing(t, addr("10.244.1.2")) // replies from pod1's own address pass
}

// forceSNATTo4789 writes, in a table the test owns, a NAT rule that runs
// before tabby's and translates pod UDP to 198.51.100.2:6000 onto the node's
// port 4789, the choice fully random masquerade makes about once in 64,500
// flows. With mark it poses as tabby's rule (it sets the guard mark).
func forceSNATTo4789(t *testing.T, ns *kerneltest.NS, mark uint32) {
	t.Helper()
	c, err := nat.Dial(int(ns.NS))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	tb := c.AddTable(&nftables.Table{Name: "test-forced-snat", Family: nftables.TableFamilyIPv4})
	ch := c.AddChain(&nftables.Chain{Name: "post", Table: tb, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityNATSource - 1)})
	ne := func(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
	c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{198, 51, 100, 2}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6000 >> 8, 6000 & 0xff}},
		&expr.Immediate{Register: 1, Data: ne(mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
		&expr.Immediate{Register: 1, Data: []byte{192, 0, 2, 1}},
		&expr.Immediate{Register: 2, Data: []byte{4789 >> 8, 4789 & 0xff}},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestKernelPortGuard(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mark    uint32
		dropped bool
	}{
		{"tabby's translation onto 4789 is dropped", nat.DefaultPortGuardMark, true},
		{"another tool's translation is left alone", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t)
			m, _ := kernelManager(t, tp.node, nil)
			if err := m.SetDesired(topoDesired()); err != nil {
				t.Fatal(err)
			}
			if err := m.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			forceSNATTo4789(t, tp.node, tc.mark)
			forced := listenUDP(t, tp.inet, "198.51.100.2:6000")
			sentinel := listenUDP(t, tp.inet, "198.51.100.2:5000")
			sendUDP(t, tp.pod1, "10.244.1.2:4100", "198.51.100.2:6000", "forced")
			sendUDP(t, tp.pod1, "10.244.1.2:4101", "198.51.100.2:5000", "sentinel", "sentinel") // twice: see TestKernelMasquerade
			if msg, from := recvUDP(t, sentinel); msg != "sentinel" || from.Addr() != addr("192.0.2.1") || from.Port() == 4789 {
				t.Fatalf("sentinel: %q from %s", msg, from)
			}
			if tc.dropped {
				nothingQueued(t, forced, "translated onto the VXLAN port")
				return
			}
			if msg, from := recvUDP(t, forced); msg != "forced" || from != netip.MustParseAddrPort("192.0.2.1:4789") {
				t.Fatalf("got %q from %s", msg, from)
			}
		})
	}
}

// Host traffic into the tunnel with the underlay address as source is
// masqueraded to the tunnel device's address (never onto the VXLAN port);
// pod traffic into the tunnel keeps the pod's source. A veth named like the
// VXLAN device stands in for it, with a "remote pod" behind.
func TestKernelTunnelMasquerade(t *testing.T) {
	tp := newTopo(t)
	remote := kerneltest.NewNS(t, "natremote")
	kerneltest.Veth(t, tp.node, "vxlan.calico", remote, "eth0")
	tp.node.AddAddr(t, "vxlan.calico", "10.244.9.0/32") // the tunnel address, from the node's block
	remote.AddAddr(t, "eth0", "10.244.100.2/24")
	remote.AddRoute(t, &netlink.Route{LinkIndex: remote.Link(t, "eth0").Attrs().Index, Dst: kerneltest.IPNet("0.0.0.0/0"), Scope: netlink.SCOPE_LINK})
	tp.node.AddRoute(t, &netlink.Route{LinkIndex: tp.node.Link(t, "vxlan.calico").Attrs().Index, Dst: kerneltest.IPNet("10.244.100.0/24"), Scope: netlink.SCOPE_LINK})

	m, _ := kernelManager(t, tp.node, &nat.Config{TunnelInterface: "vxlan.calico"})
	if err := m.SetDesired(topoDesired()); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Dump(context.Background()); err != nil || got != m.Render() {
		t.Fatalf("kernel dump differs from render: %v\n%s", err, got)
	}
	// Twice on one socket: see TestKernelMasquerade.
	lnHost := listenUDP(t, remote, "10.244.100.2:5001")
	sendUDP(t, tp.node, "192.0.2.1:4789", "10.244.100.2:5001", "host", "host")
	if msg, from := recvUDP(t, lnHost); msg != "host" || from.Addr() != addr("10.244.9.0") || from.Port() == 4789 {
		t.Fatalf("remote got %q from %s, want the tunnel address 10.244.9.0 and a port other than 4789", msg, from)
	}
	ln := listenUDP(t, remote, "10.244.100.2:5000")
	sendUDP(t, tp.node, "10.244.9.0:4000", "10.244.100.2:5000", "tunnel-src")
	if msg, from := recvUDP(t, ln); msg != "tunnel-src" || from != netip.MustParseAddrPort("10.244.9.0:4000") {
		t.Fatalf("remote got %q from %s, want it untranslated", msg, from)
	}
	sendUDP(t, tp.pod1, "10.244.1.2:4000", "10.244.100.2:5000", "pod")
	if msg, from := recvUDP(t, ln); msg != "pod" || from != netip.MustParseAddrPort("10.244.1.2:4000") {
		t.Fatalf("remote got %q from %s, want the pod's own source", msg, from)
	}
}
