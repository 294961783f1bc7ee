package cni_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/examples/internal/cni"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/veth"
)

var _ veth.Netlink = (*netlinktest.Kernel)(nil)

// nopClose keeps the shared memory store open across commands.
type nopClose struct{ datastore.Store }

func (nopClose) Close() error { return nil }

type harness struct {
	t    *testing.T
	k    *netlinktest.Kernel
	st   *memory.Store
	env  cni.Env
	p    *cni.Plugin
	down bool // datastore unavailable
	mu   sync.Mutex
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, k: netlinktest.New(), st: memory.New(nil)}
	h.env = cni.Env{
		Host:      h.k,
		OpenNetNS: veth.Opener(h.k.NamespaceAt),
		OpenStore: func(ctx context.Context, url string) (datastore.Store, error) {
			if h.down {
				return nil, fmt.Errorf("open %s: %w", url, datastore.ErrUnavailable)
			}
			return nopClose{h.st}, nil
		},
		Hostname: func() (string, error) { return "worker1", nil },
		Stderr:   io.Discard,
		HostLock: func(context.Context, string) (func(), error) {
			h.mu.Lock()
			return h.mu.Unlock, nil
		},
		// The fake's host namespace stands for the plugin's own.
		CheckNetNS: func(path string) error {
			if path == hostNetNS {
				return cni.ErrHostNetNS
			}
			return nil
		},
	}
	h.p = cni.New(h.env)
	return h
}

// hostNetNS is the path the harness's CheckNetNS treats as the plugin's
// own namespace.
const hostNetNS = "/proc/self/ns/net"

func (h *harness) netns(path string) {
	h.t.Helper()
	if _, err := h.k.NewNamespace(path); err != nil {
		h.t.Fatal(err)
	}
}

const baseConf = `{"cniVersion":"1.1.0","name":"tabby-net","type":"tabby","nodeName":"worker1",
 "datastore":"memory://","stateDir":"/nonexistent","ipam":{"type":"tabby-ipam","pools":["10.244.0.0/16"],"blockSize":26}}`

func args(conf, id, netns, cniArgs string) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: id, Netns: netns, IfName: "eth0", Args: cniArgs, StdinData: []byte(conf)}
}

func withPrev(t *testing.T, conf string, r types.Result) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(conf), &m); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var prev any
	_ = json.Unmarshal(b, &prev)
	m["prevResult"] = prev
	out, _ := json.Marshal(m)
	return string(out)
}

func setKey(t *testing.T, conf string, kv map[string]any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(conf), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range kv {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	out, _ := json.Marshal(m)
	return string(out)
}

func code(t *testing.T, err error) uint {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	return cni.ToError(err).Code
}

func (h *harness) ipam() *ipam.IPAM {
	h.t.Helper()
	m, err := ipam.New(h.st, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

func (h *harness) allocations() []ipam.Allocation {
	h.t.Helper()
	m := h.ipam()
	a, err := m.Allocations(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// hostLinks lists the interface names of the host namespace but lo.
func (h *harness) hostLinks() []string {
	h.t.Helper()
	ls, err := h.k.LinkList()
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		if n := l.Attrs().Name; n != "lo" {
			out = append(out, n)
		}
	}
	return out
}

func result(t *testing.T, r types.Result) *types100.Result {
	t.Helper()
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func dummy(name string) netlink.Link {
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}
}
