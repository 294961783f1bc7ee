package cni_test

import (
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/examples/internal/cni"
	"github.com/tabbynet/tabby/veth"
)

// Runtimes do not always send DEL and CHECK the CNI_ARGS of the ADD
// (cnitool sends none): tabby finds the attachment from what ADD recorded
// (IPAM attributes), prevResult or the pod's interface. Before, CHECK of a
// healthy pod failed (it looked for the container ID's interface) and DEL
// returned success but left the host veth.
func TestDelCheckWithoutPodArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		conf string
		// delArgs are DEL's CNI_ARGS; prev says whether DEL gets
		// prevResult (libcni sends it from 0.4.0 on).
		delArgs string
		prev    bool
	}{
		{"in-process IPAM, no args", baseConf, "", false},
		{"in-process IPAM, other pod's args", baseConf, "K8S_POD_NAMESPACE=default;K8S_POD_NAME=other", false},
		{"in-process IPAM, prevResult", baseConf, "", true},
		{"delegated IPAM, prevResult", delegatedConf, "", true},
		{"delegated IPAM, pod interface only", delegatedConf, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.env.Delegate = &fakeDelegate{addr: "10.9.0.5/24"}
			p := cni.New(h.env)
			h.netns("/run/netns/pod1")
			r, err := p.Add(args(tc.conf, "c1", "/run/netns/pod1", k8sArgs))
			if err != nil {
				t.Fatal(err)
			}
			hostName := veth.HostIfName("", "default.web-0")
			if !slices.Contains(h.hostLinks(), hostName) {
				t.Fatalf("host links %v", h.hostLinks())
			}
			if err := p.Check(args(withPrev(t, tc.conf, r), "c1", "/run/netns/pod1", "")); err != nil {
				t.Fatalf("CHECK without CNI_ARGS of a healthy pod: %v", err)
			}
			conf := tc.conf
			if tc.prev {
				conf = withPrev(t, tc.conf, r)
			}
			if err := p.Del(args(conf, "c1", "/run/netns/pod1", tc.delArgs)); err != nil {
				t.Fatal(err)
			}
			if links := h.hostLinks(); len(links) != 0 {
				t.Fatalf("DEL left host interfaces %v", links)
			}
			if n := len(h.allocations()); n != 0 {
				t.Fatalf("DEL left %d allocations", n)
			}
		})
	}
}

// scopeLink is RT_SCOPE_LINK (netlink names it on Linux only).
const scopeLink = netlink.Scope(253)

const delegatedConf = `{"cniVersion":"1.1.0","name":"tabby-net","type":"tabby","nodeName":"worker1",
 "datastore":"memory://","stateDir":"/nonexistent","ipam":{"type":"host-local","subnet":"10.9.0.0/24"}}`

// A DEL with another pod's CNI_ARGS must not remove that pod's interface.
func TestDelKeepsOtherPodsInterface(t *testing.T) {
	h := newHarness(t)
	h.netns("/run/netns/pod1")
	h.netns("/run/netns/pod2")
	if _, err := h.p.Add(args(baseConf, "c1", "/run/netns/pod1", k8sArgs)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.p.Add(args(baseConf, "c2", "/run/netns/pod2", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=other")); err != nil {
		t.Fatal(err)
	}
	if err := h.p.Del(args(baseConf, "c1", "/run/netns/pod1", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=other")); err != nil {
		t.Fatal(err)
	}
	if links := h.hostLinks(); len(links) != 1 || links[0] != veth.HostIfName("", "default.other") {
		t.Fatalf("host links %v, want only default.other's", links)
	}
}

// GC removes cali interfaces that no allocation accounts for (a plugin
// killed between plumbing and recording, an old release), and keeps
// every other interface.
func TestGCRemovesOrphanInterfaces(t *testing.T) {
	h := newHarness(t)
	h.netns("/run/netns/pod1")
	h.netns("/run/netns/pod2")
	if _, err := h.p.Add(args(baseConf, "c1", "/run/netns/pod1", k8sArgs)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.p.Add(args(baseConf, "c2", "/run/netns/pod2", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=gone")); err != nil {
		t.Fatal(err)
	}
	// The allocation of default/gone vanishes behind the plugin's back.
	m := h.ipam()
	if _, err := m.ReleaseByHandle(t.Context(), "tabby-net.c2.eth0"); err != nil {
		t.Fatal(err)
	}
	// Interfaces that are not tabby's pods: a dummy named like one, and a
	// veth of the prefix made by someone else without any route.
	for _, l := range []netlink.Link{
		dummy("cali0123456789a"),
		&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "califoreign0000"}, PeerName: "x0"},
		dummy("eth1"),
	} {
		if err := h.k.LinkAdd(l); err != nil {
			t.Fatal(err)
		}
	}
	// An unlabelled veth (an older tabby's) routing an unallocated pool
	// address, and one routing an address outside the pools.
	for i, dst := range []string{"10.244.9.9/32", "192.0.2.9/32"} {
		name := fmt.Sprintf("caliunlabeled%02d", i)
		if err := h.k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: fmt.Sprintf("y%d", i)}); err != nil {
			t.Fatal(err)
		}
		l, err := h.k.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		_, ipn, _ := net.ParseCIDR(dst)
		if err := h.k.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		if err := h.k.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipn, Scope: scopeLink}); err != nil {
			t.Fatal(err)
		}
	}
	gc := setKey(t, baseConf, map[string]any{
		"cni.dev/valid-attachments": []map[string]string{{"containerID": "c1", "ifname": "eth0"}},
	})
	if err := h.p.GC(&skel.CmdArgs{StdinData: []byte(gc)}); err != nil {
		t.Fatal(err)
	}
	links := h.hostLinks()
	slices.Sort(links)
	want := []string{"cali0123456789a", veth.HostIfName("", "default.web-0"), "califoreign0000", "caliunlabeled01", "eth1", "x0", "y1"}
	slices.Sort(want)
	if !slices.Equal(links, want) {
		t.Fatalf("host links after GC %v, want %v", links, want)
	}
}
