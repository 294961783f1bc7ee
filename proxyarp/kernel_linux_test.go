//go:build linux

package proxyarp_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/proxyarp"
)

// topology is the seed's node: a host namespace whose cali veths (MAC
// ee:ee:ee:ee:ee:ee, no IPv4, kernel proxy_arp off) lead to pod
// namespaces with `169.254.1.1 dev eth0 scope link` and `default via
// 169.254.1.1`, and a /32 route per pod on the host.
type topology struct {
	host *kerneltest.NS
	pods []*kerneltest.NS
	ips  []netip.Addr
	cali []string
}

func newTopology(t *testing.T, npods int) *topology {
	t.Helper()
	tp := &topology{host: kerneltest.NewNS(t, "parp-host")}
	tp.host.SetSysctl(t, "net/ipv4/conf/all/forwarding", "1")
	for i := range npods {
		tp.addPod(t, netip.AddrFrom4([4]byte{10, 244, 235, byte(135 + i)}))
	}
	return tp
}

func (tp *topology) addPod(t *testing.T, ip netip.Addr) (*kerneltest.NS, string) {
	t.Helper()
	pod := kerneltest.NewNS(t, "parp-pod")
	cali := kerneltest.UniqueName("cali")
	hl, pl := kerneltest.Veth(t, tp.host, cali, pod, "eth0")
	if err := tp.host.Handle.LinkSetHardwareAddr(hl, hostMAC); err != nil {
		t.Fatal(err)
	}
	pod.AddAddr(t, "eth0", ip.String()+"/32")
	pod.AddRoute(t, &netlink.Route{LinkIndex: pl.Attrs().Index, Dst: kerneltest.IPNet("169.254.1.1/32"), Scope: netlink.SCOPE_LINK})
	pod.AddRoute(t, &netlink.Route{LinkIndex: pl.Attrs().Index, Gw: kerneltest.IP(gw)})
	tp.host.AddRoute(t, &netlink.Route{LinkIndex: hl.Attrs().Index, Dst: kerneltest.IPNet(ip.String() + "/32"), Scope: netlink.SCOPE_LINK})
	if v, err := tp.host.Sysctl().Sysctl("net/ipv4/conf/" + cali + "/proxy_arp"); err != nil || v != "0" {
		t.Fatalf("kernel proxy_arp on %s = %q, %v", cali, v, err)
	}
	tp.pods, tp.ips, tp.cali = append(tp.pods, pod), append(tp.ips, ip), append(tp.cali, cali)
	return pod, cali
}

func runResponder(t *testing.T, cfg *proxyarp.Config) *proxyarp.Responder {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := proxyarp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(wait):
			t.Error("Run did not return")
		}
	})
	return r
}

func waitServed(t *testing.T, r *proxyarp.Responder, want ...string) {
	t.Helper()
	eventually(t, "served "+want[0], func() bool {
		have := r.Interfaces()
		for _, n := range want {
			// Served, and with the MAC set after the veth was created.
			if !slices.ContainsFunc(have, func(l proxyarp.Link) bool { return l.Name == n && bytes.Equal(l.MAC, hostMAC) }) {
				return false
			}
		}
		return true
	})
}

func queryGateway(t *testing.T, pod *kerneltest.NS, src netip.Addr) {
	t.Helper()
	c, err := kerneltest.NewARPClient(pod, "eth0", src)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mac, _, err := c.Query(gw, 2*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, pod.Dump())
	}
	if !bytes.Equal(mac, hostMAC) {
		t.Fatalf("169.254.1.1 is at %v, want %v", mac, hostMAC)
	}
}

func TestKernelResponder(t *testing.T) {
	tp := newTopology(t, 2)
	// An uplink-like interface that must never be served.
	kerneltest.Veth(t, tp.host, "uplnk0", tp.host, "uplnk1")
	r := runResponder(t, &proxyarp.Config{Netns: tp.host.Path})
	waitServed(t, r, tp.cali...)
	if slices.Contains(names(r), "uplnk0") {
		t.Fatal("uplink served")
	}

	// An explicit request from the pod.
	queryGateway(t, tp.pods[0], tp.ips[0])

	// The kernel's own resolution: the pods reach each other through the
	// host, both resolving their gateway through the responder.
	tp.pods[0].MustPing(t, tp.ips[1])
	for i, pod := range tp.pods {
		neighs, err := pod.Handle.NeighList(0, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		ok := slices.ContainsFunc(neighs, func(n netlink.Neigh) bool {
			return n.IP.Equal(kerneltest.IP(gw)) && bytes.Equal(n.HardwareAddr, hostMAC)
		})
		if !ok {
			t.Fatalf("pod %d has no neighbour 169.254.1.1 at %v:\n%s", i, hostMAC, pod.Dump())
		}
	}
	eventually(t, "three replies counted", func() bool { return r.Stats().Replies >= 3 })

	// An interface created now is served (within a second; the deadline
	// here is generous) and answers.
	pod, cali := tp.addPod(t, netip.MustParseAddr("10.244.235.150"))
	waitServed(t, r, cali)
	queryGateway(t, pod, netip.MustParseAddr("10.244.235.150"))
	pod.MustPing(t, tp.ips[0])

	// And dropped when it goes.
	if err := tp.host.Handle.LinkDel(tp.host.Link(t, cali)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted interface dropped", func() bool { return !slices.Contains(names(r), cali) })
	queryGateway(t, tp.pods[1], tp.ips[1])
	// (The new veth may also have been restarted once when its MAC was
	// set after the responder first saw it.)
	if s := r.Stats(); s.InterfacesRemoved < 1 || s.Interfaces != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// Answering every target must not answer the host's own requests (for the
// pods' addresses, sent out of the cali interfaces): they never reach the
// responder, so pods still reach each other through the host.
func TestKernelAnswerAll(t *testing.T) {
	tp := newTopology(t, 2)
	r := runResponder(t, &proxyarp.Config{Netns: tp.host.Path, AnswerAll: true})
	waitServed(t, r, tp.cali...)
	tp.pods[0].MustPing(t, tp.ips[1])
	tp.pods[1].MustPing(t, tp.ips[0])
	c, err := kerneltest.NewARPClient(tp.pods[0], "eth0", tp.ips[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if mac, _, err := c.Query(tp.ips[1], 2*time.Second); err != nil || !bytes.Equal(mac, hostMAC) {
		t.Fatalf("any target: %v, %v", mac, err)
	}
	// The host resolved both pods itself; none of its requests was seen.
	eventually(t, "every request answered", func() bool {
		s := r.Stats()
		return s.Requests == s.Replies && s.Requests >= 3
	})
}

// With a realtime priority the reader threads run SCHED_FIFO and answer
// as usual.
func TestKernelRealtimeResponder(t *testing.T) {
	tp := newTopology(t, 1)
	r := runResponder(t, &proxyarp.Config{Netns: tp.host.Path, RealtimePriority: 1})
	waitServed(t, r, tp.cali...)
	queryGateway(t, tp.pods[0], tp.ips[0])
	fifo := 0
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue
		}
		// Field 41 (policy) follows the parenthesised command name.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		if len(f) > 38 && f[38] == "1" { // SCHED_FIFO
			fifo++
		}
	}
	if fifo != 1 {
		t.Fatalf("%d SCHED_FIFO threads, want 1 (the reader)", fifo)
	}
}

// The kernel mode helper gives the same answer without a responder (the
// host needs a route for the target through another interface, here a
// default route out of a stand-in uplink).
func TestKernelProxyARPSysctl(t *testing.T) {
	tp := newTopology(t, 1)
	kerneltest.Veth(t, tp.host, "uplnk0", tp.host, "uplnk1")
	tp.host.AddRoute(t, &netlink.Route{LinkIndex: tp.host.Link(t, "uplnk0").Attrs().Index, Dst: kerneltest.IPNet("0.0.0.0/0"), Scope: netlink.SCOPE_LINK})
	sys := proxyarp.SysctlAt(tp.host.Path)
	c, err := kerneltest.NewARPClient(tp.pods[0], "eth0", tp.ips[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.Query(gw, 200*time.Millisecond); err == nil {
		t.Fatal("answered before kernel mode")
	}
	if err := proxyarp.EnableKernel(sys, tp.cali[0]); err != nil {
		t.Fatal(err)
	}
	if on, err := proxyarp.KernelEnabled(sys, tp.cali[0]); err != nil || !on {
		t.Fatalf("enabled = %v, %v", on, err)
	}
	mac, _, err := c.Query(gw, 2*time.Second)
	if err != nil || !bytes.Equal(mac, hostMAC) {
		t.Fatalf("kernel mode: %v, %v", mac, err)
	}
	if err := proxyarp.DisableKernel(sys, tp.cali[0]); err != nil {
		t.Fatal(err)
	}
}

func TestKernelConnAllocatesNothing(t *testing.T) {
	tp := newTopology(t, 1)
	hl := tp.host.Link(t, tp.cali[0])
	conn, err := proxyarp.ListenPacket(tp.host.Path)(context.Background(),
		proxyarp.Link{Index: hl.Attrs().Index, Name: tp.cali[0], MAC: hostMAC})
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 60)
	copy(frame, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	if n := testing.AllocsPerRun(100, func() { conn.Write(frame) }); n != 0 {
		t.Fatalf("Write: %v allocations", n)
	}
	// Close wakes a blocked Read.
	errc := make(chan error)
	go func() {
		_, err := conn.Read(make([]byte, 256))
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	conn.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Read after Close succeeded")
		}
	case <-time.After(wait):
		t.Fatal("Close did not wake Read")
	}
}
