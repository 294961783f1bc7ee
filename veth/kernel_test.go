//go:build linux

package veth_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/veth"
)

// Kernel tests: a "node" namespace plays the host, pod namespaces play the
// pods. Nothing touches the test process's own namespace.

func newKernelNode(t testing.TB, cfg veth.Config) (*kerneltest.NS, *veth.Plumber) {
	t.Helper()
	node := kerneltest.NewNS(t, "vnode")
	cfg.Sysctl = veth.SysctlAt(node.Path)
	p, err := veth.New(node.Handle, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	return node, p
}

// links returns "name type" of every link in n except lo, sorted.
func links(t testing.TB, n *kerneltest.NS) []string {
	t.Helper()
	ls, err := n.Handle.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		if l.Attrs().Name != "lo" {
			out = append(out, l.Attrs().Name+" "+l.Type())
		}
	}
	slices.Sort(out)
	return out
}

func routeStrings(t testing.TB, n *kerneltest.NS) []string {
	t.Helper()
	rs, err := n.Handle.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%v gw %v dev %d scope %v proto %d", r.Dst, r.Gw, r.LinkIndex, r.Scope, r.Protocol))
	}
	slices.Sort(out)
	return out
}

// Q3/Q4/Q5 at library level: the pod's eth0 is the peer of the host
// cali interface (peer ifindexes point at each other), with the seed's
// names, MAC, MTU, addresses, routes and sysctls.
func TestKernelSetupQ4(t *testing.T) {
	node, p := newKernelNode(t, veth.Config{})
	pod := kerneltest.NewNS(t, "vpod")
	key := veth.WorkloadKey("default", "web-0")
	ip := netip.MustParsePrefix("10.244.235.135/32")
	ctx := context.Background()
	res, err := p.Setup(ctx, veth.Pod{Key: key, NetNS: pod.Path, Addrs: []netip.Prefix{ip}})
	if err != nil {
		t.Fatal(err)
	}
	hostName := veth.HostIfName("cali", key)
	if len(hostName) != 15 || res.HostIfName != hostName {
		t.Fatalf("host name %q (result %q)", hostName, res.HostIfName)
	}
	host := node.Link(t, hostName)
	eth0 := pod.Link(t, "eth0")
	if eth0.Attrs().ParentIndex != host.Attrs().Index || host.Attrs().ParentIndex != eth0.Attrs().Index {
		t.Fatalf("peer indexes: eth0@if%d index %d, %s@if%d index %d",
			eth0.Attrs().ParentIndex, eth0.Attrs().Index, hostName, host.Attrs().ParentIndex, host.Attrs().Index)
	}
	if res.HostIndex != host.Attrs().Index || res.PodIndex != eth0.Attrs().Index ||
		res.PodMAC.String() != eth0.Attrs().HardwareAddr.String() || res.Sandbox != pod.Path || res.PodIfName != "eth0" {
		t.Fatalf("result %+v disagrees with the kernel", res)
	}
	if got := host.Attrs().HardwareAddr.String(); got != "ee:ee:ee:ee:ee:ee" {
		t.Fatalf("host MAC %s", got)
	}
	for _, l := range []netlink.Link{host, eth0} {
		if l.Attrs().MTU != 1450 || l.Attrs().Flags&net.FlagUp == 0 || l.Type() != "veth" {
			t.Fatalf("%s: type %s mtu %d flags %v", l.Attrs().Name, l.Type(), l.Attrs().MTU, l.Attrs().Flags)
		}
	}
	addrs, err := pod.Handle.AddrList(eth0, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.244.235.135/32" {
		t.Fatalf("pod addresses %v, %v", addrs, err)
	}
	wantPod := []string{
		fmt.Sprintf("0.0.0.0/0 gw 169.254.1.1 dev %d scope universe proto 3", eth0.Attrs().Index),
		fmt.Sprintf("169.254.1.1/32 gw <nil> dev %d scope link proto 3", eth0.Attrs().Index),
	}
	if got := routeStrings(t, pod); !slices.Equal(got, wantPod) {
		t.Fatalf("pod routes\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantPod, "\n"))
	}
	wantHost := []string{fmt.Sprintf("10.244.235.135/32 gw <nil> dev %d scope link proto 80", host.Attrs().Index)}
	if got := routeStrings(t, node); !slices.Equal(got, wantHost) {
		t.Fatalf("host routes %v, want %v", got, wantHost)
	}
	for k, want := range map[string]string{
		"net/ipv4/conf/" + hostName + "/forwarding":   "1",
		"net/ipv4/conf/" + hostName + "/proxy_arp":    "1",
		"net/ipv4/neigh/" + hostName + "/proxy_delay": "0",
		"net/ipv6/conf/" + hostName + "/accept_ra":    "0",
		"net/ipv4/conf/" + hostName + "/rp_filter":    "0",
	} {
		if v, err := node.Sysctl().Sysctl(k); err != nil || v != want {
			t.Errorf("%s = %q, %v; want %s", k, v, err, want)
		}
	}
	if err := p.Check(ctx, veth.Pod{Key: key, NetNS: pod.Path, Addrs: []netip.Prefix{ip}}); err != nil {
		t.Fatalf("Check after Setup: %v", err)
	}

	// Setup again: same result, nothing recreated.
	// snapshot, not kerneltest's Dump: operational state and neighbours
	// change on their own after links come up.
	state := func() string {
		return snapshot(t, node.Handle, node.Sysctl(), hostName) + "\n" + snapshot(t, pod.Handle, pod.Sysctl(), "")
	}
	before := state()
	res2, err := p.Setup(ctx, veth.Pod{Key: key, NetNS: pod.Path, Addrs: []netip.Prefix{ip}})
	if err != nil {
		t.Fatal(err)
	}
	if res2.HostIndex != res.HostIndex || res2.PodIndex != res.PodIndex {
		t.Fatalf("second Setup recreated the pair: %+v vs %+v", res2, res)
	}
	if after := state(); after != before {
		t.Fatalf("second Setup changed the kernel:\n%s\nvs\n%s", before, after)
	}
}

// Q6 at library level: two pods on one node reach each other through the
// host's /32 routes, with the kernel answering ARP for 169.254.1.1.
func TestKernelPodToPodQ6(t *testing.T) {
	node, p := newKernelNode(t, veth.Config{ARP: veth.ARPKernel, StrictRPFilter: true})
	// Proxy ARP answers only for destinations routed through another
	// interface: give the node an uplink with a default route, as a real
	// node has. Nothing is sent on it.
	gw := kerneltest.NewNS(t, "vgw")
	kerneltest.Veth(t, node, "ens33", gw, "eth0")
	node.AddAddr(t, "ens33", "10.4.7.61/24")
	gw.AddAddr(t, "eth0", "10.4.7.1/24")
	node.AddRoute(t, &netlink.Route{Dst: kerneltest.IPNet("0.0.0.0/0"), Gw: net.IPv4(10, 4, 7, 1)})

	pod1, pod2 := kerneltest.NewNS(t, "vpod1"), kerneltest.NewNS(t, "vpod2")
	ip1, ip2 := netip.MustParseAddr("10.244.235.135"), netip.MustParseAddr("10.244.235.140")
	ctx := context.Background()
	for _, x := range []struct {
		ns  *kerneltest.NS
		key string
		ip  netip.Addr
	}{{pod1, "default.web-0", ip1}, {pod2, "default.web-1", ip2}} {
		if _, err := p.Setup(ctx, veth.Pod{Key: x.key, NetNS: x.ns.Path, Addrs: []netip.Prefix{netip.PrefixFrom(x.ip, 32)}}); err != nil {
			t.Fatal(err)
		}
	}
	pod1.MustPing(t, ip2)
	pod2.MustPing(t, ip1)
	// The pod learnt the host interface's MAC for its gateway: proxy ARP.
	neighs, err := pod1.Handle.NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range neighs {
		if n.IP.Equal(net.IPv4(169, 254, 1, 1)) && n.HardwareAddr.String() == "ee:ee:ee:ee:ee:ee" {
			found = true
		}
	}
	if !found {
		t.Fatalf("pod1 has no neighbour 169.254.1.1 -> ee:ee:ee:ee:ee:ee: %v", neighs)
	}
	// Tear one down: the other pod is unreachable, the node keeps only its uplink.
	if err := p.Teardown(ctx, "default.web-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := pod1.Ping(ip2, 3e8); err == nil {
		t.Fatal("pod2 still answers after Teardown")
	}
	if err := p.Teardown(ctx, "default.web-0"); err != nil {
		t.Fatal(err)
	}
	if got := links(t, node); !slices.Equal(got, []string{"ens33 veth"}) {
		t.Fatalf("node links after Teardown: %v", got)
	}
}

func TestKernelTeardownIdempotent(t *testing.T) {
	node, p := newKernelNode(t, veth.Config{})
	pod := kerneltest.NewNS(t, "vpod")
	ctx := context.Background()
	spec := veth.Pod{Key: "0123456789abcdef", NetNS: pod.Path, Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.0.7/32")}}
	if _, err := p.Setup(ctx, spec); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := p.Teardown(ctx, spec.Key); err != nil {
			t.Fatalf("Teardown #%d: %v", i+1, err)
		}
	}
	if got := links(t, node); len(got) != 0 {
		t.Fatalf("node links after Teardown: %v", got)
	}
	if got := links(t, pod); len(got) != 0 {
		t.Fatalf("pod links after Teardown: %v", got)
	}
	if got := routeStrings(t, node); len(got) != 0 {
		t.Fatalf("node routes after Teardown: %v", got)
	}
	if err := p.Teardown(ctx, "never-set-up"); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(ctx, spec); !errors.Is(err, veth.ErrMismatch) {
		t.Fatalf("Check after Teardown: %v", err)
	}
}

// A stale host interface of the workload's name is replaced; Check names
// the difference Setup repairs.
func TestKernelStaleAndCheck(t *testing.T) {
	node, p := newKernelNode(t, veth.Config{})
	pod := kerneltest.NewNS(t, "vpod")
	ctx := context.Background()
	spec := veth.Pod{Key: "default.db-0", NetNS: pod.Path, Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.0.9/32")}}
	name := p.HostIfName(spec.Key)
	if err := node.Handle.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: 1500}, PeerName: "stale0"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(ctx, spec); !errors.Is(err, veth.ErrMismatch) || !strings.Contains(err.Error(), "mtu 1500, want 1450") {
		t.Fatalf("Check with stale link: %v", err)
	}
	if _, err := p.Setup(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if got := links(t, node); !slices.Equal(got, []string{name + " veth"}) {
		t.Fatalf("node links: %v", got)
	}
	if err := p.Check(ctx, spec); err != nil {
		t.Fatal(err)
	}
	// Break one thing: the pod's default route.
	eth0 := pod.Link(t, "eth0")
	if err := pod.Handle.RouteDel(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: kerneltest.IPNet("0.0.0.0/0"), Gw: net.IPv4(169, 254, 1, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(ctx, spec); !errors.Is(err, veth.ErrMismatch) || !strings.Contains(err.Error(), "default via 169.254.1.1") {
		t.Fatalf("Check without default route: %v", err)
	}
	if _, err := p.Setup(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(ctx, spec); err != nil {
		t.Fatalf("Check after repair: %v", err)
	}
}

// An eth0 that is not the workload's changes nothing.
func TestKernelConflict(t *testing.T) {
	node, p := newKernelNode(t, veth.Config{})
	pod := kerneltest.NewNS(t, "vpod")
	other := kerneltest.NewNS(t, "vother")
	kerneltest.Veth(t, pod, "eth0", other, "x0")
	_, err := p.Setup(context.Background(), veth.Pod{Key: "k", NetNS: pod.Path, Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.0.3/32")}})
	if !errors.Is(err, veth.ErrConflict) {
		t.Fatalf("Setup over a foreign eth0: %v", err)
	}
	if got := links(t, node); len(got) != 0 {
		t.Fatalf("node links: %v", got)
	}
}

func TestKernelBadNetNS(t *testing.T) {
	node, p := newKernelNode(t, veth.Config{})
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing"), file, dir, "/proc/self/ns/mnt"} {
		_, err := p.Setup(context.Background(), veth.Pod{Key: "k", NetNS: path, Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.0.3/32")}})
		var ie *veth.InputError
		if !errors.Is(err, veth.ErrInvalidNetNS) || !errors.As(err, &ie) {
			t.Errorf("netns %s: %v", path, err)
		}
	}
	if got := links(t, node); len(got) != 0 {
		t.Fatalf("node links: %v", got)
	}
}

// failing counts the writes to the kernel made through it (host and pod
// handles, sysctls) and fails the fail-th one with EIO.
type failing struct {
	mu         sync.Mutex
	n, fail    int
	failedWhat string
}

func (f *failing) hit(what string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.n == f.fail {
		f.failedWhat = what
		return fmt.Errorf("injected %s failure: %w", what, unix.EIO)
	}
	return nil
}

type failNL struct {
	veth.Netlink
	f *failing
}

func (w failNL) LinkAdd(l netlink.Link) error {
	if err := w.f.hit("LinkAdd"); err != nil {
		return err
	}
	return w.Netlink.LinkAdd(l)
}

func (w failNL) LinkDel(l netlink.Link) error {
	if err := w.f.hit("LinkDel"); err != nil {
		return err
	}
	return w.Netlink.LinkDel(l)
}

func (w failNL) LinkSetUp(l netlink.Link) error {
	if err := w.f.hit("LinkSetUp"); err != nil {
		return err
	}
	return w.Netlink.LinkSetUp(l)
}

func (w failNL) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	if err := w.f.hit("AddrAdd"); err != nil {
		return err
	}
	return w.Netlink.AddrAdd(l, a)
}

func (w failNL) RouteAdd(r *netlink.Route) error {
	if err := w.f.hit("RouteAdd"); err != nil {
		return err
	}
	return w.Netlink.RouteAdd(r)
}

func (w failNL) RouteReplace(r *netlink.Route) error {
	if err := w.f.hit("RouteReplace"); err != nil {
		return err
	}
	return w.Netlink.RouteReplace(r)
}

type failNS struct {
	failNL
	ns veth.PodNetNS
}

func (w failNS) Fd() int { return w.ns.Fd() }
func (w failNS) Close()  { w.ns.Close() }

type failSysctl struct {
	s veth.Sysctl
	f *failing
}

func (w failSysctl) Sysctl(k string) (string, error) { return w.s.Sysctl(k) }

func (w failSysctl) SetSysctl(k, v string) error {
	if err := w.f.hit("SetSysctl " + k); err != nil {
		return err
	}
	return w.s.SetSysctl(k, v)
}

// A failure at every write, on the real kernel, leaves nothing behind.
func TestKernelInjectedFailures(t *testing.T) {
	t.Run("IPv4", func(t *testing.T) { injectedFailures(t, "10.244.0.11/32") })
	t.Run("dual stack", func(t *testing.T) { injectedFailures(t, "10.244.0.11/32", "2001:db8:244::11/128") })
}

func injectedFailures(t *testing.T, addrs ...string) {
	node := kerneltest.NewNS(t, "vnode")
	pod := kerneltest.NewNS(t, "vpod")
	spec := veth.Pod{Key: "default.fail-0", NetNS: pod.Path}
	for _, a := range addrs {
		spec.Addrs = append(spec.Addrs, netip.MustParsePrefix(a))
	}
	ctx := context.Background()
	for fail := 1; ; fail++ {
		f := &failing{fail: fail}
		p, err := veth.New(failNL{node.Handle, f}, &veth.Config{
			Sysctl: failSysctl{veth.SysctlAt(node.Path), f},
			Open: func(path string) (veth.PodNetNS, error) {
				ns, err := veth.OpenNetNS(path)
				if err != nil {
					return nil, err
				}
				return failNS{failNL{ns, f}, ns}, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Setup(ctx, spec)
		if err == nil {
			if fail < 8 {
				t.Fatalf("Setup succeeded with write %d failing: only %d writes?", fail, f.n)
			}
			if err := p.Check(ctx, spec); err != nil {
				t.Fatal(err)
			}
			t.Logf("Setup makes %d writes; each one failing left nothing behind", fail-1)
			return
		}
		if !errors.Is(err, unix.EIO) {
			t.Fatalf("write %d (%s) failed: error %v does not wrap EIO", fail, f.failedWhat, err)
		}
		if got := links(t, node); len(got) != 0 {
			t.Fatalf("write %d (%s) failed: node links left: %v", fail, f.failedWhat, got)
		}
		if got := links(t, pod); len(got) != 0 {
			t.Fatalf("write %d (%s) failed: pod links left: %v", fail, f.failedWhat, got)
		}
		if got := routeStrings(t, node); len(got) != 0 {
			t.Fatalf("write %d (%s) failed: node routes left: %v", fail, f.failedWhat, got)
		}
		if fail > 50 {
			t.Fatal("Setup never succeeds")
		}
	}
}

// The control for Q5: in userspace proxy-ARP mode nothing answers the
// pod's ARP for 169.254.1.1 until something does (here the kernel sysctls
// set by hand, standing in for tabby's proxyarp responder).
func TestKernelUserspaceARPModeNeedsAResponder(t *testing.T) {
	node, p := newKernelNode(t, veth.Config{ARP: veth.ARPUserspace})
	gw := kerneltest.NewNS(t, "vgw")
	kerneltest.Veth(t, node, "ens33", gw, "eth0")
	node.AddAddr(t, "ens33", "10.4.7.61/24")
	node.AddRoute(t, &netlink.Route{Dst: kerneltest.IPNet("0.0.0.0/0"), Gw: net.IPv4(10, 4, 7, 1)})
	pod1, pod2 := kerneltest.NewNS(t, "vpod1"), kerneltest.NewNS(t, "vpod2")
	ip2 := netip.MustParseAddr("10.244.235.140")
	ctx := context.Background()
	for _, x := range []struct {
		ns  *kerneltest.NS
		key string
		ip  string
	}{{pod1, "default.web-0", "10.244.235.135/32"}, {pod2, "default.web-1", "10.244.235.140/32"}} {
		if _, err := p.Setup(ctx, veth.Pod{Key: x.key, NetNS: x.ns.Path, Addrs: []netip.Prefix{netip.MustParsePrefix(x.ip)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pod1.Ping(ip2, 3e8); err == nil {
		t.Fatal("ping went through with nothing answering ARP for 169.254.1.1")
	}
	for _, key := range []string{"default.web-0", "default.web-1"} {
		h := p.HostIfName(key)
		node.SetSysctl(t, "net/ipv4/neigh/"+h+"/proxy_delay", "0")
		node.SetSysctl(t, "net/ipv4/conf/"+h+"/proxy_arp", "1")
	}
	pod1.MustPing(t, ip2)
}
