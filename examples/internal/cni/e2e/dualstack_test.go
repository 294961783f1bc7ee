//go:build linux

package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/internal/nsenter"
)

// A dual-stack network through cnitool: each pod gets an IPv4 and an
// IPv6 address with both default routes, the pods reach each other over
// both families through the host, CHECK passes and DEL leaves nothing.
func TestDualStack(t *testing.T) {
	w := newWorld(t)
	w.writeList(w.tabbyConf(map[string]any{
		"proxyARP": "kernel",
		"ipam":     map[string]any{"type": "tabby-ipam", "pools": []string{"10.244.0.0/16", "fd00:10:244::/56"}},
	}))
	// IPv6 forwarding is the host's to switch on (veth sets it per
	// interface only); this host is the test's namespace.
	if err := w.host.Sysctl().SetSysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
		t.Fatal(err)
	}
	// The kernel proxies ARP only for destinations routed through another
	// interface: give the host a default route.
	if err := w.host.Handle.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "dummy0"}, PeerName: "dummy1"}); err != nil {
		t.Fatal(err)
	}
	d := w.host.Link(t, "dummy0")
	if err := w.host.Handle.LinkSetUp(d); err != nil {
		t.Fatal(err)
	}
	w.host.AddRoute(t, &netlink.Route{LinkIndex: d.Attrs().Index, Scope: netlink.SCOPE_LINK, Dst: kerneltest.IPNet("0.0.0.0/0")})
	pods := []*kerneltest.NS{kerneltest.NewNS(t, "pod"), kerneltest.NewNS(t, "pod")}
	var v4, v6 []netip.Addr
	for i, p := range pods {
		out, err := w.cnitool("add", p.Path, fmt.Sprintf("CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		r := decodeResult(t, out)
		if len(r.IPs) != 2 {
			t.Fatalf("result %s: want an address of each family", out)
		}
		a4, a6 := netip.MustParsePrefix(r.IPs[0].Address), netip.MustParsePrefix(r.IPs[1].Address)
		if !a4.Addr().Is4() || a4.Bits() != 32 || !a6.Addr().Is6() || a6.Bits() != 128 ||
			r.IPs[1].Gateway != "fe80::ecee:eeff:feee:eeee" {
			t.Fatalf("result %s", out)
		}
		v4, v6 = append(v4, a4.Addr()), append(v6, a6.Addr())
	}
	pods[0].MustPing(t, v4[1])
	udpEcho(t, pods[0], pods[1], v6[1])
	udpEcho(t, pods[1], pods[0], v6[0])
	for i, p := range pods {
		if _, err := w.cnitool("check", p.Path, fmt.Sprintf("CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-%d", i)); err != nil {
			t.Fatalf("CHECK: %v", err)
		}
		if _, err := w.cnitool("del", p.Path); err != nil {
			t.Fatalf("DEL: %v", err)
		}
	}
	if links := w.hostLinks(); len(links) != 0 {
		t.Fatalf("host interfaces left: %v", links)
	}
	if n := w.allocated(); n != 0 {
		t.Fatalf("%d allocations left", n)
	}
}

// udpEcho sends a datagram from namespace from to dst in namespace to
// (over IPv6 here: the test helpers' ping is IPv4 only) and waits for the
// echo, retrying while neighbour discovery settles.
func udpEcho(t *testing.T, from, to *kerneltest.NS, dst netip.Addr) {
	t.Helper()
	var srv, cli *net.UDPConn
	if err := nsenter.DoPath(to.Path, func() (err error) {
		srv, err = net.ListenUDP("udp6", &net.UDPAddr{IP: dst.AsSlice()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, peer, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteToUDP(buf[:n], peer)
		}
	}()
	if err := nsenter.DoPath(from.Path, func() (err error) {
		cli, err = net.DialUDP("udp6", nil, srv.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	buf := make([]byte, 64)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := cli.Write([]byte("tabby")); err != nil {
			t.Fatal(err)
		}
		_ = cli.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := cli.Read(buf); err == nil && string(buf[:n]) == "tabby" {
			return
		}
	}
	t.Fatalf("no UDP echo from [%v] in %s to %s\n%s\n%s", dst, to.Name, from.Name, from.Dump(), to.Dump())
}
