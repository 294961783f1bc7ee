package proxyarp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/proxyarp"
	"github.com/tabbynet/tabby/proxyarp/proxyarptest"
)

var (
	hostMAC = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	podMAC  = net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0xeb, 0x87}
	upMAC   = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	podIP   = netip.MustParseAddr("10.244.235.135")
	peerIP  = netip.MustParseAddr("10.244.235.140")
	gw      = netip.MustParseAddr("169.254.1.1")
)

const wait = 5 * time.Second

// start runs a Responder over n until the test ends and waits for Run to
// return then.
func start(t *testing.T, n *proxyarptest.Network, cfg proxyarp.Config) *proxyarp.Responder {
	t.Helper()
	cfg.Links, cfg.Listen = n, n.Listen
	r, err := proxyarp.New(&cfg)
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
				t.Errorf("Run: %v", err)
			}
		case <-time.After(wait):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func names(r *proxyarp.Responder) []string {
	var ns []string
	for _, l := range r.Interfaces() {
		ns = append(ns, l.Name)
	}
	return ns
}

func served(r *proxyarp.Responder, want ...string) func() bool {
	return func() bool { return fmt.Sprint(names(r)) == fmt.Sprint(want) }
}

func mustReply(t *testing.T, w *proxyarptest.Wire, target netip.Addr) {
	t.Helper()
	w.Send(proxyarptest.Request(podMAC, podIP, target))
	b, ok := w.Recv(wait)
	if !ok {
		t.Fatalf("%s: no reply for %v", w.Link.Name, target)
	}
	ef, p, err := proxyarptest.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ef.Source, w.Link.MAC) || !bytes.Equal(ef.Destination, podMAC) ||
		!bytes.Equal(p.SenderHardwareAddr, w.Link.MAC) || p.SenderIP != target ||
		!bytes.Equal(p.TargetHardwareAddr, podMAC) || p.TargetIP != podIP {
		t.Fatalf("reply %v -> %v: %+v", ef.Source, ef.Destination, p)
	}
}

func noReply(t *testing.T, w *proxyarptest.Wire) {
	t.Helper()
	if b, ok := w.Recv(50 * time.Millisecond); ok {
		t.Fatalf("%s: unexpected frame %x", w.Link.Name, b)
	}
}

func TestAnswersGatewayWithInterfaceMAC(t *testing.T) {
	n := proxyarptest.NewNetwork()
	up := n.AddLink("eth0", upMAC)
	c1 := n.AddLink("cali6ff8e3ade03", hostMAC)
	c2 := n.AddLink("cali1292bd788a2", net.HardwareAddr{0xee, 0xee, 0xee, 0, 0, 2})
	r := start(t, n, proxyarp.Config{})
	eventually(t, "two cali interfaces served", served(r, "cali1292bd788a2", "cali6ff8e3ade03"))

	mustReply(t, c1, gw)
	mustReply(t, c2, gw)
	// The uplink is never served: not even opened.
	up.Send(proxyarptest.Request(podMAC, podIP, gw))
	noReply(t, up)
	if got := n.Listens(); got != 2 {
		t.Fatalf("%d connections opened, want 2", got)
	}

	// Ignored, each for its reason.
	c1.Send(proxyarptest.Request(podMAC, podIP, peerIP))               // not a gateway
	c1.Send(proxyarptest.Request(podMAC, netip.IPv4Unspecified(), gw)) // DAD probe
	c1.Send(proxyarptest.Request(podMAC, podIP, podIP))                // gratuitous
	reply := proxyarptest.Request(podMAC, podIP, gw)
	reply[21] = 2
	c1.Send(reply)
	c1.Send(reply[:20])
	noReply(t, c1)
	eventually(t, "counters", func() bool { s := r.Stats(); return s.Requests == 7 && s.Replies == 2 })
	s := r.Stats()
	want := map[proxyarp.Reason]uint64{
		proxyarp.ReasonNotServed:  1,
		proxyarp.ReasonProbe:      1,
		proxyarp.ReasonSelfTarget: 1,
		proxyarp.ReasonNotRequest: 1,
		proxyarp.ReasonTruncated:  1,
	}
	if s.Replies != 2 || fmt.Sprint(s.Ignored) != fmt.Sprint(want) || s.Interfaces != 2 || s.InterfacesAdded != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestAnswerAll(t *testing.T) {
	n := proxyarptest.NewNetwork()
	c := n.AddLink("cali0", hostMAC)
	r := start(t, n, proxyarp.Config{AnswerAll: true})
	eventually(t, "served", served(r, "cali0"))
	mustReply(t, c, peerIP)
	mustReply(t, c, gw)
	c.Send(proxyarptest.Request(podMAC, podIP, podIP))
	noReply(t, c)
}

func TestGatewaysAndExplicitNames(t *testing.T) {
	n := proxyarptest.NewNetwork()
	a := n.AddLink("veth-a", hostMAC)
	b := n.AddLink("cali0", hostMAC)
	other := netip.MustParseAddr("10.244.0.1")
	r := start(t, n, proxyarp.Config{
		Selector: proxyarp.Selector{Names: []string{"veth-a"}},
		Gateways: []netip.Addr{other},
	})
	eventually(t, "served", served(r, "veth-a"))
	mustReply(t, a, other)
	a.Send(proxyarptest.Request(podMAC, podIP, gw))
	noReply(t, a)
	b.Send(proxyarptest.Request(podMAC, podIP, other))
	noReply(t, b)
}

func TestFollowsInterfaces(t *testing.T) {
	n := proxyarptest.NewNetwork()
	r := start(t, n, proxyarp.Config{Rescan: time.Hour}) // notifications alone
	eventually(t, "nothing served", served(r))
	c := n.AddLink("calinew", hostMAC)
	eventually(t, "new interface served", served(r, "calinew"))
	mustReply(t, c, gw)
	n.RemoveLink("calinew")
	eventually(t, "removed interface dropped", served(r))
	eventually(t, "removal counted", func() bool { return r.Stats().InterfacesRemoved == 1 })
	// Same name, new index: served again.
	c = n.AddLink("calinew", hostMAC)
	eventually(t, "re-added interface served", served(r, "calinew"))
	mustReply(t, c, gw)
	// The reply reaches the test before the responder counts it.
	eventually(t, "two requests, two replies", func() bool {
		s := r.Stats()
		return s.Replies == 2 && s.Requests == 2
	})
}

// flakyLinks hides notifications; only rescans find changes.
type flakyLinks struct{ *proxyarptest.Network }

func (f flakyLinks) Watch(ctx context.Context, _ chan<- struct{}) error {
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(10 * time.Millisecond):
		return errors.New("subscription lost")
	}
}

func TestRescanWithoutNotifications(t *testing.T) {
	n := proxyarptest.NewNetwork()
	cfg := proxyarp.Config{Rescan: 20 * time.Millisecond, Links: flakyLinks{n}, Listen: n.Listen}
	r, err := proxyarp.New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	c := n.AddLink("cali1", hostMAC)
	eventually(t, "served by rescan", served(r, "cali1"))
	mustReply(t, c, gw)
}

// failingListen fails the first opens, like an interface vanishing between
// the listing and the open.
func TestOpenErrorsAreRetried(t *testing.T) {
	n := proxyarptest.NewNetwork()
	c := n.AddLink("cali1", hostMAC)
	var mu sync.Mutex
	fails := 1
	listen := func(ctx context.Context, l proxyarp.Link) (proxyarp.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return nil, errors.New("no such device")
		}
		return n.Listen(ctx, l)
	}
	// No rescans and no link changes: the retry comes from the back-off.
	r, err := proxyarp.New(&proxyarp.Config{Links: n, Listen: listen, Rescan: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, "served after retry", served(r, "cali1"))
	mustReply(t, c, gw)
	if s := r.Stats(); s.OpenErrors != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// brokenConn fails every read: the server gives up, is counted, and the
// responder neither spins nor crashes.
type brokenConn struct{ closed chan struct{} }

func (b *brokenConn) Read([]byte) (int, error) {
	select {
	case <-b.closed:
		return 0, net.ErrClosed
	default:
		return 0, errors.New("i/o error")
	}
}
func (b *brokenConn) Write(p []byte) (int, error) { return 0, errors.New("i/o error") }
func (b *brokenConn) Close() error {
	select {
	case <-b.closed:
	default:
		close(b.closed)
	}
	return nil
}

func TestVanishingAndBrokenInterfaces(t *testing.T) {
	n := proxyarptest.NewNetwork()
	c := n.AddLink("cali1", hostMAC)
	n.AddLink("calibroken", hostMAC)
	listen := func(ctx context.Context, l proxyarp.Link) (proxyarp.Conn, error) {
		if l.Name == "calibroken" {
			return &brokenConn{closed: make(chan struct{})}, nil
		}
		return n.Listen(ctx, l)
	}
	r, err := proxyarp.New(&proxyarp.Config{Links: n, Listen: listen, Rescan: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, "broken interface given up", func() bool {
		s := r.Stats()
		return s.ReadErrors >= 16 && fmt.Sprint(names(r)) == "[cali1]"
	})
	mustReply(t, c, gw)
	// cali1 vanishes while its server is blocked in Read.
	n.RemoveLink("cali1")
	eventually(t, "vanished interface dropped", func() bool { return len(r.Interfaces()) == 0 })
}

func TestStopsCleanly(t *testing.T) {
	before := runtime.NumGoroutine()
	n := proxyarptest.NewNetwork()
	for i := range 20 {
		n.AddLink(fmt.Sprintf("cali%d", i), hostMAC)
	}
	r, err := proxyarp.New(&proxyarp.Config{Links: n, Listen: n.Listen})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	eventually(t, "all served", func() bool { return len(r.Interfaces()) == 20 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return")
	}
	if s := r.Stats(); s.Interfaces != 0 || s.InterfacesRemoved != 20 {
		t.Fatalf("stats after stop %+v", s)
	}
	eventually(t, "goroutines gone", func() bool { return runtime.NumGoroutine() <= before })
	if err := r.Run(context.Background()); !errors.Is(err, proxyarp.ErrRunning) {
		t.Fatalf("second Run: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []*proxyarp.Config{
		{Gateways: []netip.Addr{netip.MustParseAddr("fe80::1")}},
		{Gateways: []netip.Addr{{}}},
		{Rescan: -time.Second},
		{RealtimePriority: 100},
		{RealtimePriority: -1},
	} {
		if _, err := proxyarp.New(cfg); !errors.Is(err, proxyarp.ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v", cfg, err)
		}
	}
	if _, err := proxyarp.New(nil); err != nil {
		t.Fatal(err)
	}
}

func TestSelector(t *testing.T) {
	for _, tt := range []struct {
		s    proxyarp.Selector
		name string
		want bool
	}{
		{proxyarp.Selector{}, "cali6ff8e3ade03", true},
		{proxyarp.Selector{}, "eth0", false},
		{proxyarp.Selector{Prefix: "tap"}, "cali1", false},
		{proxyarp.Selector{Names: []string{"veth1"}}, "veth1", true},
		{proxyarp.Selector{Names: []string{"veth1"}}, "cali1", false},
		{proxyarp.Selector{Prefix: "cali", Names: []string{"veth1"}}, "cali1", true},
	} {
		if got := tt.s.Match(tt.name); got != tt.want {
			t.Errorf("%+v.Match(%q) = %v", tt.s, tt.name, got)
		}
	}
}

// fakeSysctl is an in-memory /proc/sys that counts writes.
type fakeSysctl struct {
	m      map[string]string
	writes int
}

func (f *fakeSysctl) SetSysctl(k, v string) error { f.m[k] = v; f.writes++; return nil }
func (f *fakeSysctl) Sysctl(k string) (string, error) {
	v, ok := f.m[k]
	if !ok {
		return "", errors.New("no such key")
	}
	return v, nil
}

func TestKernelModeSysctl(t *testing.T) {
	f := &fakeSysctl{m: map[string]string{
		"net/ipv4/conf/cali1/proxy_arp":    "0",
		"net/ipv4/neigh/cali1/proxy_delay": "80",
	}}
	if on, _ := proxyarp.KernelEnabled(f, "cali1"); on {
		t.Fatal("enabled before")
	}
	if err := proxyarp.EnableKernel(f, "cali1"); err != nil {
		t.Fatal(err)
	}
	if on, _ := proxyarp.KernelEnabled(f, "cali1"); !on || f.writes != 2 {
		t.Fatalf("after enable: %v, %d writes", f.m, f.writes)
	}
	if err := proxyarp.EnableKernel(f, "cali1"); err != nil || f.writes != 2 {
		t.Fatalf("second enable wrote: %v, %d writes", err, f.writes)
	}
	if err := proxyarp.DisableKernel(f, "cali1"); err != nil || f.m["net/ipv4/conf/cali1/proxy_arp"] != "0" {
		t.Fatalf("disable: %v %v", err, f.m)
	}
	for _, bad := range []string{"", "../../x", "a/b", "0123456789abcdef", ".."} {
		if err := proxyarp.EnableKernel(f, bad); !errors.Is(err, proxyarp.ErrInvalidInterface) {
			t.Errorf("EnableKernel(%q) = %v", bad, err)
		}
	}
}
