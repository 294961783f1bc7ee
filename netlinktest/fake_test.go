//go:build linux

package netlinktest_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/netlinktest"
)

// Behaviour of the fake's own API (namespaces, failure injection, write
// counting), which has no kernel counterpart to compare with.

func TestNamespaces(t *testing.T) {
	k := netlinktest.New()
	if k.Path() != "" {
		t.Fatalf("initial namespace path %q", k.Path())
	}
	lo, err := k.LinkByIndex(1)
	if err != nil || lo.Attrs().Name != "lo" || lo.Attrs().Flags&net.FlagUp != 0 {
		t.Fatalf("initial lo: %v %v", lo, err)
	}
	if as, _ := k.AddrList(lo, netlink.FAMILY_ALL); len(as) != 0 {
		t.Fatalf("lo has addresses while down: %v", as)
	}
	pod, err := k.NewNamespace("/var/run/netns/pod")
	ok(t, err, "new namespace")
	_, err = k.NewNamespace("/var/run/netns/pod")
	isErr(t, err, unix.EEXIST, "namespace path taken")
	_, err = k.NamespaceAt("/var/run/netns/nope")
	isErr(t, err, unix.ENOENT, "unknown namespace")
	again, err := pod.NamespaceAt("/var/run/netns/pod")
	ok(t, err, "open")
	if again.Fd() != pod.Fd() || again.Path() != "/var/run/netns/pod" {
		t.Fatal("NamespaceAt returns another namespace")
	}
	host, err := pod.NamespaceAt("")
	ok(t, err, "open the initial namespace")
	if host.Fd() != k.Fd() {
		t.Fatal("NamespaceAt(\"\") is not the initial namespace")
	}
	if pod.Fd() == k.Fd() {
		t.Fatal("two namespaces share a descriptor")
	}
	ok(t, k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "cali0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(pod.Fd())}), "veth")
	isErr(t, k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "cali1"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(12345)}), unix.EBADF, "unknown descriptor")
	isErr(t, k.LinkSetNsFd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "cali0"}}, 12345), unix.EBADF, "move to an unknown descriptor")
	isErr(t, k.LinkSetNsFd(lo, pod.Fd()), unix.EINVAL, "move lo")

	ok(t, k.DeleteNamespace("/var/run/netns/pod"), "delete namespace")
	_, err = k.LinkByName("cali0")
	notFound(t, err, "host end after its namespace went")
	isErr(t, k.DeleteNamespace("/var/run/netns/pod"), unix.ENOENT, "delete again")
	isErr(t, k.DeleteNamespace(""), unix.EINVAL, "delete the initial namespace")
	_, err = k.NamespaceAt("/var/run/netns/pod")
	isErr(t, err, unix.ENOENT, "open a deleted namespace")
	if ls, _ := pod.LinkList(); len(ls) != 0 {
		t.Fatalf("links left in a deleted namespace: %v", ls)
	}
	if strings.Contains(k.Dump(), "pod") {
		t.Fatalf("deleted namespace in the dump:\n%s", k.Dump())
	}
	_, err = k.NewNamespace("/var/run/netns/pod")
	ok(t, err, "reuse the path")
}

func TestFailNth(t *testing.T) {
	k := netlinktest.New()
	ok(t, k.LinkAdd(veth("a0", "a1")), "veth")
	before, writes := k.Dump(), k.Writes()

	k.FailNth("LinkSetUp", 2, unix.EIO)
	a0 := link(t, &testNS{h: k}, "a0")
	ok(t, k.LinkSetMTU(a0, 1400), "other methods do not count")
	ok(t, k.LinkSetUp(a0), "first LinkSetUp")
	if err := k.LinkSetUp(a0); err != unix.EIO {
		t.Fatalf("second LinkSetUp: %v, want the bare errno EIO", err)
	}
	ok(t, k.LinkSetUp(a0), "the rule fires once")
	if k.Writes() != writes+3 {
		t.Fatalf("writes %d, want %d: failed calls do not count", k.Writes(), writes+3)
	}

	// "" counts every mutating call, on every namespace of the machine.
	pod, _ := k.NewNamespace("/p")
	k.FailNth("", 2, unix.ENOSPC)
	_, _ = k.LinkList() // reads do not count
	ok(t, pod.SetSysctl("net/ipv4/ip_forward", "1"), "first write")
	isErr(t, k.RouteAdd(&netlink.Route{Dst: ipnet("10.9.0.0/16"), Type: unix.RTN_BLACKHOLE}), unix.ENOSPC, "second write")
	if strings.Contains(k.Dump(), "10.9.0.0") {
		t.Fatal("a failed call changed state")
	}

	// Reads can be named explicitly.
	k.FailNth("LinkByName", 1, unix.EINTR)
	_, err := k.LinkByName("a0")
	isErr(t, err, unix.EINTR, "injected read failure")

	// Several rules count independently.
	k.FailNth("AddrAdd", 1, unix.EPERM)
	k.FailNth("AddrAdd", 2, unix.EACCES)
	isErr(t, k.AddrAdd(a0, addr("10.1.0.1/24")), unix.EPERM, "first rule")
	isErr(t, k.AddrAdd(a0, addr("10.1.0.1/24")), unix.EACCES, "second rule")
	ok(t, k.AddrAdd(a0, addr("10.1.0.1/24")), "no rule left")
	_ = before
}

// Injecting a failure at every step of a sequence: each run fails at a
// different call and changes nothing at that call.
func TestFailEveryStep(t *testing.T) {
	steps := func(k *netlinktest.Kernel) error {
		if err := k.LinkAdd(veth("s0", "s1")); err != nil {
			return err
		}
		l, err := k.LinkByName("s0")
		if err != nil {
			return err
		}
		if err := k.AddrAdd(l, addr("10.2.0.1/24")); err != nil {
			return err
		}
		if err := k.LinkSetUp(l); err != nil {
			return err
		}
		return k.SetSysctl("net/ipv4/conf/s0/forwarding", "1")
	}
	clean := netlinktest.New()
	ok(t, steps(clean), "unfailed run")
	total := clean.Writes()
	if total != 4 {
		t.Fatalf("writes %d, want 4", total)
	}
	for n := 1; n <= total; n++ {
		k := netlinktest.New()
		k.FailNth("", n, unix.EIO)
		if err := steps(k); err != unix.EIO {
			t.Fatalf("step %d: %v", n, err)
		}
		if k.Writes() != n-1 {
			t.Fatalf("step %d: %d writes before the failure", n, k.Writes())
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	k := netlinktest.New()
	var wg sync.WaitGroup
	for i := range 8 {
		ns, err := k.NewNamespace(fmt.Sprintf("/c%d", i))
		ok(t, err, "namespace")
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := make(chan netlink.LinkUpdate)
			done := make(chan struct{})
			defer close(done)
			_ = ns.LinkSubscribe(ch, done)
			go func() {
				for range ch {
				}
			}()
			for j := range 20 {
				name := fmt.Sprintf("h%d", j)
				if err := k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("x%d-%d", i, j)}, PeerName: name, PeerNamespace: netlink.NsFd(ns.Fd())}); err != nil {
					t.Error(err)
					return
				}
				l, _ := ns.LinkByName(name)
				_ = ns.LinkSetUp(l)
				_ = ns.AddrAdd(l, addr(fmt.Sprintf("10.%d.%d.1/24", i, j)))
				_, _ = ns.RouteList(nil, netlink.FAMILY_V4)
				if j%10 == 0 {
					_ = k.Dump()
				}
			}
		}()
	}
	wg.Wait()
	ls, _ := k.LinkList()
	if len(ls) != 1+8*20 {
		t.Fatalf("%d links", len(ls))
	}
}

func TestSubscriptionEnds(t *testing.T) {
	k := netlinktest.New()
	pod, _ := k.NewNamespace("/p")
	ch := make(chan netlink.LinkUpdate, 8)
	ok(t, pod.LinkSubscribe(ch, make(chan struct{})), "subscribe")
	ok(t, k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "h"}, PeerName: "p", PeerNamespace: netlink.NsFd(pod.Fd())}), "veth")
	ok(t, k.DeleteNamespace("/p"), "delete namespace")
	var got []string
	for u := range ch { // closed once the namespace is gone
		got = append(got, fmt.Sprintf("%d %s", u.Header.Type, u.Link.Attrs().Name))
	}
	want := []string{fmt.Sprintf("%d p", unix.RTM_NEWLINK), fmt.Sprintf("%d lo", unix.RTM_DELLINK), fmt.Sprintf("%d p", unix.RTM_DELLINK)}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("updates %v, want %v", got, want)
	}

	ch2 := make(chan netlink.LinkUpdate) // unbuffered, never read
	done := make(chan struct{})
	ok(t, k.LinkSubscribe(ch2, done), "subscribe")
	for i := range 50 {
		ok(t, k.LinkAdd(veth(fmt.Sprintf("q%d", i), fmt.Sprintf("r%d", i))), "a slow reader never blocks the fake")
	}
	close(done)
	for range ch2 {
	}
}

func TestErrorsAreBareErrnos(t *testing.T) {
	k := netlinktest.New()
	err := k.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: 77}})
	var errno unix.Errno
	if !errors.As(err, &errno) || err != unix.ENODEV {
		t.Fatalf("%v (%T): netlink returns bare errnos", err, err)
	}
	if err := k.LinkAdd(&netlink.Veth{PeerName: "x"}); err == nil || err.Error() != "LinkAttrs.Name cannot be empty" {
		t.Fatalf("empty name: %v", err)
	}
	if err := k.RouteAdd(&netlink.Route{}); err == nil || err.Error() != "either Dst.IP, Src.IP or Gw must be set" {
		t.Fatalf("empty route: %v", err)
	}
	if err := k.LinkSetMaster(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "x"}}, &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "nope"}}); err == nil || err.Error() != "Device does not exist" {
		t.Fatalf("missing master: %v", err)
	}
	if err := k.LinkAdd(&netlink.IPVlan{LinkAttrs: netlink.LinkAttrs{Name: "ipvl"}}); err != unix.EOPNOTSUPP {
		t.Fatalf("unsupported kind: %v", err)
	}
}

func TestDummy(t *testing.T) {
	// The kernel this project's CI runs on has no dummy module, so the
	// contract suite cannot check dummy devices; they follow the kernel's
	// dummy driver (NOARP, carrier always on, operstate unknown).
	k := netlinktest.New()
	ok(t, k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "d0", TxQLen: -1}}), "dummy")
	l := link(t, &testNS{h: k}, "d0")
	if _, isDummy := l.(*netlink.Dummy); !isDummy || l.Attrs().TxQLen != 1000 || l.Attrs().RawFlags != unix.IFF_BROADCAST|unix.IFF_NOARP {
		t.Fatalf("dummy: %s raw %#x", linkSummary(l), l.Attrs().RawFlags)
	}
	ok(t, k.LinkSetUp(l), "up")
	if got := linkSummary(link(t, &testNS{h: k}, "d0")); got != `*netlink.Dummy d0 mtu=1500 txqlen=1000 flags=up|broadcast|running oper=unknown parent=0 netnsid=-1 master=0 alias="" encap=ether` {
		t.Fatal(got)
	}
}
