//go:build linux

package runtimes

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/veth"
)

// containerd is a containerd daemon of one test, with all its state in the
// rig's directory, in the rig's host namespace, and crictl configured to
// talk to it.
type containerd struct {
	r       *rig
	bin     string
	config  string // containerd's configuration file
	sock    string
	crictl  string // crictl's configuration file
	logPath string
	proc    *exec.Cmd
	exited  chan struct{} // closed when proc has exited
}

// startContainerd writes a configuration that keeps every piece of state
// in r.dir (root, state, sockets, the runc root, the CRI's network
// namespace mounts, the CNI directories), starts containerd in r.host,
// waits until the CRI answers and imports the test image into the
// k8s.io namespace, where the CRI finds its sandbox image.
//
// What it cannot move: the shims' sockets are under /run/containerd/s
// (containerd 1.6 has no setting for them; each is removed when its shim
// exits) and libcni caches results in /var/lib/cni (removed by the rig).
func startContainerd(t *testing.T, r *rig, bins map[string]string) *containerd {
	t.Helper()
	c := &containerd{r: r, bin: bins["containerd"], config: filepath.Join(r.dir, "containerd.toml"),
		sock: filepath.Join(r.dir, "containerd.sock"), crictl: filepath.Join(r.dir, "crictl.yaml"),
		logPath: filepath.Join(r.dir, "containerd.log")}
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  # Sandboxes get oom_score_adj -998 by default; lowering it needs
  # CAP_SYS_RESOURCE, which root lacks on some hosts (see the package doc).
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %[9]q
        Root = %[10]q
`, filepath.Join(r.dir, "root"), filepath.Join(r.dir, "state"), c.sock, c.sock+".ttrpc",
		filepath.Join(r.dir, "opt"), podImage, binDir, r.confDir, bins["runc"], filepath.Join(r.dir, "runc"))
	if err := os.WriteFile(c.config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	crictlConf := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", c.sock, c.sock)
	if err := os.WriteFile(c.crictl, []byte(crictlConf), 0o600); err != nil {
		t.Fatal(err)
	}
	// The shims' socket directory: removed at the end if this test made it
	// and it is empty (os.Remove fails otherwise).
	var made []string
	for _, d := range []string{"/run/containerd", "/run/containerd/s"} {
		if _, err := os.Stat(d); err != nil {
			made = append(made, d)
		}
	}
	t.Cleanup(func() {
		// Ask the CRI to remove what is left (a test that failed half way),
		// stop containerd, then end whatever still runs or is mounted.
		if c.running() {
			if ids, err := c.run("pods", "-q"); err == nil {
				for _, id := range strings.Fields(ids) {
					if _, err := c.run("stopp", id); err != nil {
						t.Logf("cleanup: %v", err)
					}
					if _, err := c.run("rmp", "-f", id); err != nil {
						t.Logf("cleanup: %v", err)
					}
				}
			}
		}
		c.stop()
		if t.Failed() {
			if b, err := os.ReadFile(c.logPath); err == nil {
				t.Logf("containerd log (tail):\n%s", tail(string(b), 40))
			}
		}
		r.reap()
		for i := len(made) - 1; i >= 0; i-- {
			os.Remove(made[i])
		}
	})
	c.launch()
	mustRun(t, exec.Command(bins["ctr"], "--address", c.sock, "-n", "k8s.io", "images", "import", podTar))
	return c
}

// launch starts containerd and waits until its CRI answers.
func (c *containerd) launch() {
	t := c.r.t
	t.Helper()
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := c.r.inHost(c.bin, "--config", c.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	c.proc, c.exited = cmd, exited
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := c.run("info"); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer: %v", err)
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(c.logPath)
			t.Fatalf("containerd exited:\n%s", tail(string(b), 40))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *containerd) running() bool {
	if c.proc == nil {
		return false
	}
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// stop ends containerd (SIGTERM; SIGKILL after 20 s). Its shims and
// containers go on running, as in a containerd upgrade.
func (c *containerd) stop() {
	if !c.running() {
		return
	}
	c.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		c.r.t.Logf("containerd ignored SIGTERM")
		c.proc.Process.Kill()
		<-c.exited
	}
}

// run runs crictl with the test's configuration.
func (c *containerd) run(args ...string) (string, error) {
	return output("crictl", exec.Command(filepath.Join(binDir, "crictl"), append([]string{"--config", c.crictl}, args...)...), args)
}

func (c *containerd) must(args ...string) string {
	c.r.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.r.t.Fatal(err)
	}
	return out
}

// writeJSON writes v to a file in the rig's directory and returns its path.
func (r *rig) writeJSON(name string, v any) string {
	r.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		r.t.Fatal(err)
	}
	p := filepath.Join(r.dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// sandboxConfig is a pod sandbox with Kubernetes metadata.
func (c *containerd) sandboxConfig(namespace, name, uid string) string {
	return c.r.writeJSON("pod-"+name+".json", map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": namespace, "uid": uid, "attempt": 0},
		"hostname":      name,
		"log_directory": filepath.Join(c.r.dir, "logs", name),
		"linux":         map[string]any{"cgroup_parent": c.r.cgroupParent},
	})
}

// runPod starts a sandbox and returns its id (err when the runtime refused).
func (c *containerd) runPod(namespace, name, uid string) (string, error) {
	return c.run("runp", c.sandboxConfig(namespace, name, uid))
}

// podIP is the sandbox's address as the CRI reports it.
func (c *containerd) podIP(id string) string {
	c.r.t.Helper()
	var s struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(c.must("inspectp", "-o", "json", id)), &s); err != nil {
		c.r.t.Fatal(err)
	}
	return s.Status.Network.IP
}

// runOnce runs the test image with args as a container in the sandbox,
// waits for it to exit and returns its exit code and log.
func (c *containerd) runOnce(podID, podConfig, name string, args ...string) (int, string) {
	c.r.t.Helper()
	cfg := c.r.writeJSON("ctr-"+name+".json", map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": podImage},
		"args":     args,
		"log_path": name + ".log",
		"linux":    map[string]any{},
	})
	id := c.must("create", podID, cfg, podConfig)
	c.must("start", id)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var s struct {
			Status struct {
				State    string `json:"state"`
				ExitCode int    `json:"exitCode"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(c.must("inspect", "-o", "json", id)), &s); err != nil {
			c.r.t.Fatal(err)
		}
		if s.Status.State == "CONTAINER_EXITED" {
			logs, err := c.run("logs", id)
			if err != nil {
				c.r.t.Fatal(err)
			}
			return s.Status.ExitCode, logs
		}
		if time.Now().After(deadline) {
			c.r.t.Fatalf("container %s %v still %s", name, args, s.Status.State)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cniVersionLoaded reports whether the CRI has loaded the rig's network
// with the given cniVersion (it reloads the configuration directory on
// its own after a change).
func (c *containerd) cniVersionLoaded(v string) bool {
	var info struct {
		CNIConfig struct {
			Networks []struct {
				Config struct {
					Name       string
					CNIVersion string
				}
			}
		} `json:"cniconfig"`
	}
	out, err := c.run("info")
	if err != nil || json.Unmarshal([]byte(out), &info) != nil {
		return false
	}
	for _, n := range info.CNIConfig.Networks {
		if n.Config.Name == c.r.net && n.Config.CNIVersion == v {
			return true
		}
	}
	return false
}

// containerd's CRI driven by crictl: two pod sandboxes with Kubernetes
// metadata get addresses from the pool, host interfaces named after
// namespace.name and IPAM attributes from CNI_ARGS; a container in one
// pod pings the other and back; stopping and removing the sandboxes leave
// no cali* interface and no allocation. Subtests: six sandboxes started
// and stopped in parallel; a sandbox recreated (attempt 1) while the old
// one exists; a containerd restart under a running pod; every cniVersion
// (each version the runtime accepts gives a working sandbox; a version it
// refuses leaves nothing behind either: its libcni refuses the result
// after the plugin's ADD, then DELs).
//
// containerd runs in a throwaway network namespace (nsenter --net; `ip
// netns exec` would remount /sys and hide the cgroup mounts runc needs),
// so the plugin runs there and the pods' host side lives there.
func TestContainerdCRI(t *testing.T) {
	bins := requireRuntime(t, "containerd", "ctr", "runc")
	r := newRig(t, "ctrd")
	r.writeConf("1.0.0")
	c := startContainerd(t, r, bins)
	if out, err := exec.Command(bins["containerd"], "--version").Output(); err == nil {
		t.Logf("%s", strings.TrimSpace(string(out)))
	}

	type pod struct {
		name, uid, id, config string
		ip                    netip.Addr
	}
	pods := []*pod{{name: "web-a", uid: "0b6c2d4e-a"}, {name: "web-b", uid: "0b6c2d4e-b"}}
	for _, p := range pods {
		id, err := c.runPod("default", p.name, p.uid)
		if err != nil {
			t.Fatal(err)
		}
		p.id, p.config = id, filepath.Join(r.dir, "pod-"+p.name+".json")
		p.ip = r.requireAddr(c.podIP(id),
			map[string]string{"namespace": "default", "pod": p.name, "container": id, "network": r.net},
			veth.HostIfName("", veth.WorkloadKey("default", p.name)))
	}
	if pods[0].ip == pods[1].ip {
		t.Fatalf("both pods got %v", pods[0].ip)
	}
	if n := len(r.allocations()); n != 2 {
		t.Fatalf("%d allocations, want 2", n)
	}
	for i, p := range pods {
		other := pods[1-i]
		code, logs := c.runOnce(p.id, p.config, "ping", "ping", other.ip.String(), "20")
		if code != 0 || !strings.Contains(logs, "reply from "+other.ip.String()) {
			t.Fatalf("ping from %s to %s: exit %d\n%s", p.name, other.ip, code, logs)
		}
	}
	for _, p := range pods {
		c.must("stopp", p.id)
	}
	r.requireClean("after stopp") // the CRI DELs on stop
	for _, p := range pods {
		c.must("rmp", p.id)
	}
	r.requireClean("after rmp")

	// The CRI runs the ADDs of concurrent RunPodSandbox calls in parallel:
	// each gets its own address, and parallel stops free them all.
	r.subtest(t, "parallel", func(t *testing.T) {
		const n = 6
		ids, errs := make([]string, n), make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { ids[i], errs[i] = c.runPod("default", fmt.Sprintf("par-%d", i), fmt.Sprintf("uid-par-%d", i)) })
		}
		wg.Wait()
		seen := map[netip.Addr]bool{}
		for i := range n {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			a := r.requireAddr(c.podIP(ids[i]), map[string]string{"pod": fmt.Sprintf("par-%d", i), "container": ids[i]},
				veth.HostIfName("", veth.WorkloadKey("default", fmt.Sprintf("par-%d", i))))
			if seen[a] {
				t.Fatalf("%v given twice", a)
			}
			seen[a] = true
		}
		for i := range n {
			wg.Go(func() { _, errs[i] = c.run("stopp", ids[i]) })
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			c.must("rmp", ids[i])
		}
		r.requireClean("after parallel stopp")
	})

	// kubelet recreates a pod's sandbox (attempt 1) while the old one
	// still exists: same namespace and name, so the same host interface
	// name. The new sandbox gets the interface; the old sandbox's late DEL
	// frees only its own address and leaves the new pod reachable.
	r.subtest(t, "recreate", func(t *testing.T) {
		cfg := func(attempt int) string {
			return r.writeJSON(fmt.Sprintf("pod-again-%d.json", attempt), map[string]any{
				"metadata":      map[string]any{"name": "again", "namespace": "default", "uid": "uid-again", "attempt": attempt},
				"log_directory": filepath.Join(r.dir, "logs", fmt.Sprintf("again-%d", attempt)),
				"linux":         map[string]any{"cgroup_parent": r.cgroupParent},
			})
		}
		hostIf := veth.HostIfName("", veth.WorkloadKey("default", "again"))
		old := c.must("runp", cfg(0))
		r.requireAddr(c.podIP(old), map[string]string{"pod": "again", "container": old}, hostIf)
		cfgNew := cfg(1)
		cur := c.must("runp", cfgNew)
		ip := r.requireAddr(c.podIP(cur), map[string]string{"pod": "again", "container": cur}, hostIf)
		c.must("stopp", old)
		c.must("rmp", old)
		if as := r.allocations(); len(as) != 1 || as[0].Addr != ip {
			t.Fatalf("after the old sandbox's DEL: allocations %+v, want only %v", as, ip)
		}
		r.requireAddr(ip.String(), map[string]string{"container": cur}, hostIf)
		peer, err := c.runPod("default", "peer", "uid-peer")
		if err != nil {
			t.Fatal(err)
		}
		if code, logs := c.runOnce(peer, filepath.Join(r.dir, "pod-peer.json"), "ping-again", "ping", ip.String(), "20"); code != 0 {
			t.Fatalf("ping to the recreated pod %v: exit %d\n%s", ip, code, logs)
		}
		for _, id := range []string{cur, peer} {
			c.must("stopp", id)
			c.must("rmp", id)
		}
		r.requireClean("after recreate")
	})

	// containerd restarts (an upgrade) while a pod runs: the new daemon
	// still stops it through tabby's DEL.
	r.subtest(t, "restart", func(t *testing.T) {
		id, err := c.runPod("default", "survivor", "uid-survivor")
		if err != nil {
			t.Fatal(err)
		}
		ip := r.requireAddr(c.podIP(id), map[string]string{"pod": "survivor"}, "")
		c.stop()
		c.launch()
		if got := c.podIP(id); got != ip.String() {
			t.Fatalf("after the restart the CRI reports %s, was %v", got, ip)
		}
		c.must("stopp", id)
		c.must("rmp", id)
		r.requireClean("after restart and stopp")
	})

	r.subtest(t, "cniVersion", func(t *testing.T) {
		var table []string
		for _, v := range cniVersions {
			r.writeConf(v)
			deadline := time.Now().Add(30 * time.Second)
			for !c.cniVersionLoaded(v) {
				if time.Now().After(deadline) {
					t.Fatalf("the CRI did not load cniVersion %s", v)
				}
				time.Sleep(100 * time.Millisecond)
			}
			name := "ver-" + strings.ReplaceAll(v, ".", "")
			id, err := c.runPod("default", name, "uid-"+name)
			if err != nil {
				table = append(table, fmt.Sprintf("%s: refused: %v", v, err))
				if v != "1.1.0" {
					t.Errorf("cniVersion %s: %v", v, err)
				}
			} else {
				r.requireAddr(c.podIP(id), map[string]string{"pod": name}, "")
				c.must("stopp", id)
				c.must("rmp", id)
				table = append(table, v+": ok")
			}
			r.requireClean("cniVersion " + v)
		}
		t.Logf("cniVersion under containerd:\n%s", strings.Join(table, "\n"))
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
