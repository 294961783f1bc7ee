//go:build linux

package veth_test

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/veth"
)

var (
	_ veth.Netlink  = (*netlinktest.Kernel)(nil)
	_ veth.PodNetNS = (*netlinktest.Kernel)(nil)
	_ veth.Sysctl   = (*netlinktest.Kernel)(nil)
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const (
	pod1Path = "/var/run/netns/pod1"
	pod2Path = "/var/run/netns/pod2"
)

// newFake returns a fake machine whose initial namespace is the host,
// with pod namespaces pod1 and pod2, and a Plumber on it.
func newFake(t testing.TB, cfg veth.Config) (*netlinktest.Kernel, *veth.Plumber) {
	t.Helper()
	k := netlinktest.New()
	for _, p := range []string{pod1Path, pod2Path} {
		if _, err := k.NewNamespace(p); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Open = veth.Opener(k.NamespaceAt)
	p, err := veth.New(k, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k, p
}

func pod1() veth.Pod {
	return veth.Pod{Key: "default.web-0", NetNS: pod1Path, Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.235.135/32")}}
}

func pod2() veth.Pod {
	return veth.Pod{Key: "default.web-1", NetNS: pod2Path, Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.235.140/32")}}
}

func dualStack() veth.Pod {
	p := pod1()
	p.Addrs = append(p.Addrs, netip.MustParsePrefix("2001:db8:244::135/128"))
	return p
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./veth -run %s -update)", err, t.Name())
	}
	if got != string(want) {
		t.Fatalf("kernel state differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// Two pods on one host: the seed's Q3-Q6 picture, as a golden dump.
func TestFakeSetupTwoPods(t *testing.T) {
	k, p := newFake(t, veth.Config{})
	ctx := context.Background()
	r1, err := p.Setup(ctx, pod1())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Setup(ctx, pod2()); err != nil {
		t.Fatal(err)
	}
	golden(t, "two-pods", k.Dump())

	host, err := k.LinkByName(r1.HostIfName)
	if err != nil {
		t.Fatal(err)
	}
	podk, _ := k.NamespaceAt(pod1Path)
	eth0, err := podk.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().ParentIndex != host.Attrs().Index || r1.HostIndex != host.Attrs().Index || r1.PodIndex != eth0.Attrs().Index {
		t.Fatalf("peer index %d, host index %d, result %+v", eth0.Attrs().ParentIndex, host.Attrs().Index, r1)
	}
	if r1.PodMAC.String() != eth0.Attrs().HardwareAddr.String() || r1.HostMAC.String() != "ee:ee:ee:ee:ee:ee" ||
		r1.Sandbox != pod1Path || r1.MTU != 1450 || len(r1.IPs) != 1 || r1.IPs[0].Gateway != veth.Gateway4() {
		t.Fatalf("result %+v", r1)
	}
	for _, pod := range []veth.Pod{pod1(), pod2()} {
		if err := p.Check(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
}

// A dual-stack pod: IPv6 goes through the host interface's link-local
// address fe80::ecee:eeff:feee:eeee.
func TestFakeDualStack(t *testing.T) {
	k, p := newFake(t, veth.Config{})
	ctx := context.Background()
	res, err := p.Setup(ctx, dualStack())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 2 || res.IPs[0].Gateway != veth.Gateway4() || res.IPs[1].Gateway != netip.MustParseAddr("fe80::ecee:eeff:feee:eeee") {
		t.Fatalf("IPs %v", res.IPs)
	}
	// Not a golden file: the fake's IPv6 emulation is still growing
	// (address scopes, prefix routes), and only these lines are veth's.
	dump := k.Dump()
	for _, line := range []string{
		"addr fe80::ecee:eeff:feee:eeee/64 scope",
		"route 2001:db8:244::135 dev cali0d7763386da table main proto 80 scope global",
		"addr 2001:db8:244::135/128 scope global",
		"route default via fe80::ecee:eeff:feee:eeee dev eth0 table main proto boot scope global",
		"sysctl net/ipv6/conf/cali0d7763386da/forwarding=1",
		"sysctl net/ipv6/conf/cali0d7763386da/accept_ra=0",
	} {
		if !strings.Contains(dump, line) {
			t.Errorf("no %q in\n%s", line, dump)
		}
	}
	if err := p.Check(ctx, dualStack()); err != nil {
		t.Fatal(err)
	}
	writes := k.Writes()
	if _, err := p.Setup(ctx, dualStack()); err != nil || k.Writes() != writes {
		t.Fatalf("second Setup: %v, %d writes", err, k.Writes()-writes)
	}
	host := link(t, k, res.HostIfName)
	must(t, k.AddrDel(host, &netlink.Addr{IPNet: mustIPNet("fe80::ecee:eeff:feee:eeee/64")}))
	if err := p.Check(ctx, dualStack()); !errors.Is(err, veth.ErrMismatch) || !strings.Contains(err.Error(), "gateway address fe80::ecee:eeff:feee:eeee missing") {
		t.Fatalf("Check: %v", err)
	}
	if _, err := p.Setup(ctx, dualStack()); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(ctx, dualStack()); err != nil {
		t.Fatal(err)
	}
	if err := p.Teardown(ctx, dualStack().Key); err != nil {
		t.Fatal(err)
	}
}

func TestFakeSetupIdempotent(t *testing.T) {
	k, p := newFake(t, veth.Config{})
	ctx := context.Background()
	r1, err := p.Setup(ctx, pod1())
	if err != nil {
		t.Fatal(err)
	}
	dump, writes := k.Dump(), k.Writes()
	r2, err := p.Setup(ctx, pod1())
	if err != nil {
		t.Fatal(err)
	}
	if k.Writes() != writes {
		t.Fatalf("second Setup made %d writes", k.Writes()-writes)
	}
	if k.Dump() != dump {
		t.Fatal("second Setup changed the state")
	}
	if r1.HostIndex != r2.HostIndex || r1.PodIndex != r2.PodIndex || r1.PodMAC.String() != r2.PodMAC.String() {
		t.Fatalf("results differ: %+v %+v", r1, r2)
	}
}

// Modes: userspace proxy ARP leaves proxy_arp alone; strict rp_filter;
// another prefix, MAC, MTU and route protocol.
func TestFakeConfig(t *testing.T) {
	k, p := newFake(t, veth.Config{
		ARP: veth.ARPUserspace, StrictRPFilter: true, Prefix: "tab",
		HostMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 1}, MTU: 9000, Protocol: 99,
	})
	res, err := p.Setup(context.Background(), pod1())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.HostIfName, "tab") || len(res.HostIfName) != 14 {
		t.Fatalf("host name %s", res.HostIfName)
	}
	for key, want := range map[string]string{
		"net/ipv4/conf/" + res.HostIfName + "/proxy_arp":    "0",
		"net/ipv4/neigh/" + res.HostIfName + "/proxy_delay": "80",
		"net/ipv4/conf/" + res.HostIfName + "/rp_filter":    "1",
		"net/ipv4/conf/" + res.HostIfName + "/forwarding":   "1",
	} {
		if v, err := k.Sysctl(key); err != nil || v != want {
			t.Errorf("%s = %q, %v; want %s", key, v, err, want)
		}
	}
	golden(t, "config", k.Dump())
	if err := p.Check(context.Background(), pod1()); err != nil {
		t.Fatal(err)
	}
}

func TestFakeTeardown(t *testing.T) {
	k, p := newFake(t, veth.Config{})
	pristine := k.Dump()
	ctx := context.Background()
	if _, err := p.Setup(ctx, pod1()); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := p.Teardown(ctx, pod1().Key); err != nil {
			t.Fatalf("Teardown #%d: %v", i+1, err)
		}
	}
	if got := k.Dump(); got != pristine {
		t.Fatalf("state after Teardown:\n%s\nwant\n%s", got, pristine)
	}
	if err := p.Teardown(ctx, "never.seen"); err != nil {
		t.Fatal(err)
	}
	// The runtime deleted the pod namespace first: the host end went with it.
	if _, err := p.Setup(ctx, pod2()); err != nil {
		t.Fatal(err)
	}
	if err := k.DeleteNamespace(pod2Path); err != nil {
		t.Fatal(err)
	}
	if err := p.Teardown(ctx, pod2().Key); err != nil {
		t.Fatal(err)
	}
	if _, err := k.LinkByName(p.HostIfName(pod2().Key)); err == nil {
		t.Fatal("host end survived its pod namespace")
	}
	if err := p.Check(ctx, pod2()); !errors.Is(err, veth.ErrInvalidNetNS) {
		t.Fatalf("Check with the namespace gone: %v", err)
	}
}

func TestFakeMissingNetNS(t *testing.T) {
	k, p := newFake(t, veth.Config{})
	dump := k.Dump()
	pod := pod1()
	pod.NetNS = "/var/run/netns/nope"
	_, err := p.Setup(context.Background(), pod)
	var ie *veth.InputError
	if !errors.Is(err, veth.ErrInvalidNetNS) || !errors.As(err, &ie) || !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Setup: %v", err)
	}
	if k.Dump() != dump || k.Writes() != 0 {
		t.Fatal("a failed Setup changed the state")
	}
}

// setupAllFailures fails the n-th write of Setup for n = 1, 2, ... until
// Setup succeeds, starting each time from the state prepare leaves, and
// requires every failed Setup to leave the state as before or with
// nothing of the workload at all (ok).
func setupAllFailures(t *testing.T, pod veth.Pod, prepare func(*netlinktest.Kernel, *veth.Plumber), ok func(before, pristine, got string) bool) {
	t.Helper()
	for n := 1; ; n++ {
		k, p := newFake(t, veth.Config{StrictRPFilter: true})
		pristine := k.Dump()
		prepare(k, p)
		before := k.Dump()
		k.FailNth("", n, unix.EIO)
		_, err := p.Setup(context.Background(), pod)
		if err == nil {
			if n < 5 {
				t.Fatalf("Setup succeeded with write %d failing", n)
			}
			if err := p.Check(context.Background(), pod); err != nil {
				t.Fatal(err)
			}
			t.Logf("Setup makes %d writes; each failing left nothing behind", n-1)
			return
		}
		if !errors.Is(err, unix.EIO) {
			t.Fatalf("write %d failing: error %v does not wrap EIO", n, err)
		}
		if got := k.Dump(); !ok(before, pristine, got) {
			t.Fatalf("write %d failing (%v) left:\n%s\nbefore:\n%s", n, err, got, before)
		}
		if n > 50 {
			t.Fatal("Setup never succeeds")
		}
	}
}

// A failure at every step of Setup leaves nothing behind.
func TestFakeFailureAtEveryStep(t *testing.T) {
	t.Run("fresh", func(t *testing.T) {
		setupAllFailures(t, pod1(), func(*netlinktest.Kernel, *veth.Plumber) {},
			func(before, _, got string) bool { return got == before })
	})
	t.Run("dual stack", func(t *testing.T) {
		setupAllFailures(t, dualStack(), func(*netlinktest.Kernel, *veth.Plumber) {},
			func(before, _, got string) bool { return got == before })
	})
	t.Run("stale host link", func(t *testing.T) {
		setupAllFailures(t, pod1(), func(k *netlinktest.Kernel, p *veth.Plumber) {
			if err := k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.HostIfName(pod1().Key), MTU: 1500}, PeerName: "old0"}); err != nil {
				t.Fatal(err)
			}
		}, func(before, pristine, got string) bool { return got == before || got == pristine })
	})
	t.Run("repair", func(t *testing.T) {
		setupAllFailures(t, pod1(), func(k *netlinktest.Kernel, p *veth.Plumber) {
			if _, err := p.Setup(context.Background(), pod1()); err != nil {
				t.Fatal(err)
			}
			if err := k.SetSysctl("net/ipv4/conf/"+p.HostIfName(pod1().Key)+"/forwarding", "0"); err != nil {
				t.Fatal(err)
			}
		}, func(before, pristine, got string) bool { return got == before || got == pristine })
	})
}

// Check names the first difference; Setup repairs it.
func TestFakeCheck(t *testing.T) {
	ctx := context.Background()
	host := veth.HostIfName("cali", pod1().Key)
	for _, c := range []struct {
		name   string
		break_ func(t *testing.T, k, pod *netlinktest.Kernel)
		want   string
	}{
		{"host mtu", func(t *testing.T, k, _ *netlinktest.Kernel) {
			must(t, k.LinkSetMTU(link(t, k, host), 1500))
		}, "host " + host + ": mtu 1500, want 1450"},
		{"host mac", func(t *testing.T, k, _ *netlinktest.Kernel) {
			must(t, k.LinkSetHardwareAddr(link(t, k, host), net.HardwareAddr{2, 0, 0, 0, 0, 9}))
		}, "mac 02:00:00:00:00:09, want ee:ee:ee:ee:ee:ee"},
		{"host down", func(t *testing.T, k, _ *netlinktest.Kernel) {
			must(t, k.LinkSetDown(link(t, k, host)))
		}, "host " + host + " is down"},
		{"pod down", func(t *testing.T, _, pod *netlinktest.Kernel) {
			must(t, pod.LinkSetDown(link(t, pod, "eth0")))
		}, "pod eth0 is down"},
		{"pod address", func(t *testing.T, _, pod *netlinktest.Kernel) {
			must(t, pod.AddrDel(link(t, pod, "eth0"), &netlink.Addr{IPNet: mustIPNet("10.244.235.135/32")}))
		}, "pod eth0: address 10.244.235.135/32 missing"},
		{"extra pod address", func(t *testing.T, _, pod *netlinktest.Kernel) {
			must(t, pod.AddrAdd(link(t, pod, "eth0"), &netlink.Addr{IPNet: mustIPNet("10.244.235.136/32")}))
		}, "unexpected address 10.244.235.136/32"},
		{"pod default route", func(t *testing.T, _, pod *netlinktest.Kernel) {
			must(t, pod.RouteDel(&netlink.Route{LinkIndex: link(t, pod, "eth0").Attrs().Index, Dst: mustIPNet("0.0.0.0/0"), Gw: net.IPv4(169, 254, 1, 1)}))
		}, "route default via 169.254.1.1 dev eth0 missing"},
		{"host route", func(t *testing.T, k, _ *netlinktest.Kernel) {
			must(t, k.RouteDel(&netlink.Route{LinkIndex: link(t, k, host).Attrs().Index, Dst: mustIPNet("10.244.235.135/32"), Scope: netlink.SCOPE_LINK, Protocol: 80}))
		}, "host: route 10.244.235.135/32 dev " + host + " scope link proto 80 missing"},
		{"sysctl", func(t *testing.T, k, _ *netlinktest.Kernel) {
			must(t, k.SetSysctl("net/ipv4/conf/"+host+"/proxy_arp", "0"))
		}, "host sysctl net/ipv4/conf/" + host + "/proxy_arp = 0, want 1"},
		{"host link gone", func(t *testing.T, k, _ *netlinktest.Kernel) {
			must(t, k.LinkDel(link(t, k, host)))
		}, "host interface " + host + " missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			k, p := newFake(t, veth.Config{})
			if _, err := p.Setup(ctx, pod1()); err != nil {
				t.Fatal(err)
			}
			podk, err := k.NamespaceAt(pod1Path)
			if err != nil {
				t.Fatal(err)
			}
			c.break_(t, k, podk)
			err = p.Check(ctx, pod1())
			if !errors.Is(err, veth.ErrMismatch) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Check: %v\nwant ErrMismatch with %q", err, c.want)
			}
			if _, err := p.Setup(ctx, pod1()); err != nil {
				t.Fatal(err)
			}
			if err := p.Check(ctx, pod1()); err != nil {
				t.Fatalf("Check after Setup repaired: %v", err)
			}
		})
	}
}

// An interface of the pod's name that is not the workload's peer is left
// alone: ErrConflict, nothing written.
func TestFakeConflict(t *testing.T) {
	k, p := newFake(t, veth.Config{})
	podk, _ := k.NamespaceAt(pod1Path)
	must(t, podk.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "x0"}))
	dump, writes := k.Dump(), k.Writes()
	if _, err := p.Setup(context.Background(), pod1()); !errors.Is(err, veth.ErrConflict) {
		t.Fatalf("Setup: %v", err)
	}
	if k.Dump() != dump || k.Writes() != writes {
		t.Fatal("Setup changed the state")
	}
}

// A stale host interface of the workload's name (an earlier run's) is
// replaced.
func TestFakeStaleReplaced(t *testing.T) {
	k, p := newFake(t, veth.Config{})
	must(t, k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.HostIfName(pod1().Key)}, PeerName: "old0"}))
	if _, err := p.Setup(context.Background(), pod1()); err != nil {
		t.Fatal(err)
	}
	if _, err := k.LinkByName("old0"); err == nil {
		t.Fatal("stale pair survived")
	}
	if err := p.Check(context.Background(), pod1()); err != nil {
		t.Fatal(err)
	}
}

func TestFakeContextCanceled(t *testing.T) {
	k, p := newFake(t, veth.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Setup(ctx, pod1()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Setup: %v", err)
	}
	if k.Writes() != 0 {
		t.Fatal("wrote with a canceled context")
	}
}

func link(t *testing.T, k *netlinktest.Kernel, name string) netlink.Link {
	t.Helper()
	l, err := k.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustIPNet(s string) *net.IPNet {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Plumber is safe for concurrent use across keys (run with -race).
func TestFakeConcurrent(t *testing.T) {
	k := netlinktest.New()
	p, err := veth.New(k, &veth.Config{Open: veth.Opener(k.NamespaceAt)})
	if err != nil {
		t.Fatal(err)
	}
	pristine := k.Dump()
	const n = 16
	pods := make([]veth.Pod, n)
	for i := range pods {
		path := "/var/run/netns/c" + strconv.Itoa(i)
		if _, err := k.NewNamespace(path); err != nil {
			t.Fatal(err)
		}
		pods[i] = veth.Pod{Key: "default.c-" + strconv.Itoa(i), NetNS: path,
			Addrs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, 2, byte(i + 1)}), 32)}}
	}
	ctx := context.Background()
	run := func(f func(veth.Pod) error) {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for _, pod := range pods {
			wg.Go(func() { errs <- f(pod) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	run(func(pod veth.Pod) error { _, err := p.Setup(ctx, pod); return err })
	run(func(pod veth.Pod) error { return p.Check(ctx, pod) })
	run(func(pod veth.Pod) error { return p.Teardown(ctx, pod.Key) })
	for i := range pods {
		must(t, k.DeleteNamespace("/var/run/netns/c"+strconv.Itoa(i)))
	}
	if got := k.Dump(); got != pristine {
		t.Fatalf("left behind:\n%s", got)
	}
}
