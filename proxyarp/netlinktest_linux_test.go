//go:build linux

package proxyarp_test

import (
	"bytes"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/proxyarp"
)

var (
	_ proxyarp.Netlink = (*netlinktest.Kernel)(nil)
	_ proxyarp.Sysctl  = (*netlinktest.Kernel)(nil)
)

// The kernel link source over the fake kernel: Ethernet links with their
// MACs; the selector then picks the cali ones.
func TestNetlinkLinksOnFake(t *testing.T) {
	k := netlinktest.New()
	if err := k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "cali1"}, PeerName: "uplnk0"}); err != nil {
		t.Fatal(err)
	}
	l, err := k.LinkByName("cali1")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.LinkSetHardwareAddr(l, hostMAC); err != nil {
		t.Fatal(err)
	}
	links, err := (&proxyarp.NetlinkLinks{Handle: k}).Links()
	if err != nil {
		t.Fatal(err)
	}
	var sel proxyarp.Selector
	var got []string
	for _, l := range links {
		if sel.Match(l.Name) {
			got = append(got, l.Name)
			if !bytes.Equal(l.MAC, hostMAC) || l.Index <= 1 {
				t.Fatalf("link %+v", l)
			}
		}
	}
	if len(got) != 1 || got[0] != "cali1" {
		t.Fatalf("selected %v from %+v", got, links)
	}
}

// Kernel mode against the fake kernel's /proc/sys.
func TestKernelModeOnFake(t *testing.T) {
	k := netlinktest.New()
	if err := k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "cali1"}, PeerName: "eth9"}); err != nil {
		t.Fatal(err)
	}
	if on, err := proxyarp.KernelEnabled(k, "cali1"); err != nil || on {
		t.Fatalf("fresh link: %v, %v", on, err)
	}
	if err := proxyarp.EnableKernel(k, "cali1"); err != nil {
		t.Fatal(err)
	}
	if on, err := proxyarp.KernelEnabled(k, "cali1"); err != nil || !on {
		t.Fatalf("after enable: %v, %v", on, err)
	}
	if err := proxyarp.EnableKernel(k, "cali9"); err == nil {
		t.Fatal("enable on a missing link succeeded")
	}
}
