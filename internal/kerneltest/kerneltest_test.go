package kerneltest

import (
	"net/netip"
	"os"
	"testing"
)

// The helpers themselves, against the kernel: two namespaces joined by a
// veth answer each other's pings, and both namespaces are gone afterwards.
func TestNamespacesAndPing(t *testing.T) {
	var paths []string
	t.Run("ping", func(t *testing.T) {
		a, b := NewNS(t, "a"), NewNS(t, "b")
		paths = append(paths, a.Path, b.Path)
		Veth(t, a, "eth0", b, "eth0")
		a.AddAddr(t, "eth0", "192.0.2.1/24")
		b.AddAddr(t, "eth0", "192.0.2.2/24")
		from, err := a.Ping(netip.MustParseAddr("192.0.2.2"), 2e9)
		if err != nil {
			t.Fatal(err)
		}
		if from != netip.MustParseAddr("192.0.2.2") {
			t.Fatalf("reply from %s", from)
		}
		if _, err := a.Ping(netip.MustParseAddr("192.0.2.3"), 2e8); err == nil {
			t.Fatal("ping to an absent host succeeded")
		}
		if v, err := b.Sysctl().Sysctl("net/ipv4/conf/eth0/forwarding"); err != nil || v != "0" {
			t.Fatalf("forwarding in fresh namespace = %q, %v", v, err)
		}
		b.SetSysctl(t, "net/ipv4/conf/eth0/forwarding", "1")
		if v, _ := b.Sysctl().Sysctl("net/ipv4/conf/eth0/forwarding"); v != "1" {
			t.Fatalf("forwarding = %q after set", v)
		}
	})
	for _, p := range paths {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("namespace %s left behind (stat: %v)", p, err)
		}
	}
}
