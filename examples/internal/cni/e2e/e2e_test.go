//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/veth"
)

// ADD, CHECK, STATUS and DEL through cnitool, with two pods pinging each
// other through the host (kernel proxy ARP).
func TestCNIToolLifecycle(t *testing.T) {
	w := newWorld(t)
	w.writeList(w.tabbyConf(map[string]any{"proxyARP": "kernel"}))
	// The kernel proxies ARP only for destinations routed through another
	// interface: give the host a default route.
	if err := w.host.Handle.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "dummy0"}, PeerName: "dummy1"}); err != nil {
		t.Fatal(err)
	}
	d := w.host.Link(t, "dummy0")
	if err := w.host.Handle.LinkSetUp(d); err != nil {
		t.Fatal(err)
	}
	w.host.AddRoute(t, &netlink.Route{LinkIndex: d.Attrs().Index, Scope: netlink.SCOPE_LINK, Dst: kerneltest.IPNet("0.0.0.0/0")})

	pods := []*kerneltest.NS{kerneltest.NewNS(t, "pod"), kerneltest.NewNS(t, "pod")}
	var addrs []netip.Addr
	for i, p := range pods {
		out, err := w.cnitool("add", p.Path, fmt.Sprintf("CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		r := decodeResult(t, out)
		if want := veth.HostIfName("", fmt.Sprintf("default.web-%d", i)); r.Interfaces[0].Name != want {
			t.Fatalf("host interface %s, want %s", r.Interfaces[0].Name, want)
		}
		pfx := netip.MustParsePrefix(r.IPs[0].Address)
		if pfx.Bits() != 32 || !netip.MustParsePrefix("10.244.0.0/16").Contains(pfx.Addr()) {
			t.Fatalf("address %v", pfx)
		}
		addrs = append(addrs, pfx.Addr())
		// A repeated ADD returns the same address.
		out, err = w.cnitool("add", p.Path, fmt.Sprintf("CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeResult(t, out).IPs[0].Address; got != r.IPs[0].Address {
			t.Fatalf("repeated ADD gave %s, first %s", got, r.IPs[0].Address)
		}
	}
	if addrs[0] == addrs[1] {
		t.Fatal("same address twice")
	}
	pods[0].MustPing(t, addrs[1])
	pods[1].MustPing(t, addrs[0])

	for i, p := range pods {
		if _, err := w.cnitool("check", p.Path, fmt.Sprintf("CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-%d", i)); err != nil {
			t.Fatalf("CHECK: %v", err)
		}
	}
	if _, err := w.cnitool("status", pods[0].Path); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
	if n := w.allocated(); n != 2 {
		t.Fatalf("allocated %d, want 2", n)
	}
	// Break pod 0's MTU: CHECK names it.
	eth0 := pods[0].Link(t, "eth0")
	if err := pods[0].Handle.LinkSetMTU(eth0, 1400); err != nil {
		t.Fatal(err)
	}
	_, err := w.cnitool("check", pods[0].Path, "CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0")
	if err == nil || !strings.Contains(err.Error(), "1400") {
		t.Fatalf("CHECK after an MTU change: %v", err)
	}
	for i, p := range pods {
		for range 2 { // DEL is idempotent
			if _, err := w.cnitool("del", p.Path, fmt.Sprintf("CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-%d", i)); err != nil {
				t.Fatalf("DEL: %v", err)
			}
		}
	}
	if n := w.allocated(); n != 0 {
		t.Fatalf("allocated %d after DEL", n)
	}
	if l := w.hostLinks(); len(l) != 0 {
		t.Fatalf("host links left: %v", l)
	}
	if out, err := w.ctl("ipam", "check"); err != nil {
		t.Fatalf("ipam check: %v %s", err, out)
	}
}

// Every spec version gets a result of its version; VERSION lists them.
func TestVersions(t *testing.T) {
	w := newWorld(t)
	out, cerr := w.raw("tabby", "VERSION", "", "", w.netConf(w.tabbyConf(nil)))
	if cerr != nil {
		t.Fatal(cerr)
	}
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		if !strings.Contains(out, v) {
			t.Fatalf("VERSION %s lacks %s", out, v)
		}
	}
	pod := kerneltest.NewNS(t, "pod")
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		conf := w.netConf(w.tabbyConf(nil))
		conf["cniVersion"] = v
		out, cerr := w.raw("tabby", "ADD", "v"+strings.ReplaceAll(v, ".", ""), pod.Path, conf)
		if cerr != nil {
			t.Fatalf("%s: %+v", v, cerr)
		}
		if r := decodeResult(t, out); r.CNIVersion != v {
			t.Fatalf("result version %s, want %s", r.CNIVersion, v)
		}
		if _, cerr := w.raw("tabby", "DEL", "v"+strings.ReplaceAll(v, ".", ""), pod.Path, conf); cerr != nil {
			t.Fatalf("%s DEL: %+v", v, cerr)
		}
	}
	if n := w.allocated(); n != 0 {
		t.Fatalf("allocated %d", n)
	}
}

// Every bad configuration or environment gets its code and leaves nothing.
func TestErrorCodes(t *testing.T) {
	w := newWorld(t)
	pod := kerneltest.NewNS(t, "pod")
	blocker := filepath.Join(w.dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name    string
		command string
		conf    map[string]any
		netns   string
		code    uint
	}{
		{"old version", "ADD", map[string]any{"cniVersion": "0.2.0"}, pod.Path, 1},
		{"unknown version", "ADD", map[string]any{"cniVersion": "9.9.9"}, pod.Path, 1},
		{"no netns", "ADD", nil, "/var/run/netns/tabby-does-not-exist", 4},
		{"netns not a netns", "ADD", nil, blocker, 4},
		{"mtu", "ADD", map[string]any{"mtu": 10}, pod.Path, 7},
		{"proxyARP", "ADD", map[string]any{"proxyARP": "both"}, pod.Path, 7},
		{"datastore scheme", "ADD", map[string]any{"datastore": "mysql://x"}, pod.Path, 7},
		{"pool", "ADD", map[string]any{"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"10.244.0.0/33"}}}, pod.Path, 7},
		{"blockSize", "ADD", map[string]any{"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"10.244.0.0/16"}, "blockSize": 19}}, pod.Path, 7},
		{"nodeName", "ADD", map[string]any{"nodeName": "no/slash"}, pod.Path, 7},
		{"type", "ADD", map[string]any{"type": "tabby-wrong"}, pod.Path, 7},
		{"datastore down", "ADD", map[string]any{"datastore": "bolt://" + blocker + "/tabby.db"}, pod.Path, 11},
		{"status datastore down", "STATUS", map[string]any{"datastore": "bolt://" + blocker + "/tabby.db"}, "", 50},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			conf := w.netConf(w.tabbyConf(nil))
			for k, v := range tc.conf {
				conf[k] = v
			}
			_, cerr := w.raw("tabby", tc.command, "bad", tc.netns, conf)
			if cerr == nil || cerr.Code != tc.code {
				t.Fatalf("got %+v, want code %d", cerr, tc.code)
			}
			if n := w.allocated(); n != 0 {
				t.Fatalf("%d addresses left allocated", n)
			}
			if l := w.hostLinks(); len(l) != 0 {
				t.Fatalf("host links left: %v", l)
			}
		})
	}
}

// tabby-ipam on its own: codes and nothing left behind.
func TestIPAMErrorCodes(t *testing.T) {
	w := newWorld(t)
	blocker := filepath.Join(w.dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ipamConf := func(kv map[string]any) map[string]any {
		i := map[string]any{"type": "tabby-ipam", "pools": []string{"10.244.0.0/16"}, "nodeName": "worker1", "stateDir": w.stateDir}
		for k, v := range kv {
			i[k] = v
		}
		return w.netConf(map[string]any{"type": "ptp", "ipam": i})
	}
	pod := kerneltest.NewNS(t, "pod")
	for _, tc := range []struct {
		name, command string
		kv            map[string]any
		code          uint
	}{
		{"pool", "ADD", map[string]any{"pools": []string{"10.244.0.0/40"}}, 7},
		{"ipam type", "ADD", map[string]any{"type": "tabby-ipam2"}, 7},
		{"prefixLength", "ADD", map[string]any{"prefixLength": 33}, 7},
		{"datastore down", "ADD", map[string]any{"datastore": "bolt://" + blocker + "/tabby.db"}, 11},
		{"status datastore down", "STATUS", map[string]any{"datastore": "bolt://" + blocker + "/tabby.db"}, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cerr := w.raw("tabby-ipam", tc.command, "c1", pod.Path, ipamConf(tc.kv))
			if cerr == nil || cerr.Code != tc.code {
				t.Fatalf("got %+v, want code %d", cerr, tc.code)
			}
			if n := w.allocated(); n != 0 {
				t.Fatalf("%d addresses left allocated", n)
			}
		})
	}
	// And the happy path by the protocol: ADD twice (same address), CHECK,
	// GC keeping it, DEL twice.
	out1, cerr := w.raw("tabby-ipam", "ADD", "c1", pod.Path, ipamConf(nil))
	if cerr != nil {
		t.Fatal(cerr)
	}
	out2, cerr := w.raw("tabby-ipam", "ADD", "c1", pod.Path, ipamConf(nil))
	if cerr != nil || decodeResult(t, out1).IPs[0].Address != decodeResult(t, out2).IPs[0].Address {
		t.Fatalf("repeated ADD: %+v %s %s", cerr, out1, out2)
	}
	chk := ipamConf(nil)
	var prev any
	_ = json.Unmarshal([]byte(out1), &prev)
	chk["prevResult"] = prev
	if _, cerr := w.raw("tabby-ipam", "CHECK", "c1", pod.Path, chk); cerr != nil {
		t.Fatal(cerr)
	}
	gc := ipamConf(nil)
	gc["cni.dev/valid-attachments"] = []types.GCAttachment{{ContainerID: "c1", IfName: "eth0"}}
	if _, cerr := w.raw("tabby-ipam", "GC", "", "", gc); cerr != nil {
		t.Fatal(cerr)
	}
	if n := w.allocated(); n != 1 {
		t.Fatalf("allocated %d after GC", n)
	}
	for range 2 {
		if _, cerr := w.raw("tabby-ipam", "DEL", "c1", pod.Path, ipamConf(nil)); cerr != nil {
			t.Fatal(cerr)
		}
	}
	if n := w.allocated(); n != 0 {
		t.Fatalf("allocated %d after DEL", n)
	}
}

// A pool with one address: the second ADD fails with 100 and leaves
// nothing.
func TestPoolExhausted(t *testing.T) {
	w := newWorld(t)
	conf := w.netConf(w.tabbyConf(map[string]any{"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"10.244.9.0/32"}, "blockSize": 32}}))
	pods := []*kerneltest.NS{kerneltest.NewNS(t, "pod"), kerneltest.NewNS(t, "pod")}
	if _, cerr := w.raw("tabby", "ADD", "first", pods[0].Path, conf); cerr != nil {
		t.Fatal(cerr)
	}
	_, cerr := w.raw("tabby", "ADD", "second", pods[1].Path, conf)
	if cerr == nil || cerr.Code != 100 {
		t.Fatalf("second ADD: %+v, want code 100", cerr)
	}
	if n, l := w.allocated(), w.hostLinks(); n != 1 || len(l) != 1 {
		t.Fatalf("after the failed ADD: %d allocated, links %v", n, l)
	}
	if _, cerr := w.raw("tabby", "DEL", "first", pods[0].Path, conf); cerr != nil {
		t.Fatal(cerr)
	}
	if n, l := w.allocated(), w.hostLinks(); n != 0 || len(l) != 0 {
		t.Fatalf("after DEL: %d allocated, links %v", n, l)
	}
}

// 50 ADDs in 50 processes at once get 50 distinct addresses; DEL of all
// leaves nothing allocated.
func TestConcurrentAdds(t *testing.T) {
	w := newWorld(t)
	w.writeList(w.tabbyConf(nil))
	const n = 50
	pods := make([]*kerneltest.NS, n)
	for i := range pods {
		pods[i] = kerneltest.NewNS(t, "p")
	}
	run := func(cmd string) []string {
		outs := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, p := range pods {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i], errs[i] = w.cnitool(cmd, p.Path, fmt.Sprintf("CNI_ARGS=K8S_POD_NAMESPACE=load;K8S_POD_NAME=pod-%d", i))
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("%s %d: %v", cmd, i, err)
			}
		}
		return outs
	}
	var addrs []string
	for _, out := range run("add") {
		addrs = append(addrs, decodeResult(t, out).IPs[0].Address)
	}
	slices.Sort(addrs)
	if got := len(slices.Compact(slices.Clone(addrs))); got != n {
		t.Fatalf("%d distinct addresses of %d: %v", got, n, addrs)
	}
	if got := w.allocated(); got != n {
		t.Fatalf("ipam show: %d allocated, want %d", got, n)
	}
	if l := w.hostLinks(); len(l) != n {
		t.Fatalf("%d host links, want %d", len(l), n)
	}
	run("del")
	if got := w.allocated(); got != 0 {
		t.Fatalf("ipam show: %d allocated after DEL", got)
	}
	if l := w.hostLinks(); len(l) != 0 {
		t.Fatalf("host links left: %v", l)
	}
	if out, err := w.ctl("ipam", "check"); err != nil {
		t.Fatalf("ipam check: %v %s", err, out)
	}
}

// A plugin killed in the middle of ADD (after the address was allocated,
// and after the veth pair was made) leaves state that GC removes.
func TestKilledAddCleanedByGC(t *testing.T) {
	for _, point := range []string{"assigned", "plumbed"} {
		t.Run(point, func(t *testing.T) {
			w := newWorld(t)
			w.writeList(w.tabbyConf(nil))
			pod := kerneltest.NewNS(t, "pod")
			keep := kerneltest.NewNS(t, "pod")
			// One attachment that stays valid.
			out, cerr := w.raw("tabby", "ADD", "keep", keep.Path, w.netConf(w.tabbyConf(nil)), "CNI_ARGS=K8S_POD_NAMESPACE=ns;K8S_POD_NAME=keep")
			if cerr != nil {
				t.Fatal(cerr)
			}
			kept := decodeResult(t, out)

			marker := filepath.Join(w.dir, "stalled")
			b, _ := json.Marshal(w.netConf(w.tabbyConf(nil)))
			cmd := exec.Command("ip", "netns", "exec", w.host.Name, filepath.Join(binDir, "tabby"))
			cmd.Env = append(os.Environ(), "CNI_COMMAND=ADD", "CNI_CONTAINERID=victim", "CNI_NETNS="+pod.Path, "CNI_IFNAME=eth0",
				"CNI_PATH="+binDir, "CNI_ARGS=K8S_POD_NAMESPACE=ns;K8S_POD_NAME=victim", "TABBY_CNI_TEST_STALL="+point+":"+marker)
			cmd.Stdin = strings.NewReader(string(b))
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				if _, err := os.Stat(marker); err == nil {
					break
				}
				if time.Now().After(deadline) {
					syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
					cmd.Wait()
					t.Fatal("the plugin never reached " + point)
				}
				time.Sleep(10 * time.Millisecond)
			}
			// Kill ip netns exec and the plugin (same process group).
			if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			if n := w.allocated(); n != 2 {
				t.Fatalf("allocated %d after the kill, want 2", n)
			}
			victimIf := veth.HostIfName("", "ns.victim")
			if point == "plumbed" && !slices.Contains(w.hostLinks(), victimIf) {
				t.Fatalf("killed after plumbing but %s is missing: %v", victimIf, w.hostLinks())
			}
			gc := w.netConf(w.tabbyConf(nil))
			gc["cni.dev/valid-attachments"] = []types.GCAttachment{{ContainerID: "keep", IfName: "eth0"}}
			if _, cerr := w.raw("tabby", "GC", "", "", gc); cerr != nil {
				t.Fatal(cerr)
			}
			if n := w.allocated(); n != 1 {
				t.Fatalf("allocated %d after GC, want 1", n)
			}
			if l := w.hostLinks(); len(l) != 1 || l[0] != kept.Interfaces[0].Name {
				t.Fatalf("host links after GC: %v", l)
			}
			if out, err := w.ctl("ipam", "check"); err != nil {
				t.Fatalf("ipam check: %v %s", err, out)
			}
		})
	}
}

// libcni, as containerd drives it, in the host namespace: ADD, CHECK, GC
// with valid attachments, DEL, STATUS.
func TestLibcniGC(t *testing.T) {
	w := newWorld(t)
	w.writeList(w.tabbyConf(nil))
	list, err := libcni.LoadNetworkConf(w.netDir, w.net)
	if err != nil {
		t.Fatal(err)
	}
	cn := libcni.NewCNIConfigWithCacheDir([]string{binDir}, filepath.Join(w.dir, "cache"), nil)
	ctx := context.Background()
	pods := []*kerneltest.NS{kerneltest.NewNS(t, "pod"), kerneltest.NewNS(t, "pod"), kerneltest.NewNS(t, "pod")}
	rts := make([]*libcni.RuntimeConf, len(pods))
	err = w.host.Do(func() error {
		for i, p := range pods {
			rts[i] = &libcni.RuntimeConf{ContainerID: fmt.Sprintf("ctr%d", i), NetNS: p.Path, IfName: "eth0",
				Args: [][2]string{{"K8S_POD_NAMESPACE", "ns"}, {"K8S_POD_NAME", fmt.Sprintf("pod%d", i)}}}
			if _, err := cn.AddNetworkList(ctx, list, rts[i]); err != nil {
				return fmt.Errorf("add %d: %w", i, err)
			}
			if err := cn.CheckNetworkList(ctx, list, rts[i]); err != nil {
				return fmt.Errorf("check %d: %w", i, err)
			}
		}
		if err := cn.GetStatusNetworkList(ctx, list); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		// Pod 2 is gone for the runtime.
		return cn.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{
			{ContainerID: "ctr0", IfName: "eth0"}, {ContainerID: "ctr1", IfName: "eth0"}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := w.allocated(); n != 2 {
		t.Fatalf("allocated %d after GC, want 2", n)
	}
	if l := w.hostLinks(); len(l) != 2 || slices.Contains(l, veth.HostIfName("", "ns.pod2")) {
		t.Fatalf("host links after GC: %v", l)
	}
	err = w.host.Do(func() error {
		for _, rt := range rts[:2] {
			if err := cn.DelNetworkList(ctx, list, rt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, l := w.allocated(), w.hostLinks(); n != 0 || len(l) != 0 {
		t.Fatalf("after DEL: %d allocated, links %v", n, l)
	}
}

// tabby-ipam on its own, under the reference ptp plugin.
func TestTabbyIPAMWithPTP(t *testing.T) {
	w := newWorld(t)
	w.writeList(map[string]any{"type": "ptp", "mtu": 1450,
		"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"10.244.0.0/16"}, "nodeName": "worker1", "stateDir": w.stateDir,
			"routes": []string{}, "prefixLength": 26}})
	pod := kerneltest.NewNS(t, "pod")
	out, err := w.cnitool("add", pod.Path)
	if err != nil {
		t.Fatal(err)
	}
	r := decodeResult(t, out)
	if !strings.HasSuffix(r.IPs[0].Address, "/26") || r.IPs[0].Gateway != "169.254.1.1" {
		t.Fatalf("result %+v", r)
	}
	if _, err := w.cnitool("check", pod.Path); err != nil {
		t.Fatal(err)
	}
	if n := w.allocated(); n != 1 {
		t.Fatalf("allocated %d", n)
	}
	if _, err := w.cnitool("del", pod.Path); err != nil {
		t.Fatal(err)
	}
	if n := w.allocated(); n != 0 {
		t.Fatalf("allocated %d after DEL", n)
	}
	if _, err := w.cnitool("status", pod.Path); err != nil {
		t.Fatal(err)
	}
}

// DEL releases the address and removes the host interface when the pod's
// namespace is already gone.
func TestDelWithoutNetns(t *testing.T) {
	w := newWorld(t)
	conf := w.netConf(w.tabbyConf(nil))
	pod := kerneltest.NewNS(t, "pod")
	if _, cerr := w.raw("tabby", "ADD", "gone", pod.Path, conf, "CNI_ARGS=K8S_POD_NAMESPACE=ns;K8S_POD_NAME=gone"); cerr != nil {
		t.Fatal(cerr)
	}
	for range 2 {
		if _, cerr := w.raw("tabby", "DEL", "gone", "/var/run/netns/tabby-no-such-ns", conf, "CNI_ARGS=K8S_POD_NAMESPACE=ns;K8S_POD_NAME=gone"); cerr != nil {
			t.Fatal(cerr)
		}
	}
	if n, l := w.allocated(), w.hostLinks(); n != 0 || len(l) != 0 {
		t.Fatalf("after DEL: %d allocated, links %v", n, l)
	}
}

// tabby with a delegated IPAM (host-local): the address is host-local's,
// used as a /32; DEL gives it back.
func TestDelegatedHostLocal(t *testing.T) {
	w := newWorld(t)
	hl := filepath.Join(w.dir, "host-local")
	w.writeList(w.tabbyConf(map[string]any{"ipam": map[string]any{"type": "host-local", "subnet": "10.244.200.0/24", "dataDir": hl}}))
	pod := kerneltest.NewNS(t, "pod")
	out, err := w.cnitool("add", pod.Path)
	if err != nil {
		t.Fatal(err)
	}
	r := decodeResult(t, out)
	addr := strings.TrimSuffix(r.IPs[0].Address, "/32")
	if !strings.HasPrefix(addr, "10.244.200.") || r.IPs[0].Gateway != "169.254.1.1" {
		t.Fatalf("result %+v", r)
	}
	if _, err := os.Stat(filepath.Join(hl, w.net, addr)); err != nil {
		t.Fatalf("host-local has no reservation for %s: %v", addr, err)
	}
	if _, err := w.cnitool("check", pod.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := w.cnitool("del", pod.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(hl, w.net, addr)); !os.IsNotExist(err) {
		t.Fatalf("host-local still holds %s: %v", addr, err)
	}
	if l := w.hostLinks(); len(l) != 0 {
		t.Fatalf("host links left: %v", l)
	}
}
