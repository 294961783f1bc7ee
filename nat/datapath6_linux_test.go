//go:build linux

package nat_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/nat"
)

// topo6 is topo in IPv6 (2001:db8::/32 underlay, fd00:10:244::/48 pods):
//
//	pod1 fd00:10:244:1::2 --calia1--+
//	                                node 2001:db8:1::1 --eth1-- 2001:db8:1::2 (+::3) router 2001:db8:2::1 --eth2-- 2001:db8:2::2 internet
//	pod2 fd00:10:244:2::2 --calib2--+
//
// The router has no route back to the pod pool.
func newTopo6(t *testing.T) *topo {
	t.Helper()
	tp := &topo{
		node: kerneltest.NewNS(t, "nat6node"), pod1: kerneltest.NewNS(t, "nat6pod1"), pod2: kerneltest.NewNS(t, "nat6pod2"),
		router: kerneltest.NewNS(t, "nat6rtr"), inet: kerneltest.NewNS(t, "nat6inet"),
	}
	// No duplicate address detection: addresses are usable at once.
	for _, ns := range []*kerneltest.NS{tp.node, tp.pod1, tp.pod2, tp.router, tp.inet} {
		for _, k := range []string{"all", "default"} {
			ns.SetSysctl(t, "net/ipv6/conf/"+k+"/accept_dad", "0")
		}
	}
	kerneltest.Veth(t, tp.node, pod1If, tp.pod1, "eth0")
	kerneltest.Veth(t, tp.node, pod2If, tp.pod2, "eth0")
	kerneltest.Veth(t, tp.node, "eth1", tp.router, "eth1")
	kerneltest.Veth(t, tp.router, "eth2", tp.inet, "eth2")

	addAddr6(t, tp.node, pod1If, "fd00:10:244:1::1/64")
	addAddr6(t, tp.node, pod2If, "fd00:10:244:2::1/64")
	addAddr6(t, tp.node, "eth1", "2001:db8:1::1/64")
	addAddr6(t, tp.pod1, "eth0", "fd00:10:244:1::2/64")
	addAddr6(t, tp.pod2, "eth0", "fd00:10:244:2::2/64")
	addAddr6(t, tp.router, "eth1", "2001:db8:1::2/64")
	addAddr6(t, tp.router, "eth1", "2001:db8:1::3/64")
	addAddr6(t, tp.router, "eth2", "2001:db8:2::1/64")
	addAddr6(t, tp.inet, "eth2", "2001:db8:2::2/64")

	defRoute := func(ns *kerneltest.NS, dev, gw string) {
		ns.AddRoute(t, &netlink.Route{LinkIndex: ns.Link(t, dev).Attrs().Index, Dst: kerneltest.IPNet("::/0"), Gw: kerneltest.IP(addr(gw))})
	}
	defRoute(tp.pod1, "eth0", "fd00:10:244:1::1")
	defRoute(tp.pod2, "eth0", "fd00:10:244:2::1")
	defRoute(tp.node, "eth1", "2001:db8:1::2")
	defRoute(tp.inet, "eth2", "2001:db8:2::1")
	for _, ns := range []*kerneltest.NS{tp.node, tp.router} {
		ns.SetSysctl(t, "net/ipv6/conf/all/forwarding", "1")
	}
	return tp
}

// addAddr6 adds an IPv6 address without duplicate address detection.
func addAddr6(t *testing.T, ns *kerneltest.NS, dev, prefix string) {
	t.Helper()
	a, err := netlink.ParseAddr(prefix)
	if err != nil {
		t.Fatal(err)
	}
	a.Flags = unix.IFA_F_NODAD
	if err := ns.Handle.AddrAdd(ns.Link(t, dev), a); err != nil {
		t.Fatalf("%s: addr add %s dev %s: %v", ns.Name, prefix, dev, err)
	}
}

// ping6 sends ICMPv6 echo requests from ns to dst, one every 200 ms, until
// a reply arrives or timeout passes, and returns the reply's source.
func ping6(ns *kerneltest.NS, dst netip.Addr, timeout time.Duration) (netip.Addr, error) {
	return ping6Zone(ns, dst, "", timeout)
}

// ping6Zone is ping6 to a link-local dst on the interface zone.
func ping6Zone(ns *kerneltest.NS, dst netip.Addr, zone string, timeout time.Duration) (netip.Addr, error) {
	var c *net.IPConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.ListenIP("ip6:ipv6-icmp", nil)
		return err
	}); err != nil {
		return netip.Addr{}, fmt.Errorf("%s: icmpv6 socket: %w", ns.Name, err)
	}
	defer c.Close()
	id := uint16(rand.Uint32())
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		// Echo request; the kernel fills in the ICMPv6 checksum.
		req := []byte{128, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq), 't', 'a', 'b', 'b', 'y'}
		if _, err := c.WriteToIP(req, &net.IPAddr{IP: kerneltest.IP(dst), Zone: zone}); err != nil {
			return netip.Addr{}, fmt.Errorf("%s: ping %s: %w", ns.Name, dst, err)
		}
		until := time.Now().Add(200 * time.Millisecond)
		if until.After(deadline) {
			until = deadline
		}
		_ = c.SetReadDeadline(until)
		for {
			n, from, err := c.ReadFromIP(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return netip.Addr{}, err
			}
			if n >= 8 && buf[0] == 129 && binary.BigEndian.Uint16(buf[4:]) == id {
				a, _ := netip.AddrFromSlice(from.IP)
				return a, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("%s: ping %s: no reply within %v", ns.Name, dst, timeout)
}

func mustPing6(t *testing.T, ns *kerneltest.NS, dst netip.Addr) {
	t.Helper()
	if _, err := ping6(ns, dst, 3*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, ns.Dump())
	}
}

// listenUDP6 and sendUDP6 are listenUDP and sendUDP over IPv6.
func listenUDP6(t *testing.T, ns *kerneltest.NS, ap string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(ap)))
		return err
	}); err != nil {
		t.Fatalf("%s: listen %s: %v", ns.Name, ap, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sendUDP6(t *testing.T, ns *kerneltest.NS, from, to string, payloads ...string) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.DialUDP("udp6", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from)), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(to)))
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

// topo6Desired is a dual-stack desired state for topo6 (the IPv4 pool is
// there to show that both tables work side by side).
func topo6Desired() nat.Desired {
	return nat.Desired{
		Pools: []nat.Pool{
			{CIDR: pfx("10.244.0.0/16"), NATOutgoing: true},
			{CIDR: pfx("fd00:10:244::/48"), NATOutgoing: true},
		},
		VXLANPeers: []netip.Addr{addr("192.0.2.2"), addr("2001:db8:1::2")},
		Workloads: []nat.Workload{
			{Interface: pod1If, Addrs: []netip.Addr{addr("10.244.1.2"), addr("fd00:10:244:1::2")}},
			{Interface: pod2If, Addrs: []netip.Addr{addr("10.244.2.2"), addr("fd00:10:244:2::2")}},
		},
	}
}

func syncTo(t *testing.T, m *nat.Manager, d nat.Desired) {
	t.Helper()
	if err := m.SetDesired(d); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestKernelMasqueradeIPv6(t *testing.T) {
	tp := newTopo6(t)
	m, _ := kernelManager(t, tp.node, nil)
	internet := addr("2001:db8:2::2")

	// Without tabby's tables the router cannot return replies to the pod.
	if _, err := ping6(tp.pod1, internet, time.Second); err == nil {
		t.Fatal("IPv6 ping to the internet host worked without masquerade")
	}
	mustPing6(t, tp.pod1, addr("fd00:10:244:2::2")) // inside the node it works

	syncTo(t, m, topo6Desired())
	if got, err := m.Dump(context.Background()); err != nil || got != m.Render() {
		t.Fatalf("kernel dump differs from render: %v\n%s", err, got)
	}
	if from, err := ping6(tp.pod1, internet, 3*time.Second); err != nil || from != internet {
		t.Fatalf("IPv6 ping with masquerade: reply from %s, %v\n%s", from, err, tp.node.Dump())
	}

	// The internet host sees the node's address, on a port other than 4789.
	ln := listenUDP6(t, tp.inet, "[2001:db8:2::2]:5001")
	sendUDP6(t, tp.pod1, "[fd00:10:244:1::2]:4789", "[2001:db8:2::2]:5001", "from-4789", "from-4789")
	if msg, from := recvUDP(t, ln); msg != "from-4789" || from.Addr() != addr("2001:db8:1::1") || from.Port() == nat.DefaultVXLANPort {
		t.Fatalf("internet host got %q from %s, want the node 2001:db8:1::1 with a port other than 4789", msg, from)
	}

	// Pod to pod inside the pools keeps the pod's source.
	ln2 := listenUDP6(t, tp.pod2, "[fd00:10:244:2::2]:5000")
	sendUDP6(t, tp.pod1, "[fd00:10:244:1::2]:4000", "[fd00:10:244:2::2]:5000", "p2p")
	if msg, from := recvUDP(t, ln2); msg != "p2p" || from != netip.MustParseAddrPort("[fd00:10:244:1::2]:4000") {
		t.Fatalf("pod2 got %q from %s, want [fd00:10:244:1::2]:4000", msg, from)
	}

	// SNAT to a fixed IPv6 address, UDP off the VXLAN port.
	d := topo6Desired()
	d.SNATTo6 = addr("2001:db8:1::1")
	syncTo(t, m, d)
	if got, _ := m.Dump(context.Background()); got != m.Render() {
		t.Fatalf("dump differs from render\n%s", got)
	}
	mustPing6(t, tp.pod1, internet)
	ln = listenUDP6(t, tp.inet, "[2001:db8:2::2]:5002")
	sendUDP6(t, tp.pod1, "[fd00:10:244:1::2]:4789", "[2001:db8:2::2]:5002", "snat")
	lo, hi := nat.SNATPortRange(nat.DefaultVXLANPort)
	if msg, from := recvUDP(t, ln); msg != "snat" || from.Addr() != addr("2001:db8:1::1") || from.Port() < lo || from.Port() > hi {
		t.Fatalf("SNAT: got %q from %s", msg, from)
	}

	// The IPv6 pool without natOutgoing: no translation, no reply.
	d = topo6Desired()
	d.Pools[1].NATOutgoing = false
	syncTo(t, m, d)
	if _, err := ping6(tp.pod1, internet, time.Second); err == nil {
		t.Fatal("IPv6 ping worked with natOutgoing off")
	}
}

func TestKernelVXLANAllowListIPv6(t *testing.T) {
	tp := newTopo6(t)
	m, _ := kernelManager(t, tp.node, nil)
	vx := listenUDP6(t, tp.node, "[2001:db8:1::1]:4789")
	other := listenUDP6(t, tp.node, "[2001:db8:1::1]:5000") // sentinel port

	d := topo6Desired()
	d.VXLANPeers = d.VXLANPeers[:1] // the IPv4 peer only
	syncTo(t, m, d)
	sendUDP6(t, tp.router, "[2001:db8:1::2]:40000", "[2001:db8:1::1]:4789", "peer-early")
	sendUDP6(t, tp.router, "[2001:db8:1::3]:40000", "[2001:db8:1::1]:4789", "stranger")
	sendUDP6(t, tp.router, "[2001:db8:1::2]:40001", "[2001:db8:1::1]:5000", "sentinel")
	if msg, _ := recvUDP(t, other); msg != "sentinel" {
		t.Fatalf("sentinel got %q", msg)
	}
	nothingQueued(t, vx, "IPv6 VXLAN with no known IPv6 peer")

	syncTo(t, m, topo6Desired())
	sendUDP6(t, tp.router, "[2001:db8:1::3]:40000", "[2001:db8:1::1]:4789", "stranger")
	sendUDP6(t, tp.router, "[2001:db8:1::2]:40000", "[2001:db8:1::1]:4789", "peer")
	msg, from := recvUDP(t, vx)
	if msg != "peer" || from.Addr() != addr("2001:db8:1::2") {
		t.Fatalf("VXLAN port got %q from %s first, want the peer's", msg, from)
	}
	nothingQueued(t, vx, "IPv6 VXLAN from a non-peer")
}

func TestKernelWorkloadSourceGuardIPv6(t *testing.T) {
	tp := newTopo6(t)
	m, _ := kernelManager(t, tp.node, nil)
	ln := listenUDP6(t, tp.pod2, "[fd00:10:244:2::2]:5000")
	syncTo(t, m, topo6Desired())

	// Resolve the gateway from the genuine address first (neighbour
	// discovery itself passes the guard: link-local and genuine sources).
	mustPing6(t, tp.pod1, addr("fd00:10:244:1::1"))
	addAddr6(t, tp.pod1, "eth0", "fd00:10:244:1::99/128") // an address it was not given
	addAddr6(t, tp.pod1, "eth0", "fd00:10:244:2::77/128") // one of pod2's subnet

	sendUDP6(t, tp.pod1, "[fd00:10:244:1::99]:4000", "[fd00:10:244:2::2]:5000", "spoof")
	sendUDP6(t, tp.pod1, "[fd00:10:244:2::77]:4000", "[fd00:10:244:2::2]:5000", "spoof-other")
	sendUDP6(t, tp.pod1, "[fd00:10:244:1::2]:4000", "[fd00:10:244:2::2]:5000", "genuine")
	if msg, from := recvUDP(t, ln); msg != "genuine" || from.Addr() != addr("fd00:10:244:1::2") {
		t.Fatalf("pod2 got %q from %s first, want the genuine datagram", msg, from)
	}
	nothingQueued(t, ln, "spoofed IPv6 source")
	mustPing6(t, tp.pod2, addr("fd00:10:244:1::2")) // replies from pod1's own address pass

	// Link-local sources pass: the pod pings the host side of its veth at
	// its link-local address (as it resolves a gateway at fe80::... , see
	// the proxyarp package), sending from its own link-local address.
	ll := linkLocal(t, tp.node, pod1If)
	// The zone by index: a name would be looked up in the test's namespace.
	zone := strconv.Itoa(tp.pod1.Link(t, "eth0").Attrs().Index)
	if _, err := ping6Zone(tp.pod1, ll, zone, 3*time.Second); err != nil {
		t.Fatalf("ping of the veth's link-local address %s: %v", ll, err)
	}

	// Without the guard the spoofed source gets through: the test can fail.
	d := topo6Desired()
	d.Workloads = nil
	syncTo(t, m, d)
	sendUDP6(t, tp.pod1, "[fd00:10:244:1::99]:4000", "[fd00:10:244:2::2]:5000", "spoof")
	if msg, from := recvUDP(t, ln); msg != "spoof" || from.Addr() != addr("fd00:10:244:1::99") {
		t.Fatalf("without the guard pod2 got %q from %s", msg, from)
	}
}

// linkLocal returns the link-local address of dev in ns.
func linkLocal(t *testing.T, ns *kerneltest.NS, dev string) netip.Addr {
	t.Helper()
	as, err := ns.Handle.AddrList(ns.Link(t, dev), unix.AF_INET6)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.IsLinkLocalUnicast() {
			return ip
		}
	}
	t.Fatalf("%s: no link-local address on %s", ns.Name, dev)
	return netip.Addr{}
}
