//go:build linux

package proxyarp_test

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

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/veth"
)

// ping6 sends ICMPv6 echo requests from ns to dst (on the interface with
// index zone, for a link-local dst; 0 otherwise) until a reply arrives or
// timeout passes.
func ping6(ns *kerneltest.NS, dst netip.Addr, zone int, timeout time.Duration) error {
	var c *net.IPConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.ListenIP("ip6:ipv6-icmp", nil)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	to := &net.IPAddr{IP: kerneltest.IP(dst)}
	if zone != 0 {
		to.Zone = strconv.Itoa(zone) // by index: a name would resolve in the test's namespace
	}
	id := uint16(rand.Uint32())
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		req := []byte{128, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)} // the kernel checksums ICMPv6
		if _, err := c.WriteToIP(req, to); err != nil {
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

// neighbour returns the pod's neighbour entry for a on link, if any.
func neighbour(t *testing.T, ns *kerneltest.NS, link int, a netip.Addr) (netlink.Neigh, bool) {
	t.Helper()
	ns6, err := ns.Handle.NeighList(link, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns6 {
		if ip, ok := netip.AddrFromSlice(n.IP); ok && ip == a {
			return n, true
		}
	}
	return netlink.Neigh{}, false
}

// The IPv6 counterpart of proxy ARP needs no responder: veth puts the
// gateway address fe80::ecee:eeff:feee:eeee on the host end of the pod's
// veth, so the host kernel owns it and answers the pod's neighbour
// solicitations itself, as for any of its own addresses (Calico relies on
// the same). With nothing but veth's setup, and no proxy_ndp, no proxyarp
// Responder, the pod resolves its gateway to ee:ee:ee:ee:ee:ee and reaches
// another pod through it; without the address on the host end, it cannot.
func TestKernelIPv6GatewayNeedsNoResponder(t *testing.T) {
	node := kerneltest.NewNS(t, "ndpnode")
	p, err := veth.New(node.Handle, &veth.Config{Sysctl: veth.SysctlAt(node.Path)})
	if err != nil {
		t.Fatal(err)
	}
	node.SetSysctl(t, "net/ipv6/conf/all/forwarding", "1") // host-wide: the node's, not veth's
	pod1, pod2 := kerneltest.NewNS(t, "ndppod1"), kerneltest.NewNS(t, "ndppod2")
	a6, b6 := netip.MustParseAddr("2001:db8:244::135"), netip.MustParseAddr("2001:db8:244::140")
	ctx := context.Background()
	var hostIf string
	for _, s := range []veth.Pod{
		{Key: "default.web-0", NetNS: pod1.Path, Addrs: []netip.Prefix{netip.PrefixFrom(a6, 128)}},
		{Key: "default.web-1", NetNS: pod2.Path, Addrs: []netip.Prefix{netip.PrefixFrom(b6, 128)}},
	} {
		if _, err := p.Setup(ctx, s); err != nil {
			t.Fatal(err)
		}
		if hostIf == "" {
			hostIf = p.HostIfName(s.Key)
		}
	}
	gw := veth.LinkLocal(veth.DefaultHostMAC())
	if gw != netip.MustParseAddr("fe80::ecee:eeff:feee:eeee") {
		t.Fatalf("gateway %s", gw)
	}
	// Nothing but ownership: the kernel's NDP proxy is off.
	for _, k := range []string{"all", hostIf} {
		if v, err := node.Sysctl().Sysctl("net/ipv6/conf/" + k + "/proxy_ndp"); err != nil || v != "0" {
			t.Fatalf("proxy_ndp on %s = %q, %v", k, v, err)
		}
	}
	eth0 := pod1.Link(t, "eth0").Attrs().Index
	if n, ok := neighbour(t, pod1, eth0, gw); ok && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_PERMANENT) != 0 {
		t.Fatalf("gateway already resolved before any traffic: %+v", n)
	}

	// The pod resolves and pings its gateway, then another pod through it.
	if err := ping6(pod1, gw, eth0, 5*time.Second); err != nil {
		t.Fatalf("%v\n%s\n%s", err, pod1.Dump(), node.Dump())
	}
	n, ok := neighbour(t, pod1, eth0, gw)
	if !ok || n.HardwareAddr.String() != "ee:ee:ee:ee:ee:ee" || n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) == 0 {
		t.Fatalf("pod's neighbour entry for %s: %+v (found %t), want learned ee:ee:ee:ee:ee:ee", gw, n, ok)
	}
	if err := ping6(pod1, b6, 0, 5*time.Second); err != nil {
		t.Fatalf("pod to pod over IPv6: %v\n%s", err, node.Dump())
	}

	// Counter-check: without the address on the host end nobody answers.
	hl := node.Link(t, hostIf)
	if err := node.Handle.AddrDel(hl, &netlink.Addr{IPNet: &net.IPNet{IP: kerneltest.IP(gw), Mask: net.CIDRMask(64, 128)}}); err != nil {
		t.Fatal(err)
	}
	if err := pod1.Handle.NeighDel(&netlink.Neigh{LinkIndex: eth0, Family: netlink.FAMILY_V6, IP: kerneltest.IP(gw)}); err != nil {
		t.Fatal(err)
	}
	if err := ping6(pod1, b6, 0, 2*time.Second); err == nil {
		t.Fatal("pod reached another pod with the gateway address removed from the host end")
	}
	if n, ok := neighbour(t, pod1, eth0, gw); ok && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE) != 0 {
		t.Fatalf("gateway resolved without its owner: %+v", n)
	}
}
