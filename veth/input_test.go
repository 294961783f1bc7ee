//go:build linux

package veth_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/veth"
)

// Bad input gets a typed error before anything is opened or written.
func TestSetupBadInput(t *testing.T) {
	p, err := veth.New(nopNetlink{}, &veth.Config{
		Open: func(string) (veth.PodNetNS, error) { return nil, errTouched },
	})
	if err != nil {
		t.Fatal(err)
	}
	ip := []netip.Prefix{netip.MustParsePrefix("10.244.0.5/32")}
	good := veth.Pod{Key: "default.web-0", NetNS: "/var/run/netns/x", Addrs: ip}
	pfx := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	for _, c := range []struct {
		name string
		mod  func(*veth.Pod)
		want error
	}{
		{"empty key", func(p *veth.Pod) { p.Key = "" }, veth.ErrInvalidKey},
		{"ifname too long", func(p *veth.Pod) { p.IfName = strings.Repeat("e", 16) }, veth.ErrInvalidIfName},
		{"ifname slash", func(p *veth.Pod) { p.IfName = "a/b" }, veth.ErrInvalidIfName},
		{"ifname space", func(p *veth.Pod) { p.IfName = "eth 0" }, veth.ErrInvalidIfName},
		{"ifname dot", func(p *veth.Pod) { p.IfName = "." }, veth.ErrInvalidIfName},
		{"ifname dotdot", func(p *veth.Pod) { p.IfName = ".." }, veth.ErrInvalidIfName},
		{"no netns", func(p *veth.Pod) { p.NetNS = "" }, veth.ErrInvalidNetNS},
		{"mtu low", func(p *veth.Pod) { p.MTU = 67 }, veth.ErrInvalidMTU},
		{"mtu high", func(p *veth.Pod) { p.MTU = 65536 }, veth.ErrInvalidMTU},
		{"no address", func(p *veth.Pod) { p.Addrs = nil }, veth.ErrInvalidAddress},
		{"a /26", func(p *veth.Pod) { p.Addrs = pfx("10.244.0.0/26") }, veth.ErrInvalidAddress},
		{"zero prefix", func(p *veth.Pod) { p.Addrs = []netip.Prefix{{}} }, veth.ErrInvalidAddress},
		{"unspecified", func(p *veth.Pod) { p.Addrs = pfx("0.0.0.0/32") }, veth.ErrInvalidAddress},
		{"multicast", func(p *veth.Pod) { p.Addrs = pfx("224.0.0.1/32") }, veth.ErrInvalidAddress},
		{"loopback", func(p *veth.Pod) { p.Addrs = pfx("127.0.0.1/32") }, veth.ErrInvalidAddress},
		{"gateway", func(p *veth.Pod) { p.Addrs = pfx("169.254.1.1/32") }, veth.ErrInvalidAddress},
		{"broadcast", func(p *veth.Pod) { p.Addrs = pfx("255.255.255.255/32") }, veth.ErrInvalidAddress},
		{"mapped", func(p *veth.Pod) { p.Addrs = pfx("::ffff:10.244.0.5/128") }, veth.ErrInvalidAddress},
		{"duplicate", func(p *veth.Pod) { p.Addrs = pfx("10.244.0.5/32", "10.244.0.5/32") }, veth.ErrInvalidAddress},
		{"ipv6 /64", func(p *veth.Pod) { p.Addrs = pfx("fd00::5/64") }, veth.ErrInvalidAddress},
		{"ipv6 link-local", func(p *veth.Pod) { p.Addrs = pfx("fe80::5/128") }, veth.ErrInvalidAddress},
	} {
		pod := good
		c.mod(&pod)
		for op, run := range map[string]func() error{
			"Setup": func() error { _, err := p.Setup(context.Background(), pod); return err },
			"Check": func() error { return p.Check(context.Background(), pod) },
		} {
			err := run()
			var ie *veth.InputError
			if !errors.Is(err, c.want) || !errors.Is(err, veth.ErrInvalid) || !errors.As(err, &ie) {
				t.Errorf("%s %s: %v, want an *InputError matching %v", op, c.name, err, c.want)
			}
		}
	}
	if err := p.Teardown(context.Background(), ""); !errors.Is(err, veth.ErrInvalidKey) {
		t.Errorf("Teardown empty key: %v", err)
	}
	// The good spec gets as far as opening the namespace.
	if _, err := p.Setup(context.Background(), good); !errors.Is(err, errTouched) {
		t.Errorf("good spec: %v", err)
	}
}

func TestInputErrorMessage(t *testing.T) {
	_, err := (func() (*veth.Result, error) {
		p, _ := veth.New(nopNetlink{}, nil)
		return p.Setup(context.Background(), veth.Pod{Key: "k", NetNS: "/x", IfName: "a/b", Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.0.1/32")}})
	})()
	const want = `veth: invalid interface name: interface name "a/b": contains '/', ':' or NUL`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

// Whatever the input, Setup either rejects it with an *InputError before
// touching anything, or gets as far as opening the namespace.
func FuzzSetupInput(f *testing.F) {
	f.Add("default.web-0", "eth0", "10.244.0.5/32", 0)
	f.Add("", "eth0", "10.244.0.5/32", 1500)
	f.Add("k", "..", "10.244.0.5/32", 0)
	f.Add("k", "eth0", "2001:db8::5/128", 9000)
	f.Add("k", "eth0", "::ffff:10.0.0.1/128", 0)
	f.Add("k", "a b", "224.0.0.1/32", 67)
	f.Fuzz(func(t *testing.T, key, ifname, addr string, mtu int) {
		p, err := veth.New(nopNetlink{}, &veth.Config{
			Open: func(string) (veth.PodNetNS, error) { return nil, errTouched },
		})
		if err != nil {
			t.Fatal(err)
		}
		pod := veth.Pod{Key: key, NetNS: "/var/run/netns/x", IfName: ifname, MTU: mtu}
		if pr, err := netip.ParsePrefix(addr); err == nil {
			pod.Addrs = []netip.Prefix{pr}
		}
		_, err = p.Setup(context.Background(), pod)
		var ie *veth.InputError
		if !errors.As(err, &ie) && !errors.Is(err, errTouched) {
			t.Fatalf("Setup(%+v) = %v", pod, err)
		}
		if errors.Is(err, errTouched) {
			// Accepted: then it must really be valid.
			if key == "" || veth.ValidateIfName(pod.IfName) != nil && pod.IfName != "" ||
				len(pod.Addrs) != 1 || !pod.Addrs[0].IsSingleIP() || (mtu != 0 && (mtu < 68 || mtu > 65535)) {
				t.Fatalf("accepted %+v", pod)
			}
		}
	})
}
