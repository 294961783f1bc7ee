//go:build linux

package veth_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/veth"
)

// udpEcho sends one datagram from a to b's address and expects it echoed
// back; it retries until a deadline (neighbour discovery may drop the
// first ones). It is the IPv6 counterpart of kerneltest's Ping.
func udpEcho(t *testing.T, a, b *kerneltest.NS, src, dst netip.Addr) {
	t.Helper()
	var srv, cli *net.UDPConn
	if err := b.Do(func() (err error) {
		srv, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 7777)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := a.Do(func() (err error) {
		cli, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			srv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 64)
	for time.Now().Before(deadline) {
		if _, err := cli.WriteToUDPAddrPort([]byte("tabby"), netip.AddrPortFrom(dst, 7777)); err != nil {
			t.Fatalf("send %s -> %s: %v", src, dst, err)
		}
		cli.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, from, err := cli.ReadFromUDPAddrPort(buf)
		if err == nil && string(buf[:n]) == "tabby" && from.Addr().Unmap() == dst {
			return
		}
	}
	t.Fatalf("no UDP echo %s -> %s\nsender:\n%s\nreceiver:\n%s", src, dst, a.Dump(), b.Dump())
}

// Dual stack: IPv4 through 169.254.1.1 (proxy ARP), IPv6 through the host
// interface's link-local address, both routed by the host's per-pod routes.
func TestKernelDualStack(t *testing.T) {
	node, p := newKernelNode(t, veth.Config{})
	gw := kerneltest.NewNS(t, "vgw")
	kerneltest.Veth(t, node, "ens33", gw, "eth0")
	node.AddAddr(t, "ens33", "10.4.7.61/24")
	node.AddRoute(t, &netlink.Route{Dst: kerneltest.IPNet("0.0.0.0/0"), Gw: net.IPv4(10, 4, 7, 1)})
	// IPv6 forwarding is host-wide: the node's to set, not veth's.
	node.SetSysctl(t, "net/ipv6/conf/all/forwarding", "1")

	pod1, pod2 := kerneltest.NewNS(t, "vpod1"), kerneltest.NewNS(t, "vpod2")
	a4, b4 := netip.MustParseAddr("10.244.235.135"), netip.MustParseAddr("10.244.235.140")
	a6, b6 := netip.MustParseAddr("2001:db8:244::135"), netip.MustParseAddr("2001:db8:244::140")
	ctx := context.Background()
	specs := []veth.Pod{
		{Key: "default.web-0", NetNS: pod1.Path, Addrs: []netip.Prefix{netip.PrefixFrom(a4, 32), netip.PrefixFrom(a6, 128)}},
		{Key: "default.web-1", NetNS: pod2.Path, Addrs: []netip.Prefix{netip.PrefixFrom(b4, 32), netip.PrefixFrom(b6, 128)}},
	}
	for _, s := range specs {
		res, err := p.Setup(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.IPs) != 2 || res.IPs[1].Gateway != netip.MustParseAddr("fe80::ecee:eeff:feee:eeee") {
			t.Fatalf("result IPs %v", res.IPs)
		}
		if err := p.Check(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	pod1.MustPing(t, b4)
	udpEcho(t, pod1, pod2, a6, b6)
	udpEcho(t, pod2, pod1, b6, a6)
	// Idempotent for both families.
	for _, s := range specs {
		before := snapshot(t, node.Handle, node.Sysctl(), p.HostIfName(s.Key))
		if _, err := p.Setup(ctx, s); err != nil {
			t.Fatal(err)
		}
		if snapshot(t, node.Handle, node.Sysctl(), p.HostIfName(s.Key)) != before {
			t.Fatal("second Setup changed the node")
		}
	}
	// Check sees a missing IPv6 route.
	h := node.Link(t, p.HostIfName(specs[1].Key))
	if err := node.Handle.RouteDel(&netlink.Route{LinkIndex: h.Attrs().Index, Dst: kerneltest.IPNet("2001:db8:244::140/128"), Protocol: 80}); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(ctx, specs[1]); !errors.Is(err, veth.ErrMismatch) || !strings.Contains(err.Error(), "2001:db8:244::140/128") {
		t.Fatalf("Check: %v", err)
	}
	for _, s := range specs {
		if err := p.Teardown(ctx, s.Key); err != nil {
			t.Fatal(err)
		}
	}
	if got := links(t, node); fmt.Sprint(got) != "[ens33 veth]" {
		t.Fatalf("node links: %v", got)
	}
}
