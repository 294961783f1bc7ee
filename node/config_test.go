//go:build linux

package node_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/node"
	"github.com/tabbynet/tabby/node/nodetest"
)

func TestNewRejects(t *testing.T) {
	st := memory.New(nil)
	defer st.Close()
	k := nodetest.NewKernel(netlinktest.New())
	good := node.Config{Name: "worker1", Uplink: "eth0", NodeIP: netip.MustParsePrefix("10.4.7.61/24"), Store: st, Kernel: k.Kernel}
	if _, err := node.New(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, mut := range map[string]func(*node.Config){
		"no node":     func(c *node.Config) { c.Name = "" },
		"bad node":    func(c *node.Config) { c.Name = "a/b" },
		"no ip":       func(c *node.Config) { c.NodeIP = netip.Prefix{} },
		"ipv6":        func(c *node.Config) { c.NodeIP = netip.MustParsePrefix("2001:db8::1/64") },
		"no uplink":   func(c *node.Config) { c.Uplink = "" },
		"no store":    func(c *node.Config) { c.Store = nil },
		"no kernel":   func(c *node.Config) { c.Kernel = nil },
		"no netlink":  func(c *node.Config) { c.Kernel = &node.Kernel{Sysctl: k.Netlink, NAT: k.NAT} },
		"no arp seam": func(c *node.Config) { c.Kernel = &node.Kernel{Netlink: k.Netlink, Sysctl: k.Netlink, NAT: k.NAT} },
		"proxy arp":   func(c *node.Config) { c.ProxyARP = 7 },
		"vxlan mode":  func(c *node.Config) { c.VXLANMode = 9 },
		"pool bits":   func(c *node.Config) { c.Pools = []netip.Prefix{netip.MustParsePrefix("10.244.0.1/16")} },
		"block size":  func(c *node.Config) { c.BlockSize = 33 },
		"hold time":   func(c *node.Config) { c.HoldTime = -1 },
		"mtu":         func(c *node.Config) { c.MTU = 100 },
	} {
		c := good
		mut(&c)
		if _, err := node.New(c); !errors.Is(err, node.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
	// Kernel mode needs no proxy-ARP seam.
	c := good
	c.ProxyARP, c.Kernel = node.ProxyARPKernel, &node.Kernel{Netlink: k.Netlink, Sysctl: k.Netlink, NAT: k.NAT}
	if _, err := node.New(c); err != nil {
		t.Errorf("kernel proxy ARP without the userspace seam: %v", err)
	}
}

func TestParseModes(t *testing.T) {
	for s, want := range map[string]node.VXLANMode{"Always": node.VXLANAlways, "crosssubnet": node.VXLANCrossSubnet, "NEVER": node.VXLANNever} {
		if got, err := node.ParseVXLANMode(s); err != nil || got != want {
			t.Errorf("ParseVXLANMode(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := node.ParseVXLANMode("Sometimes"); !errors.Is(err, node.ErrInvalidConfig) {
		t.Errorf("ParseVXLANMode(Sometimes): %v", err)
	}
	for s, want := range map[string]node.ProxyARPMode{"userspace": node.ProxyARPUserspace, "kernel": node.ProxyARPKernel, "off": node.ProxyARPOff} {
		if got, err := node.ParseProxyARPMode(s); err != nil || got != want || got.String() != s {
			t.Errorf("ParseProxyARPMode(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := node.ParseProxyARPMode("both"); !errors.Is(err, node.ErrInvalidConfig) {
		t.Errorf("ParseProxyARPMode(both): %v", err)
	}
}
