//go:build linux

package vxlan_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/veth"
	"github.com/tabbynet/tabby/vxlan"
)

// v6Node is one node of TestKernelVXLANOverIPv6: an IPv6 underlay address,
// an IPv6 block, a pod plumbed by veth and the IPv6 Manager.
type v6Node struct {
	name   string
	ns     *kerneltest.NS
	pod    *kerneltest.NS
	under  netip.Prefix
	block  netip.Prefix
	tunnel netip.Addr
	podIP  netip.Addr
	mgr    *vxlan.Manager
}

// v6Frame is a captured VXLAN-over-IPv6 packet, decoded.
type v6Frame struct {
	src, dst           netip.Addr // outer IPv6
	dstPort            uint16
	vni                uint32
	innerSrc, innerDst netip.Addr // inner IPv6
	innerProto         uint8      // inner next header
}

func (f v6Frame) String() string {
	return fmt.Sprintf("%s -> %s udp/%d vni %d [%s -> %s proto %d]", f.src, f.dst, f.dstPort, f.vni, f.innerSrc, f.innerDst, f.innerProto)
}

// parseVXLAN6 decodes Ethernet / IPv6 / UDP / VXLAN / Ethernet / IPv6 with
// no extension headers; ok is false for anything else.
func parseVXLAN6(b []byte) (v6Frame, bool) {
	const outer = 14 + 40 + 8 + 8 // Ethernet, IPv6, UDP, VXLAN
	if len(b) < outer+14+40 || binary.BigEndian.Uint16(b[12:]) != unix.ETH_P_IPV6 || b[14+6] != unix.IPPROTO_UDP {
		return v6Frame{}, false
	}
	var f v6Frame
	f.src, _ = netip.AddrFromSlice(b[14+8 : 14+24])
	f.dst, _ = netip.AddrFromSlice(b[14+24 : 14+40])
	udp := b[54:]
	f.dstPort = binary.BigEndian.Uint16(udp[2:])
	vx := b[62:]
	if vx[0]&0x08 == 0 {
		return v6Frame{}, false // the VNI-valid flag
	}
	f.vni = binary.BigEndian.Uint32(vx[4:]) >> 8
	inner := b[outer:]
	if binary.BigEndian.Uint16(inner[12:]) != unix.ETH_P_IPV6 {
		return v6Frame{}, false
	}
	ip := inner[14:]
	f.innerProto = ip[6]
	f.innerSrc, _ = netip.AddrFromSlice(ip[8:24])
	f.innerDst, _ = netip.AddrFromSlice(ip[24:40])
	return f, true
}

// capture6 records every frame on dev in ns (an AF_PACKET socket opened
// in ns, read from Go) until the returned stop is called.
func capture6(t *testing.T, ns *kerneltest.NS, dev string) (stop func() [][]byte) {
	t.Helper()
	idx := ns.Link(t, dev).Attrs().Index
	proto := int(htons(unix.ETH_P_ALL))
	var fd int
	if err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx})
	}); err != nil {
		t.Fatalf("capture on %s/%s: %v", ns.Name, dev, err)
	}
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var frames [][]byte
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		buf := make([]byte, 65536)
		for {
			flags := 0
			select {
			case <-quit:
				flags = unix.MSG_DONTWAIT // drain what is queued, then stop
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, flags)
			if err != nil {
				if flags != 0 {
					return
				}
				continue // timeout: look at quit
			}
			mu.Lock()
			frames = append(frames, append([]byte(nil), buf[:n]...))
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop = func() [][]byte {
		once.Do(func() { close(quit); <-done; unix.Close(fd) })
		mu.Lock()
		defer mu.Unlock()
		return frames
	}
	t.Cleanup(func() { stop() })
	return stop
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ping6 sends ICMPv6 echo requests from ns to dst until a reply arrives or
// timeout passes.
func ping6(ns *kerneltest.NS, dst netip.Addr, timeout time.Duration) error {
	var c *net.IPConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.ListenIP("ip6:ipv6-icmp", nil)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	id := uint16(rand.Uint32())
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		req := []byte{128, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)} // the kernel checksums ICMPv6
		if _, err := c.WriteToIP(req, &net.IPAddr{IP: net.IP(dst.AsSlice())}); err != nil {
			return fmt.Errorf("%s: ping %s: %w", ns.Name, dst, err)
		}
		until := time.Now().Add(200 * time.Millisecond)
		if until.After(deadline) {
			until = deadline
		}
		_ = c.SetReadDeadline(until)
		for {
			n, _, err := c.ReadFromIP(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return err
			}
			if n >= 8 && buf[0] == 129 && binary.BigEndian.Uint16(buf[4:]) == id {
				return nil
			}
		}
	}
	return fmt.Errorf("%s: ping %s: no reply within %v", ns.Name, dst, timeout)
}

// Two nodes on an IPv6 underlay (2001:db8:4:7::/64), each with a
// vxlan-v6.calico device from the existing Manager (IPv6 TunnelAddr and
// LocalAddr) and a pod plumbed by veth: pod to pod over IPv6 is
// encapsulated in VXLAN over IPv6, UDP 4789, VNI 4096, as captured on the
// receiving node's underlay.
func TestKernelVXLANOverIPv6(t *testing.T) {
	kerneltest.Require(t)
	ctx := context.Background()
	nodes := []*v6Node{
		{name: "node1", under: netip.MustParsePrefix("2001:db8:4:7::61/64"), block: netip.MustParsePrefix("fd00:10:244:1::/122")},
		{name: "node2", under: netip.MustParsePrefix("2001:db8:4:7::62/64"), block: netip.MustParsePrefix("fd00:10:244:2::/122")},
	}
	for _, n := range nodes {
		n.ns = kerneltest.NewNS(t, "vx6"+n.name)
		n.tunnel = n.block.Addr()
		n.podIP = n.block.Addr().Next().Next().Next().Next().Next() // ::5
	}
	kerneltest.Veth(t, nodes[0].ns, "eth0", nodes[1].ns, "eth0")
	for _, n := range nodes {
		a, _ := netlink.ParseAddr(n.under.String())
		a.Flags = unix.IFA_F_NODAD // usable at once
		if err := n.ns.Handle.AddrAdd(n.ns.Link(t, "eth0"), a); err != nil {
			t.Fatal(err)
		}
		n.ns.SetSysctl(t, "net/ipv6/conf/all/forwarding", "1")
		n.pod = kerneltest.NewNS(t, "vx6pod")
		p, err := veth.New(n.ns.Handle, &veth.Config{Sysctl: veth.SysctlAt(n.ns.Path)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Setup(ctx, veth.Pod{Key: "default.pod-" + n.name, NetNS: n.pod.Path, Addrs: []netip.Prefix{netip.PrefixFrom(n.podIP, 128)}}); err != nil {
			t.Fatal(err)
		}
		n.mgr, err = vxlan.New(n.ns.Handle, &vxlan.Config{
			Parent: "eth0", LocalAddr: n.under, TunnelAddr: n.tunnel, NodeName: n.name, Namespace: n.ns.Path,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.mgr.SetLocalBlocks([]netip.Prefix{n.block}); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range nodes {
		o := nodes[1-i]
		if err := n.mgr.SetPeers([]vxlan.Peer{{Name: o.name, NodeIP: o.under.Addr(), TunnelIP: o.tunnel, TunnelMAC: o.mgr.MAC(), Blocks: []netip.Prefix{o.block}}}); err != nil {
			t.Fatal(err)
		}
		if err := n.mgr.Sync(ctx); err != nil {
			t.Fatalf("%s: %v\n%s", n.name, err, n.ns.Dump())
		}
		if err := n.mgr.Sync(ctx); err != nil || n.mgr.LastResult().Writes != 0 {
			t.Fatalf("%s: resync: %v %+v", n.name, err, n.mgr.LastResult())
		}
	}
	n1, n2 := nodes[0], nodes[1]
	l := n1.ns.Link(t, "vxlan-v6.calico")
	v, ok := l.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("vxlan-v6.calico is %T", l)
	}
	if v.VxlanId != 4096 || v.Port != 4789 || v.Learning || v.MTU != 1500-vxlan.OverheadV6 ||
		!v.SrcAddr.Equal(net.IP(n1.under.Addr().AsSlice())) || v.VtepDevIndex != n1.ns.Link(t, "eth0").Attrs().Index {
		t.Fatalf("device: %+v", v)
	}
	// The tunnel address is added with IFA_F_NODAD: never tentative, so
	// the host can use it as a source at once.
	as, err := n1.ns.Handle.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	seen := false
	for _, a := range as {
		if a.IP.Equal(net.IP(n1.tunnel.AsSlice())) {
			seen = true
			if a.Flags&unix.IFA_F_TENTATIVE != 0 || a.Flags&unix.IFA_F_NODAD == 0 {
				t.Errorf("tunnel address %s flags %#x: want nodad, not tentative", a.IPNet, a.Flags)
			}
		}
	}
	if !seen {
		t.Errorf("no tunnel address %v on vxlan-v6.calico", n1.tunnel)
	}

	stop := capture6(t, n2.ns, "eth0")
	if err := ping6(n1.pod, n2.podIP, 10*time.Second); err != nil {
		t.Fatalf("pod %s -> pod %s: %v\n%s\n%s", n1.podIP, n2.podIP, err, n1.ns.Dump(), n2.ns.Dump())
	}
	frames := stop()
	var vx []v6Frame
	for _, b := range frames {
		f, ok := parseVXLAN6(b)
		if ok && f.src == n1.under.Addr() && f.dst == n2.under.Addr() && f.dstPort == 4789 && f.vni == 4096 &&
			f.innerSrc == n1.podIP && f.innerDst == n2.podIP && f.innerProto == unix.IPPROTO_ICMPV6 {
			vx = append(vx, f)
		}
		// No pod traffic may cross the underlay unencapsulated.
		if len(b) >= 54 && binary.BigEndian.Uint16(b[12:]) == unix.ETH_P_IPV6 {
			src, _ := netip.AddrFromSlice(b[22:38])
			dst, _ := netip.AddrFromSlice(b[38:54])
			if src == n1.podIP || dst == n2.podIP {
				t.Errorf("unencapsulated pod traffic on the underlay: %s -> %s", src, dst)
			}
		}
	}
	if len(vx) == 0 {
		for _, b := range frames {
			f, ok := parseVXLAN6(b)
			t.Logf("captured %d bytes: %t %s % x", len(b), ok, f, b[:min(len(b), 80)])
		}
		t.Fatalf("no VXLAN-over-IPv6 frame (UDP 4789, VNI 4096) node1 -> node2 among %d captured", len(frames))
	}
	t.Logf("captured on node2 eth0: %s", vx[0])
}

// BenchmarkSyncPeers6: BenchmarkSyncPeers6Fake on the real kernel, in a
// namespace: empty vxlan-v6.calico to n IPv6 peers (3n writes).
func BenchmarkSyncPeers6(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			ns := kerneltest.NewNS(b, "vx6b")
			other := kerneltest.NewNS(b, "vx6bo")
			kerneltest.Veth(b, ns, "eth0", other, "eth0")
			a, _ := netlink.ParseAddr("2001:db8:4::1/64")
			a.Flags = unix.IFA_F_NODAD
			if err := ns.Handle.AddrAdd(ns.Link(b, "eth0"), a); err != nil {
				b.Fatal(err)
			}
			m, err := vxlan.New(ns.Handle, &vxlan.Config{
				Parent: "eth0", LocalAddr: netip.MustParsePrefix("2001:db8:4::1/64"),
				TunnelAddr: netip.MustParseAddr("fd00:10:244:ffff::"), NodeName: "bench", Namespace: ns.Path,
			})
			if err != nil {
				b.Fatal(err)
			}
			if err := m.SetLocalBlocks([]netip.Prefix{netip.MustParsePrefix("fd00:10:244:ffff::/122")}); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			peers := benchPeers6(n)
			writes := 0
			for b.Loop() {
				b.StopTimer()
				if l, err := ns.Handle.LinkByName(m.Device()); err == nil {
					if err := ns.Handle.LinkDel(l); err != nil {
						b.Fatal(err)
					}
				}
				_ = m.SetPeers(nil)
				if err := m.Sync(ctx); err != nil {
					b.Fatal(err)
				}
				if err := m.SetPeers(peers); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := m.Sync(ctx); err != nil {
					b.Fatal(err)
				}
				writes += m.LastResult().Writes
			}
			b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
			if r := m.LastResult(); r.Routes != n+1 || r.Neighbours != n || r.FDB != n {
				b.Fatalf("in place: %+v", r)
			}
		})
	}
}
