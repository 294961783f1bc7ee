//go:build linux

package agent

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/datastore/memory"
)

func TestNewRejects(t *testing.T) {
	st := memory.New(nil)
	defer st.Close()
	good := Config{Node: "worker1", Uplink: "eth0", NodeIP: netip.MustParsePrefix("10.4.7.61/24"), Store: st}
	if _, err := New(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"no node":    func(c *Config) { c.Node = "" },
		"bad node":   func(c *Config) { c.Node = "a/b" },
		"no ip":      func(c *Config) { c.NodeIP = netip.Prefix{} },
		"ipv6":       func(c *Config) { c.NodeIP = netip.MustParsePrefix("2001:db8::1/64") },
		"no uplink":  func(c *Config) { c.Uplink = "" },
		"no store":   func(c *Config) { c.Store = nil },
		"proxy arp":  func(c *Config) { c.ProxyARP = "both" },
		"pool bits":  func(c *Config) { c.Pools = []netip.Prefix{netip.MustParsePrefix("10.244.0.1/16")} },
		"block size": func(c *Config) { c.BlockSize = 33 },
	} {
		c := good
		mut(&c)
		if _, err := New(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}
