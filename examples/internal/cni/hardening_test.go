package cni_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/examples/internal/cni"
)

// Every runtime input is bounded: beyond the bound a command fails with
// code 4 before it opens the store or touches the kernel (a 10 KB
// container ID used to reach IPAM and come back as code 7).
func TestInputBounds(t *testing.T) {
	h := newHarness(t)
	h.netns("/run/netns/pod1")
	long := strings.Repeat("a", 10*1024)
	for name, a := range map[string]func() (string, string, string, string){
		"10 KB container ID": func() (string, string, string, string) { return long, "/run/netns/pod1", "eth0", "" },
		"container ID char":  func() (string, string, string, string) { return "c1/../x", "/run/netns/pod1", "eth0", "" },
		"16-byte ifname":     func() (string, string, string, string) { return "c1", "/run/netns/pod1", "eth0123456789abc", "" },
		"ifname with slash":  func() (string, string, string, string) { return "c1", "/run/netns/pod1", "e/0", "" },
		"10 KB CNI_ARGS":     func() (string, string, string, string) { return "c1", "/run/netns/pod1", "eth0", "X=" + long },
		"300-byte K8S_POD_NAME": func() (string, string, string, string) {
			return "c1", "/run/netns/pod1", "eth0", "K8S_POD_NAMESPACE=a;K8S_POD_NAME=" + long[:300]
		},
		"64-byte pod namespace": func() (string, string, string, string) {
			return "c1", "/run/netns/pod1", "eth0", "K8S_POD_NAMESPACE=" + long[:64] + ";K8S_POD_NAME=p"
		},
		"5 KB netns path": func() (string, string, string, string) { return "c1", "/" + long[:5000], "eth0", "" },
		"infra container ID 10KB": func() (string, string, string, string) {
			return "c1", "/run/netns/pod1", "eth0", "K8S_POD_INFRA_CONTAINER_ID=" + long
		},
	} {
		t.Run(name, func(t *testing.T) {
			id, ns, ifname, cargs := a()
			ca := args(baseConf, id, ns, cargs)
			ca.IfName = ifname
			before, writes := h.k.Dump(), h.k.Writes()
			_, err := h.p.Add(ca)
			if c := code(t, err); c != cni.CodeInvalidEnvironment {
				t.Fatalf("ADD: code %d (%v), want %d", c, err, cni.CodeInvalidEnvironment)
			}
			for cmd, f := range map[string]func() error{
				"DEL": func() error { return h.p.Del(ca) }, "CHECK": func() error { return h.p.Check(ca) },
			} {
				if c := code(t, f()); c != cni.CodeInvalidEnvironment {
					t.Fatalf("%s: code %d, want %d", cmd, c, cni.CodeInvalidEnvironment)
				}
			}
			if len(h.allocations()) != 0 || h.k.Dump() != before || h.k.Writes() != writes {
				t.Fatal("a refused command changed something")
			}
		})
	}
	// The bounds themselves are accepted.
	ok := args(baseConf, "c"+strings.Repeat("0", cni.MaxContainerIDLen-1), "/run/netns/pod1",
		"K8S_POD_NAMESPACE="+long[:cni.MaxPodNamespaceLen]+";K8S_POD_NAME="+long[:cni.MaxPodNameLen])
	ok.IfName = "eth0123456789ab"
	if _, err := h.p.Add(ok); err != nil {
		t.Fatalf("ADD at the bounds: %v", err)
	}
	if err := h.p.Del(ok); err != nil {
		t.Fatal(err)
	}
}

// CNI_NETNS naming the plugin's own namespace is refused before anything
// is allocated or written (it used to plumb the host itself, allocate, and
// make every later DEL fail); DEL of it succeeds.
func TestHostNetNSRefused(t *testing.T) {
	h := newHarness(t)
	before, writes := h.k.Dump(), h.k.Writes()
	a := args(baseConf, "c1", hostNetNS, k8sArgs)
	_, err := h.p.Add(a)
	if c := code(t, err); c != cni.CodeHostNetNS || !errors.Is(err, cni.ErrHostNetNS) {
		t.Fatalf("ADD: code %d (%v), want %d", c, err, cni.CodeHostNetNS)
	}
	if len(h.allocations()) != 0 || h.k.Dump() != before || h.k.Writes() != writes {
		t.Fatalf("refused ADD changed something:\n%s", h.k.Dump())
	}
	if err := h.p.Del(a); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if h.k.Dump() != before {
		t.Fatal("DEL changed the host")
	}
}

// The default check without a fake: a path that is not a namespace, or
// does not exist, is code 4; the plugin's own namespace is code 107. It
// only opens and stats files, so it runs unprivileged.
func TestCheckNetNSRealFiles(t *testing.T) {
	if err := cni.CheckNetNS("/proc/self/ns/net"); !errors.Is(err, cni.ErrHostNetNS) || cni.ToError(err).Code != cni.CodeHostNetNS {
		t.Skipf("no network namespaces here: %v", err) // not Linux, or no /proc
	}
	for _, p := range []string{"/proc/self/ns/uts", "/proc/self/status", "/nonexistent/netns", t.TempDir()} {
		err := cni.CheckNetNS(p)
		if c := code(t, err); c != cni.CodeInvalidEnvironment {
			t.Errorf("%s: code %d (%v), want %d", p, c, err, cni.CodeInvalidEnvironment)
		}
	}
}

// A corrupt store has its own code, distinct from "try again later" (11)
// and "internal" (999), also when the opener wraps ErrUnavailable around
// it, and STATUS reports it.
func TestCorruptStoreCode(t *testing.T) {
	h := newHarness(t)
	h.netns("/run/netns/pod1")
	h.env.OpenStore = func(ctx context.Context, url string) (datastore.Store, error) {
		return nil, fmt.Errorf("open %s: %w: %w", url, datastore.ErrUnavailable, datastore.ErrCorrupt)
	}
	p := cni.New(h.env)
	a := args(baseConf, "c1", "/run/netns/pod1", k8sArgs)
	before := h.k.Dump()
	_, err := p.Add(a)
	if c := code(t, err); c != cni.CodeCorruptStore {
		t.Fatalf("ADD: code %d (%v), want %d", c, err, cni.CodeCorruptStore)
	}
	if h.k.Dump() != before {
		t.Fatal("ADD on a corrupt store changed the kernel")
	}
	if c := code(t, p.Status(a)); c != cni.CodeCorruptStore {
		t.Fatalf("STATUS: code %d, want %d", c, cni.CodeCorruptStore)
	}
	ip := cni.NewIPAM(h.env)
	if c := code(t, ip.Status(args(ipamConf, "", "", ""))); c != cni.CodeCorruptStore {
		t.Fatalf("tabby-ipam STATUS: code %d, want %d", c, cni.CodeCorruptStore)
	}
	if c := code(t, ip.Del(args(ipamConf, "c1", "", ""))); c != cni.CodeCorruptStore {
		t.Fatalf("tabby-ipam DEL: code %d, want %d", c, cni.CodeCorruptStore)
	}
}
