//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestBadFlagsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"--bogus"},
		{"--vxlan-mode=Sometimes"},
		{"--proxy-arp=both"},
		{"--pool=10.244.0.1/16"},
		{"--hold-time=1ns"},
		{"--gc-percent=0"},
		{"--config=/nonexistent/agent.conf"},
		{"--datastore=ftp://x", "--uplink=lo", "--node-ip=127.0.0.1/8"},
		{"--etcd-ca=/x", "--uplink=lo", "--node-ip=127.0.0.1/8"},
		{"--node-ip6=10.4.7.61/24", "--uplink=lo", "--node-ip=127.0.0.1/8"},
		{"--node-ip=none", "--uplink=lo"},
		{"--node-ip=none", "--node-ip6=2001:db8::61/64"},
		// An IPv6 pool on a node without an IPv6 address: refused before
		// anything is written.
		{"--pool=fd00:10:244::/48", "--uplink=lo", "--node-ip=127.0.0.1/8", "--datastore=memory://", "--listen="},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, stderr.String())
		}
		if stderr.Len() == 0 {
			t.Errorf("%q: no message", args)
		}
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

var builtDir string

// buildAgent builds tabby-agent (and the plugins it installs) once.
var buildAgent = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tabby-agent-test-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", dir+"/",
		"github.com/tabbynet/tabby/examples/tabby-agent",
		"github.com/tabbynet/tabby/examples/tabby",
		"github.com/tabbynet/tabby/examples/tabby-etcd",
		"github.com/tabbynet/tabby/examples/tabby-ipam")
	builtDir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	return dir, nil
})

type testNode struct {
	name string
	ns   *kerneltest.NS
	ip   string
	args []string
	cmd  *exec.Cmd
	log  *syncBuffer
}

// twoNodes: two node namespaces on a switch, sharing a bolt datastore.
func twoNodes(t *testing.T) (bin string, nodes []*testNode) {
	kerneltest.Require(t)
	dir, err := buildAgent()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	sw := kerneltest.NewNS(t, "asw")
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := sw.Handle.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	brl := sw.Link(t, "br0")
	if err := sw.Handle.LinkSetUp(brl); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	db := "bolt://" + filepath.Join(tmp, "tabby.db") + "?poll-interval=50ms"
	for i, name := range []string{"worker1", "worker2"} {
		ns := kerneltest.NewNS(t, "an")
		kerneltest.Veth(t, ns, "eth0", sw, name)
		if err := sw.Handle.LinkSetMaster(sw.Link(t, name), brl); err != nil {
			t.Fatal(err)
		}
		ip := []string{"10.4.7.61", "10.4.7.62"}[i]
		ns.AddAddr(t, "eth0", ip+"/24")
		nodes = append(nodes, &testNode{name: name, ns: ns, ip: ip, args: []string{
			"--node=" + name, "--uplink=eth0", "--node-ip=" + ip + "/24", "--datastore=" + db,
			"--state-dir=" + filepath.Join(tmp, name), "--listen=", "--hold-time=1s",
			"--resync-interval=1s", "--log-level=debug",
		}})
	}
	return filepath.Join(dir, "tabby-agent"), nodes
}

func (n *testNode) start(t *testing.T, bin string, extra ...string) {
	t.Helper()
	n.log = &syncBuffer{}
	n.cmd = exec.Command("ip", append([]string{"netns", "exec", n.ns.Name, bin}, append(n.args, extra...)...)...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := n.cmd
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
}

// routeTo reports whether n routes block-ish destinations via vxlan.calico
// to a gateway (a peer's tunnel address).
func (n *testNode) peerRoutes(t *testing.T) int {
	l, err := n.ns.Handle.LinkByName("vxlan.calico")
	if err != nil {
		return 0
	}
	rs, err := n.ns.Handle.RouteList(l, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	c := 0
	for _, r := range rs {
		if r.Gw != nil && r.Protocol == 80 {
			c++
		}
	}
	return c
}

func waitUntil(t *testing.T, d time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !f() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// TestKillWithdrawsAndReturnRestores: SIGKILL of worker2's agent withdraws
// worker2 on worker1 within hold time plus a resync; a new agent restores
// the route; SIGTERM exits 0, keeping the announcement unless
// --withdraw-on-stop.
func TestKillWithdrawsAndReturnRestores(t *testing.T) {
	bin, nodes := twoNodes(t)
	w1, w2 := nodes[0], nodes[1]
	w1.start(t, bin)
	w2.start(t, bin)
	waitUntil(t, 20*time.Second, "worker1 routes worker2's block", func() bool { return w1.peerRoutes(t) == 1 })
	waitUntil(t, 20*time.Second, "worker2 routes worker1's block", func() bool { return w2.peerRoutes(t) == 1 })

	w2.cmd.Process.Kill()
	w2.cmd.Wait()
	took := waitUntil(t, 20*time.Second, "worker1 withdrew worker2", func() bool { return w1.peerRoutes(t) == 0 })
	t.Logf("worker2 withdrawn on worker1 %v after SIGKILL (hold time 1s, resync 1s)", took)

	w2.start(t, bin)
	took = waitUntil(t, 20*time.Second, "worker1 routes worker2's block again", func() bool { return w1.peerRoutes(t) == 1 })
	t.Logf("route restored %v after the new agent started", took)

	// SIGTERM is a graceful stop by default: worker2's announcement stays
	// for the hold time, so worker1 keeps its route while a new agent
	// would start.
	w2.cmd.Process.Signal(unix.SIGTERM)
	if err := w2.cmd.Wait(); err != nil {
		t.Errorf("worker2: SIGTERM: %v\n%s", err, w2.log)
	}
	if !strings.Contains(w2.log.String(), "kept for graceful restart") {
		t.Errorf("worker2: no graceful stop logged:\n%s", w2.log)
	}
	if w1.peerRoutes(t) != 1 {
		t.Error("worker1 dropped worker2's route on a graceful stop")
	}
	// --withdraw-on-stop withdraws for good: worker2 (started again with
	// it) disappears from worker1 at once on SIGTERM.
	w2.start(t, bin, "--withdraw-on-stop")
	waitUntil(t, 20*time.Second, "worker2 back", func() bool { return strings.Contains(w2.log.String(), "msg=started") })
	w2.cmd.Process.Signal(unix.SIGTERM)
	if err := w2.cmd.Wait(); err != nil {
		t.Errorf("worker2: SIGTERM: %v\n%s", err, w2.log)
	}
	if !strings.Contains(w2.log.String(), "withdrawn") {
		t.Errorf("worker2: no withdrawal logged:\n%s", w2.log)
	}
	w1.cmd.Process.Signal(unix.SIGTERM)
	if err := w1.cmd.Wait(); err != nil {
		t.Errorf("worker1: SIGTERM: %v\n%s", err, w1.log)
	}
}

// TestInstallCNIAndHTTP: --cni-bin-dir/--cni-conf-dir install the plugins
// and a conflist; /metrics, /healthz and /readyz answer.
func TestInstallCNIAndHTTP(t *testing.T) {
	bin, nodes := twoNodes(t)
	w1 := nodes[0]
	tmp := t.TempDir()
	w1.start(t, bin, "--listen=127.0.0.1:9099", "--cni-bin-dir="+tmp+"/bin", "--cni-conf-dir="+tmp+"/net.d")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", w1.log)
		}
	})
	waitUntil(t, 20*time.Second, "conflist installed", func() bool {
		_, err := os.Stat(filepath.Join(tmp, "net.d", ConflistName))
		return err == nil
	})
	for _, p := range plugins {
		if fi, err := os.Stat(filepath.Join(tmp, "bin", p)); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("plugin %s: %v", p, err)
		}
	}
	get := func(path string) (int, string) {
		var conn net.Conn
		err := w1.ns.Do(func() error {
			var err error
			conn, err = net.DialTimeout("tcp", "127.0.0.1:9099", time.Second)
			return err
		})
		if err != nil {
			return 0, err.Error()
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		conn.Write([]byte("GET " + path + " HTTP/1.0\r\nHost: x\r\n\r\n"))
		var b bytes.Buffer
		b.ReadFrom(conn)
		s := b.String()
		code := 0
		if len(s) > 12 {
			code = int(s[9]-'0')*100 + int(s[10]-'0')*10 + int(s[11]-'0')
		}
		return code, s
	}
	waitUntil(t, 20*time.Second, "/readyz 200", func() bool { c, _ := get("/readyz"); return c == 200 })
	if c, _ := get("/healthz"); c != 200 {
		t.Errorf("/healthz %d", c)
	}
	_, m := get("/metrics")
	for _, want := range []string{"tabby_agent_peers", "tabby_agent_syncs_total", "tabby_agent_sync_duration_seconds_bucket",
		"tabby_agent_kernel_writes_total", "tabby_agent_ipam_addresses", "tabby_agent_arp_replies_total", "go_goroutines"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// cniAdd execs the installed tabby plugin inside node's namespace, as a
// container runtime does, with the network config from the installed
// conflist, and returns the pod's address.
func cniAdd(t *testing.T, n *testNode, binDir, confDir, pod string) (netip.Addr, *kerneltest.NS) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(confDir, ConflistName))
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	conf := list.Plugins[0]
	conf["cniVersion"], conf["name"] = list.CNIVersion, list.Name
	stdin, _ := json.Marshal(conf)
	pns := kerneltest.NewNS(t, "apod")
	cmd := exec.Command("ip", "netns", "exec", n.ns.Name, filepath.Join(binDir, "tabby"))
	cmd.Env = append(os.Environ(), "CNI_COMMAND=ADD", "CNI_CONTAINERID=c-"+pod, "CNI_NETNS="+pns.Path,
		"CNI_IFNAME=eth0", "CNI_PATH="+binDir, "CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME="+pod)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("CNI ADD %s on %s: %v\n%s\n%s", pod, n.name, err, out.String(), errb.String())
	}
	var res struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res.IPs) == 0 {
		t.Fatalf("CNI ADD result %s: %v", out.String(), err)
	}
	p, err := netip.ParsePrefix(res.IPs[0].Address)
	if err != nil {
		t.Fatal(err)
	}
	return p.Addr(), pns
}

// TestBinariesPodToPod is the deployment path end to end: two tabby-agent
// processes install the plugins and the conflist, the installed tabby
// binary adds one pod per node (CNI ADD exec'd as a runtime does), and the
// pods reach each other across nodes over VXLAN.
func TestBinariesPodToPod(t *testing.T) {
	bin, nodes := twoNodes(t)
	type inst struct{ bin, conf string }
	var dirs []inst
	for _, n := range nodes {
		d := inst{t.TempDir(), t.TempDir()}
		dirs = append(dirs, d)
		n.start(t, bin, "--cni-bin-dir="+d.bin, "--cni-conf-dir="+d.conf)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s log:\n%s", n.name, n.log)
			}
		})
	}
	for _, n := range nodes {
		waitUntil(t, 20*time.Second, n.name+" routes its peer", func() bool { return n.peerRoutes(t) == 1 })
	}
	ip1, pod1 := cniAdd(t, nodes[0], dirs[0].bin, dirs[0].conf, "web-0")
	ip2, _ := cniAdd(t, nodes[1], dirs[1].bin, dirs[1].conf, "web-1")
	t.Logf("web-0 %v on worker1, web-1 %v on worker2", ip1, ip2)
	if _, err := pod1.Ping(ip2, 10*time.Second); err != nil {
		t.Fatalf("web-0 -> web-1: %v\n%s\n%s", err, nodes[0].ns.Dump(), nodes[1].ns.Dump())
	}
}

// syncBuffer is a bytes.Buffer the agent process writes to while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
