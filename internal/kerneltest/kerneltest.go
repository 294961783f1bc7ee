// Package kerneltest holds the helpers tabby's kernel tests share: the root
// gate, throwaway named network namespaces that are always removed, veth
// links between them, and wrappers over internal/probe (ping, capture).
//
// Kernel tests run only as root. They skip otherwise, except when
// TABBY_KERNEL_TESTS=1 (set by .ci/run), where a missing privilege is a
// failure: CI must never pass by skipping them.
//
// The package builds everywhere so that test files using it compile on any
// system; off Linux, Require (and so NewNS) skips, or fails when forced.
// The packet-socket helpers (ARPClient, Capture) exist only on Linux.
package kerneltest

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/tabbynet/tabby/internal/nsenter"
	"github.com/tabbynet/tabby/internal/sysctl"
)

// EnvForce is the environment variable that turns skipped kernel tests into
// failures.
const EnvForce = "TABBY_KERNEL_TESTS"

// Require skips t unless the process is root; with TABBY_KERNEL_TESTS=1 it
// fails t instead.
func Require(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		if os.Getenv(EnvForce) == "1" {
			t.Fatalf("kernel test needs Linux but runs on %s (%s=1)", runtime.GOOS, EnvForce)
		}
		t.Skip("kernel test: needs Linux")
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv(EnvForce) == "1" {
		t.Fatalf("kernel test needs root but runs as uid %d (%s=1)", os.Geteuid(), EnvForce)
	}
	t.Skip("kernel test: needs root (set TABBY_KERNEL_TESTS=1 to fail instead)")
}

// NS is a named network namespace owned by one test.
type NS struct {
	Name   string
	Path   string
	NS     netns.NsHandle
	Handle *netlink.Handle
}

// UniqueName returns prefix plus a random suffix, short enough for a
// namespace or (with a short prefix) an interface name.
func UniqueName(prefix string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// NewNS creates a named namespace "tabby-<prefix>-<random>" with lo up and
// registers its removal (and that of everything in it) with t.Cleanup.
func NewNS(t testing.TB, prefix string) *NS {
	t.Helper()
	Require(t)
	name := UniqueName("tabby-" + prefix + "-")
	var h netns.NsHandle
	err := func() error {
		// netns.NewNamed moves the calling thread; do it on a locked
		// thread that is discarded afterwards.
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with us
			var err error
			h, err = netns.NewNamed(name)
			errc <- err
		}()
		return <-errc
	}()
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	n := &NS{Name: name, Path: "/var/run/netns/" + name, NS: h}
	t.Cleanup(func() { n.destroy(t) })
	n.Handle, err = netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	lo, err := n.Handle.LinkByName("lo")
	if err != nil {
		t.Fatalf("lo in %s: %v", name, err)
	}
	if err := n.Handle.LinkSetUp(lo); err != nil {
		t.Fatalf("lo up in %s: %v", name, err)
	}
	return n
}

func (n *NS) destroy(t testing.TB) {
	if n.Handle != nil {
		n.Handle.Close()
	}
	n.NS.Close()
	if err := netns.DeleteNamed(n.Name); err != nil && !os.IsNotExist(err) {
		t.Errorf("delete namespace %s: %v", n.Name, err)
	}
}

// Do runs fn with the calling thread in n (see internal/nsenter).
func (n *NS) Do(fn func() error) error { return nsenter.Do(n.NS, fn) }

// Sysctl is n's /proc/sys.
func (n *NS) Sysctl() sysctl.NS { return sysctl.At(n.Path) }

// SetSysctl writes a sysctl in n and fails t on error.
func (n *NS) SetSysctl(t testing.TB, key, value string) {
	t.Helper()
	if err := n.Sysctl().SetSysctl(key, value); err != nil {
		t.Fatal(err)
	}
}

// Link returns the link called name in n and fails t if it is missing.
func (n *NS) Link(t testing.TB, name string) netlink.Link {
	t.Helper()
	l, err := n.Handle.LinkByName(name)
	if err != nil {
		t.Fatalf("%s: link %s: %v", n.Name, name, err)
	}
	return l
}

// AddAddr adds prefix (e.g. "10.4.7.61/24") to the link called name.
func (n *NS) AddAddr(t testing.TB, name, prefix string) {
	t.Helper()
	a, err := netlink.ParseAddr(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Handle.AddrAdd(n.Link(t, name), a); err != nil {
		t.Fatalf("%s: addr add %s dev %s: %v", n.Name, prefix, name, err)
	}
}

// AddRoute adds a route in n and fails t on error.
func (n *NS) AddRoute(t testing.TB, r *netlink.Route) {
	t.Helper()
	if err := n.Handle.RouteAdd(r); err != nil {
		t.Fatalf("%s: route add %v: %v", n.Name, r, err)
	}
}

// Veth creates a veth pair with aName in a and bName in b, both up.
func Veth(t testing.TB, a *NS, aName string, b *NS, bName string) (netlink.Link, netlink.Link) {
	t.Helper()
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(int(b.NS)),
	}
	if err := a.Handle.LinkAdd(v); err != nil {
		t.Fatalf("veth %s/%s -- %s/%s: %v", a.Name, aName, b.Name, bName, err)
	}
	la, lb := a.Link(t, aName), b.Link(t, bName)
	for _, x := range []struct {
		ns *NS
		l  netlink.Link
	}{{a, la}, {b, lb}} {
		if err := x.ns.Handle.LinkSetUp(x.l); err != nil {
			t.Fatalf("%s: up %s: %v", x.ns.Name, x.l.Attrs().Name, err)
		}
	}
	return a.Link(t, aName), b.Link(t, bName)
}

// IP converts a netip.Addr to the net.IP netlink wants.
func IP(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

// MustPrefix parses s or panics; for test tables.
func MustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// IPNet converts "10.0.0.0/24" to the *net.IPNet netlink wants.
func IPNet(s string) *net.IPNet {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: IP(p.Addr()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
