package cni_test

import (
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/veth"
)

// Pools of both families give the pod one address of each, each family's
// default route (169.254.1.1; the host end's link-local address for IPv6)
// and the veth's dual-stack plumbing; CHECK and DEL handle both. An
// IPv6-only network gets only IPv6. Before, IPv6 pools were rejected.
func TestDualStack(t *testing.T) {
	ll := veth.LinkLocal(veth.DefaultHostMAC()).String()
	for _, tc := range []struct {
		name   string
		pools  []string
		addrs  []string // prefixes the addresses must be in, in result order
		routes []string // "dst via gw"
	}{
		{"dual stack", []string{"10.244.0.0/16", "fd00:10:244::/56"},
			[]string{"10.244.0.0/16", "fd00:10:244::/56"},
			[]string{"0.0.0.0/0 via 169.254.1.1", "::/0 via " + ll}},
		{"IPv6 only", []string{"fd00:10:244::/56"},
			[]string{"fd00:10:244::/56"},
			[]string{"::/0 via " + ll}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.netns("/run/netns/pod1")
			conf := setKey(t, baseConf, map[string]any{"ipam": map[string]any{"type": "tabby-ipam", "pools": tc.pools}})
			a := args(conf, "c1", "/run/netns/pod1", k8sArgs)
			r, err := h.p.Add(a)
			if err != nil {
				t.Fatal(err)
			}
			res := result(t, r)
			if len(res.IPs) != len(tc.addrs) {
				t.Fatalf("ips %v, want addresses in %v", res.IPs, tc.addrs)
			}
			for i, ip := range res.IPs {
				p := netip.MustParsePrefix(ip.Address.String())
				if !netip.MustParsePrefix(tc.addrs[i]).Contains(p.Addr()) || p.Bits() != p.Addr().BitLen() || *ip.Interface != 1 {
					t.Fatalf("ip %d: %v, want a single address in %s on interface 1", i, ip, tc.addrs[i])
				}
				want := "169.254.1.1"
				if p.Addr().Is6() {
					want = ll
				}
				if ip.Gateway.String() != want {
					t.Fatalf("ip %v: gateway %v, want %s", p, ip.Gateway, want)
				}
			}
			if len(res.Routes) != len(tc.routes) {
				t.Fatalf("routes %v, want %v", res.Routes, tc.routes)
			}
			for i, rt := range res.Routes {
				if got := rt.Dst.String() + " via " + rt.GW.String(); got != tc.routes[i] {
					t.Fatalf("route %d: %s, want %s", i, got, tc.routes[i])
				}
			}
			if n := len(h.allocations()); n != len(tc.addrs) {
				t.Fatalf("%d allocations, want %d", n, len(tc.addrs))
			}
			// The fake kernel has both families plumbed: CHECK passes
			// (with and without CNI_ARGS), a repeated ADD changes nothing.
			for _, cargs := range []string{k8sArgs, ""} {
				if err := h.p.Check(args(withPrev(t, conf, r), "c1", "/run/netns/pod1", cargs)); err != nil {
					t.Fatalf("CHECK (args %q): %v", cargs, err)
				}
			}
			before := h.k.Dump()
			if _, err := h.p.Add(a); err != nil || h.k.Dump() != before {
				t.Fatalf("repeated ADD: %v, kernel changed %v", err, h.k.Dump() != before)
			}
			pod, err := h.k.NamespaceAt("/run/netns/pod1")
			if err != nil {
				t.Fatal(err)
			}
			mustContain(t, pod.Dump(), "default via "+ll)
			if err := h.p.Del(a); err != nil {
				t.Fatal(err)
			}
			if len(h.hostLinks()) != 0 || len(h.allocations()) != 0 {
				t.Fatalf("DEL left %v, %d allocations", h.hostLinks(), len(h.allocations()))
			}
		})
	}
}
