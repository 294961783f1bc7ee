package ipam_test

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/ipam"
)

// The tunnel address is the first address of the host's first block
// whatever the order of calls (issue 11.4: a pod assigned first took it).
func TestTunnelAddressFirstWhateverTheOrder(t *testing.T) {
	for _, podFirst := range []bool{false, true} {
		t.Run(fmt.Sprint("podFirst=", podFirst), func(t *testing.T) {
			e := newEnv(t, nil, pool("v4", "10.244.0.0/16", 0), pool("v6", "fd00:10:244::/48", 0))
			var pods []ipam.Assigned
			if podFirst {
				pods = e.assign("pod", "worker1", 3)
			}
			tun, err := e.m.AssignTunnelAddress(e.ctx, "worker1", ipam.IPv4)
			if err != nil {
				t.Fatal(err)
			}
			if !podFirst {
				pods = e.assign("pod", "worker1", 3)
			}
			blocks, _ := e.m.HostBlocks(e.ctx, "worker1")
			if len(blocks) != 1 || tun != blocks[0].Addr() {
				t.Fatalf("tunnel %s, blocks %v: want the first address of the first block", tun, blocks)
			}
			for _, p := range pods {
				if p.Addr == tun {
					t.Fatalf("pod got the tunnel address %s", tun)
				}
			}
			tun6, err := e.m.AssignTunnelAddress(e.ctx, "worker1", ipam.IPv6)
			if err != nil || !tun6.Is6() {
				t.Fatalf("IPv6 tunnel %s %v", tun6, err)
			}
			if again, _ := e.m.AssignTunnelAddress(e.ctx, "worker1", ipam.IPv6); again != tun6 {
				t.Fatalf("IPv6 tunnel again %s, was %s", again, tun6)
			}
			if again, _ := e.m.AssignTunnelAddress(e.ctx, "worker1", ipam.IPv4); again != tun {
				t.Fatalf("IPv4 tunnel again %s, was %s", again, tun)
			}
			if p, _ := tun6.Prefix(122); p.Addr() != tun6 {
				t.Fatalf("IPv6 tunnel %s is not the first address of a /122", tun6)
			}
		})
	}
}

// Asking for the IPv6 tunnel address without an IPv6 pool is an error,
// never the IPv4 address (issue 13).
func TestTunnelAddressFamily(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.m.AssignTunnelAddress(e.ctx, "n1", ipam.IPv4); err != nil {
		t.Fatal(err)
	}
	a, err := e.m.AssignTunnelAddress(e.ctx, "n1", ipam.IPv6)
	if !errors.Is(err, ipam.ErrNoPool) || a.IsValid() {
		t.Fatalf("IPv6 tunnel without an IPv6 pool: %s %v", a, err)
	}
	if _, err := e.m.AssignTunnelAddress(e.ctx, "n1", 0); !errors.Is(err, ipam.ErrInvalid) {
		t.Fatalf("family 0: %v", err)
	}
	// Naming only an IPv4 pool for IPv6 is refused too.
	if _, err := e.m.AssignTunnelAddress(e.ctx, "n1", ipam.IPv6, "default"); !errors.Is(err, ipam.ErrNoPool) {
		t.Fatalf("IPv6 from an IPv4 pool: %v", err)
	}
}

// A claimed block is visible on the assignment result.
func TestAssignedNewBlock(t *testing.T) {
	e := newEnv(t, nil)
	first := e.assign("a", "n1", 1)
	if !first[0].NewBlock {
		t.Fatalf("first assignment claimed a block: %+v", first)
	}
	if second := e.assign("b", "n1", 1); second[0].NewBlock {
		t.Fatalf("second assignment claimed nothing: %+v", second)
	}
}

func TestOwnsAndBorrowedAddrs(t *testing.T) {
	e := newEnv(t, &ipam.Config{MaxBlocksPerHost: 1}, pool("p", "10.244.0.0/24", 26))
	for _, h := range []string{"n2", "n3", "n4"} {
		e.assign("x-"+h, h, 1)
	}
	tun1, _ := e.m.AssignTunnelAddress(e.ctx, "n1", ipam.IPv4)
	e.assign("fill", "n1", 63)
	borrowed := e.assign("borrow", "n1", 2) // n1 is at its cap: borrowed
	b1, _ := e.m.HostBlocks(e.ctx, "n1")
	b2, _ := e.m.HostBlocks(e.ctx, "n2")
	got, err := e.m.BorrowedAddrs(e.ctx, "n1")
	want := []netip.Addr{borrowed[0].Addr, borrowed[1].Addr}
	slices.SortFunc(want, netip.Addr.Compare)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("BorrowedAddrs = %v %v, want %v", got, err, want)
	}
	if err := e.m.Owns(e.ctx, "n1", b1, append(got, tun1)); err != nil {
		t.Fatalf("owned: %v", err)
	}
	err = e.m.Owns(e.ctx, "n1", append(b1, b2...), []netip.Addr{mustAddr("10.244.0.250"), mustAddr("192.0.2.1")})
	if !errors.Is(err, ipam.ErrNotOwned) || !strings.Contains(err.Error(), b2[0].String()) ||
		!strings.Contains(err.Error(), "192.0.2.1") || strings.Count(err.Error(), "ipam:") != 1 {
		t.Fatalf("not owned: %v", err)
	}
	// A huge announcement costs a bounded number of reads.
	c := &counting{Store: e.st}
	m, _ := ipam.New(c, nil)
	var many []netip.Prefix
	for i := range 45000 {
		many = append(many, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 10), byte(i >> 2), byte(i&3) << 6}), 26))
	}
	var addrs []netip.Addr
	for i := range 200 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{10, 244, 0, byte(i)}))
	}
	err = m.Owns(e.ctx, "n1", many, addrs)
	if !errors.Is(err, ipam.ErrNotOwned) {
		t.Fatalf("huge announcement: %v", err)
	}
	if n := c.gets.Load() + c.lists.Load(); n > 10 { // host, pools, at most 8 blocks
		t.Fatalf("huge announcement took %d reads (%d gets, %d lists)", n, c.gets.Load(), c.lists.Load())
	}
}
