package veth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/veth"
)

func TestHostIfName(t *testing.T) {
	for _, c := range []struct{ prefix, key, want string }{
		// Golden values: "cali" + sha1(key)[:11], computed independently.
		{"cali", "default.web-0", "cali0d7763386da"},
		{"", "default.web-0", "cali0d7763386da"},
		{"cali", "kube-system.coredns-78fcd69978-x2x8t", "caliec4d57357b4"},
		{"tap", "default.web-0", "tap0d7763386da"},
	} {
		if got := veth.HostIfName(c.prefix, c.key); got != c.want {
			t.Errorf("HostIfName(%q, %q) = %q, want %q", c.prefix, c.key, got, c.want)
		}
	}
	if got := veth.WorkloadKey("kube-system", "coredns-78fcd69978-x2x8t"); got != "kube-system.coredns-78fcd69978-x2x8t" {
		t.Errorf("WorkloadKey = %q", got)
	}
}

func TestValidateIfName(t *testing.T) {
	for _, ok := range []string{"eth0", "net1", "a", "x-y_z.1", strings.Repeat("a", 15)} {
		if err := veth.ValidateIfName(ok); err != nil {
			t.Errorf("ValidateIfName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("a", 16), "a/b", "a b", "a\tb", "eth0\n", ".", "..", "a:1", "a\x00", "\xff"} {
		err := veth.ValidateIfName(bad)
		var ie *veth.InputError
		if !errors.Is(err, veth.ErrInvalidIfName) || !errors.Is(err, veth.ErrInvalid) || !errors.As(err, &ie) {
			t.Errorf("ValidateIfName(%q) = %v, want an *InputError matching ErrInvalidIfName", bad, err)
		}
	}
}

// Any key gives a valid name of at most 15 bytes, for every valid prefix.
func FuzzHostIfName(f *testing.F) {
	for _, s := range []string{"", "default.web-0", "0123456789abcdef0123456789abcdef", "ünïcode/..", "\x00"} {
		f.Add("cali", s)
	}
	f.Add("", "k")
	f.Add("x", "k")
	f.Fuzz(func(t *testing.T, prefix, key string) {
		if len(prefix) > veth.MaxPrefixLen || (prefix != "" && veth.ValidateIfName(prefix) != nil) {
			if _, err := veth.New(nopNetlink{}, &veth.Config{Prefix: prefix}); !errors.Is(err, veth.ErrInvalidConfig) {
				t.Fatalf("New with prefix %q: %v", prefix, err)
			}
			return
		}
		n := veth.HostIfName(prefix, key)
		if len(n) > veth.MaxIfNameLen {
			t.Fatalf("%q: %d bytes", n, len(n))
		}
		if err := veth.ValidateIfName(n); err != nil {
			t.Fatal(err)
		}
		if n != veth.HostIfName(prefix, key) {
			t.Fatal("not deterministic")
		}
	})
}

// ValidateIfName never panics and accepts only what the kernel would.
func FuzzValidateIfName(f *testing.F) {
	for _, s := range []string{"eth0", "", ".", "..", "a/b", "a b", strings.Repeat("x", 16), "net:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if veth.ValidateIfName(name) != nil {
			return
		}
		if name == "" || len(name) > 15 || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\v\f\r\x00") {
			t.Fatalf("accepted %q", name)
		}
	})
}

func TestNewConfig(t *testing.T) {
	var host veth.Netlink = nopNetlink{}
	bad := []veth.Config{
		{Prefix: "calic"},
		{Prefix: "a/b"},
		{MTU: 67},
		{MTU: 65536},
		{MTU: -1},
		{ARP: 7},
		{HostMAC: []byte{1, 2, 3, 4, 5, 6}}, // multicast
		{HostMAC: []byte{0xee, 0xee}},
		{Protocol: 256},
	}
	for _, c := range bad {
		if _, err := veth.New(host, &c); !errors.Is(err, veth.ErrInvalid) {
			t.Errorf("New(%+v) = %v, want ErrInvalid", c, err)
		}
	}
	if _, err := veth.New(host, &veth.Config{MTU: 67}); !errors.Is(err, veth.ErrInvalidMTU) {
		t.Errorf("MTU 67: %v", err)
	}
	if _, err := veth.New(nil, nil); !errors.Is(err, veth.ErrInvalidConfig) {
		t.Errorf("nil host: %v", err)
	}
	for _, c := range []*veth.Config{nil, {MTU: 68}, {MTU: 65535}, {Prefix: "tap"}, {ARP: veth.ARPUserspace}} {
		if _, err := veth.New(host, c); err != nil {
			t.Errorf("New(%+v): %v", c, err)
		}
	}
}
