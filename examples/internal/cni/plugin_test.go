package cni_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tabbynet/tabby/examples/internal/cni"
	"github.com/tabbynet/tabby/veth"
)

const k8sArgs = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c1"

func TestAddCheckDel(t *testing.T) {
	h := newHarness(t)
	h.netns("/run/netns/pod1")
	a := args(baseConf, "c1", "/run/netns/pod1", k8sArgs)
	r, err := h.p.Add(a)
	if err != nil {
		t.Fatal(err)
	}
	res := result(t, r)
	wantHost := veth.HostIfName("", "default.web-0")
	if len(res.Interfaces) != 2 || res.Interfaces[0].Name != wantHost || res.Interfaces[1].Name != "eth0" ||
		res.Interfaces[1].Sandbox != "/run/netns/pod1" || res.Interfaces[0].Mac != "ee:ee:ee:ee:ee:ee" {
		t.Fatalf("interfaces %v", res.Interfaces)
	}
	if len(res.IPs) != 1 || *res.IPs[0].Interface != 1 || res.IPs[0].Gateway.String() != "169.254.1.1" {
		t.Fatalf("ips %v", res.IPs)
	}
	if ones, _ := res.IPs[0].Address.Mask.Size(); ones != 32 {
		t.Fatalf("address %v not a /32", res.IPs[0].Address)
	}
	if len(res.Routes) != 1 || res.Routes[0].Dst.String() != "0.0.0.0/0" {
		t.Fatalf("routes %v", res.Routes)
	}
	al := h.allocations()
	if len(al) != 1 || al[0].Handle != "tabby-net.c1.eth0" || al[0].Host != "worker1" ||
		al[0].Attrs["namespace"] != "default" || al[0].Attrs["pod"] != "web-0" || al[0].Attrs["container"] != "c1" || al[0].Attrs["node"] != "worker1" ||
		al[0].Attrs["network"] != "tabby-net" || al[0].Attrs["ifname"] != "eth0" {
		t.Fatalf("allocations %+v", al)
	}

	// Repeated ADD: same answer, no kernel write.
	before, writes := h.k.Dump(), h.k.Writes()
	r2, err := h.p.Add(a)
	if err != nil {
		t.Fatal(err)
	}
	if got := result(t, r2); got.IPs[0].Address.String() != res.IPs[0].Address.String() {
		t.Fatalf("repeated ADD gave %v, first %v", got.IPs[0].Address, res.IPs[0].Address)
	}
	if h.k.Dump() != before || h.k.Writes() != writes {
		t.Fatal("repeated ADD changed the kernel")
	}
	if len(h.allocations()) != 1 {
		t.Fatal("repeated ADD allocated again")
	}

	// CHECK against prevResult passes.
	if err := h.p.Check(args(withPrev(t, baseConf, r), "c1", "/run/netns/pod1", k8sArgs)); err != nil {
		t.Fatalf("CHECK: %v", err)
	}

	// DEL, twice.
	for i := 0; i < 2; i++ {
		if err := h.p.Del(args(baseConf, "c1", "/run/netns/pod1", k8sArgs)); err != nil {
			t.Fatalf("DEL %d: %v", i, err)
		}
	}
	if len(h.allocations()) != 0 || len(h.hostLinks()) != 0 {
		t.Fatalf("after DEL: %v %v", h.allocations(), h.hostLinks())
	}
}

func TestResultVersions(t *testing.T) {
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			h := newHarness(t)
			h.netns("/run/netns/pod1")
			conf := setKey(t, baseConf, map[string]any{"cniVersion": v})
			var out bytes.Buffer
			f := cni.Funcs(h.p, &out)
			if err := f.Add(args(conf, "c1", "/run/netns/pod1", "")); err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got["cniVersion"] != v {
				t.Fatalf("result version %v, want %s: %s", got["cniVersion"], v, out.String())
			}
			mustContain(t, out.String(), `"address": "10.244.`)
			if v == "1.1.0" {
				mustContain(t, out.String(), `"mtu": 1450`)
			}
		})
	}
}

func TestDelWithoutNetnsReleases(t *testing.T) {
	h := newHarness(t)
	h.netns("/run/netns/pod1")
	if _, err := h.p.Add(args(baseConf, "c1", "/run/netns/pod1", "")); err != nil {
		t.Fatal(err)
	}
	if err := h.k.DeleteNamespace("/run/netns/pod1"); err != nil {
		t.Fatal(err)
	}
	if err := h.p.Del(args(baseConf, "c1", "", "")); err != nil {
		t.Fatal(err)
	}
	if len(h.allocations()) != 0 || len(h.hostLinks()) != 0 {
		t.Fatalf("left: %v %v", h.allocations(), h.hostLinks())
	}
	// Unknown container.
	if err := h.p.Del(args(baseConf, "never-added", "/run/netns/gone", "")); err != nil {
		t.Fatal(err)
	}
}

func TestLateDelKeepsRecreatedPod(t *testing.T) {
	h := newHarness(t)
	h.netns("/run/netns/old")
	h.netns("/run/netns/new")
	if _, err := h.p.Add(args(baseConf, "old", "/run/netns/old", k8sArgs)); err != nil {
		t.Fatal(err)
	}
	// The runtime lost the old sandbox's DEL, released its address by GC,
	// and recreated the pod under the same name.
	if err := h.k.DeleteNamespace("/run/netns/old"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.p.Add(args(baseConf, "new", "/run/netns/new", k8sArgs)); err != nil {
		t.Fatal(err)
	}
	links := h.hostLinks()
	if err := h.p.Del(args(baseConf, "old", "", k8sArgs)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(h.hostLinks(), links) {
		t.Fatalf("late DEL removed the new sandbox's interface: %v -> %v", links, h.hostLinks())
	}
	al := h.allocations()
	if len(al) != 1 || al[0].Handle != "tabby-net.new.eth0" {
		t.Fatalf("allocations %+v", al)
	}
}

func TestAddFailureLeavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		prep  func(h *harness)
		netns string
		code  uint
	}{
		{"missing netns", func(h *harness) {}, "/run/netns/missing", cni.CodeInvalidEnvironment},
		{"link add fails", func(h *harness) { h.k.FailNth("LinkAdd", 1, syscall.ENOMEM) }, "/run/netns/pod1", cni.CodeKernel},
		{"pod route fails", func(h *harness) { h.k.FailNth("RouteReplace", 1, syscall.ENETUNREACH) }, "/run/netns/pod1", cni.CodeKernel},
		{"ifname taken", func(h *harness) {
			pod, _ := h.k.NamespaceAt("/run/netns/pod1")
			if err := pod.LinkAdd(dummy("eth0")); err != nil {
				h.t.Fatal(err)
			}
		}, "/run/netns/pod1", cni.CodeInterfaceConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.netns("/run/netns/pod1")
			tc.prep(h)
			_, err := h.p.Add(args(baseConf, "c1", tc.netns, ""))
			if got := code(t, err); got != tc.code {
				t.Fatalf("code %d (%v), want %d", got, err, tc.code)
			}
			if len(h.allocations()) != 0 || len(h.hostLinks()) != 0 {
				t.Fatalf("left: %v %v", h.allocations(), h.hostLinks())
			}
		})
	}
}

func TestCheckNamesFirstDifference(t *testing.T) {
	h := newHarness(t)
	h.netns("/run/netns/pod1")
	r, err := h.p.Add(args(baseConf, "c1", "/run/netns/pod1", ""))
	if err != nil {
		t.Fatal(err)
	}
	res := result(t, r)

	// A prevResult with another address.
	bad := *res
	ip := *res.IPs[0]
	ip.Address.IP = []byte{10, 244, 9, 9}
	bad.IPs = []*types100.IPConfig{&ip}
	err = h.p.Check(args(withPrev(t, baseConf, &bad), "c1", "/run/netns/pod1", ""))
	if code(t, err) != cni.CodeCheckFailed {
		t.Fatalf("CHECK with wrong address: %v", err)
	}
	mustContain(t, err.Error(), "10.244.9.9")

	// The host interface's MTU changed behind our back.
	lk, err := h.k.LinkByName(res.Interfaces[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.k.LinkSetMTU(lk, 1500); err != nil {
		t.Fatal(err)
	}
	err = h.p.Check(args(withPrev(t, baseConf, r), "c1", "/run/netns/pod1", ""))
	if code(t, err) != cni.CodeCheckFailed {
		t.Fatalf("CHECK after MTU change: %v", err)
	}
	mustContain(t, err.Error(), "1500")

	// No prevResult.
	if c := code(t, h.p.Check(args(baseConf, "c1", "/run/netns/pod1", ""))); c != cni.CodeInvalidNetworkConfig {
		t.Fatalf("CHECK without prevResult: code %d", c)
	}
}

func TestGC(t *testing.T) {
	h := newHarness(t)
	for _, id := range []string{"a", "b", "c"} {
		h.netns("/run/netns/" + id)
		if _, err := h.p.Add(args(baseConf, id, "/run/netns/"+id, "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod-"+id)); err != nil {
			t.Fatal(err)
		}
	}
	// An allocation of another network (whose name starts with ours) and
	// one of another node are not ours.
	other := setKey(t, baseConf, map[string]any{"name": "tabby-net.x"})
	h.netns("/run/netns/x")
	if _, err := h.p.Add(args(other, "x", "/run/netns/x", "")); err != nil {
		t.Fatal(err)
	}
	w2 := setKey(t, baseConf, map[string]any{"nodeName": "worker2"})
	h.netns("/run/netns/w2")
	if _, err := h.p.Add(args(w2, "w2", "/run/netns/w2", "")); err != nil {
		t.Fatal(err)
	}

	gc := setKey(t, baseConf, map[string]any{
		"cni.dev/valid-attachments": []map[string]string{{"containerID": "a", "ifname": "eth0"}},
		"cni.dev/attachments":       []map[string]string{{"containerID": "b", "ifname": "eth0"}},
	})
	if err := h.p.GC(&skel.CmdArgs{StdinData: []byte(gc)}); err != nil {
		t.Fatal(err)
	}
	var handles []string
	for _, a := range h.allocations() {
		handles = append(handles, a.Handle)
	}
	slices.Sort(handles)
	want := []string{"tabby-net.a.eth0", "tabby-net.b.eth0", "tabby-net.w2.eth0", "tabby-net.x.x.eth0"}
	if !slices.Equal(handles, want) {
		t.Fatalf("after GC %v, want %v", handles, want)
	}
	gone := veth.HostIfName("", "ns.pod-c")
	if slices.Contains(h.hostLinks(), gone) {
		t.Fatalf("GC left %s", gone)
	}
	if len(h.hostLinks()) != 4 {
		t.Fatalf("host links %v", h.hostLinks())
	}
	// GC without the list (cnitool gc): nothing is valid on this node.
	if err := h.p.GC(&skel.CmdArgs{StdinData: []byte(baseConf)}); err != nil {
		t.Fatal(err)
	}
	if n := len(h.allocations()); n != 2 {
		t.Fatalf("after GC without list: %d allocations, want 2 (other network, other node)", n)
	}
	if len(h.hostLinks()) != 2 {
		t.Fatalf("host links %v", h.hostLinks())
	}
}

func TestStatusAndUnavailable(t *testing.T) {
	h := newHarness(t)
	if err := h.p.Status(args(baseConf, "", "", "")); err != nil {
		t.Fatal(err)
	}
	h.down = true
	if c := code(t, h.p.Status(args(baseConf, "", "", ""))); c != cni.CodeNotAvailable {
		t.Fatalf("STATUS code %d", c)
	}
	h.netns("/run/netns/pod1")
	_, err := h.p.Add(args(baseConf, "c1", "/run/netns/pod1", ""))
	if c := code(t, err); c != cni.CodeTryAgainLater {
		t.Fatalf("ADD with the store down: code %d (%v)", c, err)
	}
	if len(h.hostLinks()) != 0 {
		t.Fatal("ADD with the store down left an interface")
	}
	if c := code(t, h.p.Del(args(baseConf, "c1", "/run/netns/pod1", ""))); c != cni.CodeTryAgainLater {
		t.Fatalf("DEL with the store down: code %d", c)
	}
}

func TestPoolExhausted(t *testing.T) {
	h := newHarness(t)
	conf := setKey(t, baseConf, map[string]any{"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"10.244.7.0/30"}, "blockSize": 30}})
	ids := []string{"p0", "p1", "p2", "p3", "p4"}
	for i, id := range ids {
		h.netns("/run/netns/" + id)
		_, err := h.p.Add(args(conf, id, "/run/netns/"+id, ""))
		if i < 4 && err != nil {
			t.Fatal(err)
		}
		if i == 4 {
			if c := code(t, err); c != cni.CodePoolExhausted {
				t.Fatalf("code %d (%v)", c, err)
			}
		}
	}
	if len(h.allocations()) != 4 || len(h.hostLinks()) != 4 {
		t.Fatalf("after exhaustion: %d allocations, links %v", len(h.allocations()), h.hostLinks())
	}
}

func TestBadConfig(t *testing.T) {
	bad := map[string]map[string]any{
		"no name":         {"name": nil},
		"wrong type":      {"type": "ptp"},
		"mtu":             {"mtu": 20},
		"proxyARP":        {"proxyARP": "maybe"},
		"datastore":       {"datastore": "redis://x"},
		"bolt relative":   {"datastore": "bolt://relative/path"},
		"nodeName":        {"nodeName": "bad/name"},
		"stateDir":        {"stateDir": "relative"},
		"logLevel":        {"logLevel": "loud"},
		"pool":            {"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"10.244.0.1/16"}}},
		"pool v6 small":   {"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"fd00::/124"}}},
		"blockSize6":      {"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"fd00::/64"}, "blockSize6": 64}},
		"pools overlap":   {"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"fd00::/64", "fd00::/48"}}},
		"pool v4-mapped":  {"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"::ffff:10.0.0.0/104"}}},
		"pool not cidr":   {"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"banana"}}},
		"blockSize":       {"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"10.244.0.0/16"}, "blockSize": 8}},
		"pool < block":    {"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"10.244.0.0/28"}, "blockSize": 26}},
		"pool link local": {"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"169.254.0.0/16"}}},
		"mtu type":        {"mtu": "big"},
	}
	for name, kv := range bad {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.netns("/run/netns/pod1")
			conf := setKey(t, baseConf, kv)
			_, err := h.p.Add(args(conf, "c1", "/run/netns/pod1", ""))
			if c := code(t, err); c != cni.CodeInvalidNetworkConfig {
				t.Fatalf("code %d (%v), want 7", c, err)
			}
			if h.st.Len() != 0 || len(h.hostLinks()) != 0 {
				t.Fatalf("bad config left %d keys, links %v", h.st.Len(), h.hostLinks())
			}
		})
	}
	t.Run("overlapping pool", func(t *testing.T) {
		h := newHarness(t)
		h.netns("/run/netns/pod1")
		if _, err := h.p.Add(args(baseConf, "c0", "/run/netns/pod1", "")); err != nil {
			t.Fatal(err)
		}
		h.netns("/run/netns/pod2")
		conf := setKey(t, baseConf, map[string]any{"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"10.244.0.0/17"}}})
		_, err := h.p.Add(args(conf, "c1", "/run/netns/pod2", ""))
		if c := code(t, err); c != cni.CodeInvalidNetworkConfig {
			t.Fatalf("code %d (%v), want 7", c, err)
		}
		if len(h.allocations()) != 1 || len(h.hostLinks()) != 1 {
			t.Fatal("overlapping pool left state")
		}
	})
	t.Run("bad CNI_ARGS", func(t *testing.T) {
		h := newHarness(t)
		h.netns("/run/netns/pod1")
		_, err := h.p.Add(args(baseConf, "c1", "/run/netns/pod1", "K8S_POD_NAME"))
		if c := code(t, err); c != cni.CodeInvalidEnvironment {
			t.Fatalf("code %d (%v), want 4", c, err)
		}
	})
}

func TestDefaultsFromStateDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/nodename", "node-from-state\n")
	writeFile(t, dir+"/mtu", "1400\n")
	conf := `{"cniVersion":"1.1.0","name":"n","type":"tabby","stateDir":"` + dir + `"}`
	c, err := cni.LoadConf([]byte(conf), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "node-from-state" || c.MTU != 1400 || c.Datastore != "bolt://"+dir+"/tabby.db" ||
		c.ProxyARP != "userspace" || c.IPAM.Type != "tabby-ipam" {
		t.Fatalf("%+v", c)
	}
	c, err = cni.LoadConf([]byte(`{"cniVersion":"1.1.0","name":"n","type":"tabby","stateDir":"/nonexistent"}`), false,
		func() (string, error) { return "host-name", nil })
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "host-name" || c.MTU != 1450 {
		t.Fatalf("%+v", c)
	}
}

func TestConcurrentAdds(t *testing.T) {
	h := newHarness(t)
	var wg sync.WaitGroup
	const n = 20
	ips := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		id := "c" + string(rune('a'+i))
		h.netns("/run/netns/" + id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := h.p.Add(args(baseConf, id, "/run/netns/"+id, ""))
			if err != nil {
				errs[i] = err
				return
			}
			ips[i] = result(t, r).IPs[0].Address.String()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ips)
	if len(slices.Compact(ips)) != n {
		t.Fatalf("duplicate addresses: %v", ips)
	}
}

// fakeDelegate stands in for a delegated IPAM plugin.
type fakeDelegate struct {
	mu    sync.Mutex
	calls []string
	addr  string
	fail  error
}

func (d *fakeDelegate) log(s string) { d.mu.Lock(); d.calls = append(d.calls, s); d.mu.Unlock() }
func (d *fakeDelegate) Add(ctx context.Context, p string, c []byte) (types.Result, error) {
	d.log("ADD " + p)
	if d.fail != nil {
		return nil, d.fail
	}
	return types100.NewResult([]byte(`{"cniVersion":"1.1.0","ips":[{"address":"` + d.addr + `","gateway":"10.9.0.1"}]}`))
}
func (d *fakeDelegate) Check(ctx context.Context, p string, c []byte) error {
	d.log("CHECK " + p)
	return nil
}
func (d *fakeDelegate) Del(ctx context.Context, p string, c []byte) error {
	d.log("DEL " + p)
	return nil
}
func (d *fakeDelegate) GC(ctx context.Context, p string, c []byte) error {
	d.log("GC " + p)
	return nil
}
func (d *fakeDelegate) Status(ctx context.Context, p string, c []byte) error {
	d.log("STATUS " + p)
	return nil
}

func TestDelegatedIPAM(t *testing.T) {
	h := newHarness(t)
	d := &fakeDelegate{addr: "10.9.0.5/24"}
	env := h.env
	env.Delegate = d
	p := cni.New(env)
	h.netns("/run/netns/pod1")
	conf := setKey(t, baseConf, map[string]any{"ipam": map[string]any{"type": "host-local", "subnet": "10.9.0.0/24"}})
	r, err := p.Add(args(conf, "c1", "/run/netns/pod1", ""))
	if err != nil {
		t.Fatal(err)
	}
	if got := result(t, r).IPs[0].Address.String(); got != "10.9.0.5/32" {
		t.Fatalf("address %s", got)
	}
	if err := p.Check(args(withPrev(t, conf, r), "c1", "/run/netns/pod1", "")); err != nil {
		t.Fatal(err)
	}
	if err := p.Del(args(conf, "c1", "/run/netns/pod1", "")); err != nil {
		t.Fatal(err)
	}
	if err := p.Status(args(conf, "", "", "")); err != nil {
		t.Fatal(err)
	}
	if len(h.hostLinks()) != 0 || h.st.Len() != 0 {
		t.Fatal("delegated run left state")
	}
	// A failed plumbing gives the address back to the delegate.
	h.k.FailNth("LinkAdd", 1, syscall.ENOMEM)
	if _, err := p.Add(args(conf, "c2", "/run/netns/pod1", "")); err == nil {
		t.Fatal("ADD succeeded")
	}
	want := "ADD host-local,CHECK host-local,DEL host-local,STATUS host-local,ADD host-local,DEL host-local"
	if got := strings.Join(d.calls, ","); got != want {
		t.Fatalf("calls %s, want %s", got, want)
	}
	// The delegate's own error passes through unchanged.
	d.fail = types.NewError(types.ErrTryAgainLater, "busy", "")
	if _, err := p.Add(args(conf, "c3", "/run/netns/pod1", "")); code(t, err) != types.ErrTryAgainLater {
		t.Fatalf("delegate error: %v", err)
	}
}

func TestLogFile(t *testing.T) {
	h := newHarness(t)
	h.netns("/run/netns/pod1")
	log := t.TempDir() + "/cni.log"
	conf := setKey(t, baseConf, map[string]any{"logFile": log, "logLevel": "debug"})
	var out bytes.Buffer
	if err := cni.Funcs(h.p, &out).Add(args(conf, "c1", "/run/netns/pod1", "")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, string(b), "msg=assigned")
	mustContain(t, string(b), "container=c1")
	if strings.Contains(out.String(), "level=") {
		t.Fatal("logs on stdout")
	}
	if err := json.Unmarshal(out.Bytes(), new(map[string]any)); err != nil {
		t.Fatalf("stdout is not the result alone: %v", err)
	}
}

func TestCheckOlderVersions(t *testing.T) {
	for _, v := range []string{"0.4.0", "1.0.0"} {
		t.Run(v, func(t *testing.T) {
			h := newHarness(t)
			h.netns("/run/netns/pod1")
			conf := setKey(t, baseConf, map[string]any{"cniVersion": v})
			r, err := h.p.Add(args(conf, "c1", "/run/netns/pod1", ""))
			if err != nil {
				t.Fatal(err)
			}
			old, err := r.GetAsVersion(v)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.p.Check(args(withPrev(t, conf, old), "c1", "/run/netns/pod1", "")); err != nil {
				t.Fatalf("CHECK %s: %v", v, err)
			}
		})
	}
}
