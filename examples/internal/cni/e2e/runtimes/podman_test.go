//go:build linux

package runtimes

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/veth"
)

// podman runs podman commands on state kept in one rig's directory, in the
// rig's host namespace, with the CNI network backend.
type podman struct {
	r    *rig
	bin  string
	args []string // global flags
	env  []string
}

// newPodman writes containers.conf, storage.conf and an empty
// registries.conf in r.dir (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF,
// CONTAINERS_REGISTRIES_CONF: nothing of /etc/containers is read), loads
// the test image and registers the cleanup: remove every container, then
// end whatever still runs or is mounted (rig.reap).
//
// What it cannot move: podman's network namespaces are files in /run/netns
// (removed when their container stops; the rig removes any left), and
// podman load updates the blob info cache in /var/lib/containers/cache.
func newPodman(t *testing.T, r *rig, bins map[string]string) *podman {
	t.Helper()
	p := &podman{r: r, bin: bins["podman"]}
	list := func(s ...string) string {
		q := make([]string, len(s))
		for i, v := range s {
			q[i] = fmt.Sprintf("%q", v)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	conf := fmt.Sprintf(`[containers]
# Rootful podman gives containers RLIMIT_NOFILE and RLIMIT_NPROC of 1048576;
# raising a hard limit needs CAP_SYS_RESOURCE, which root lacks on some hosts
# (see the package doc). Lowering is always allowed.
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
tmp_dir = %q
runtime = "runc"
[engine.runtimes]
runc = %s

[network]
network_backend = "cni"
cni_plugin_dirs = %s
network_config_dir = %q
default_network = %q
`, filepath.Join(r.dir, "podman-events.log"), filepath.Join(r.dir, "podman-tmp"), list(bins["runc"]),
		list(binDir), r.confDir, r.net)
	root, runroot := filepath.Join(r.dir, "podman-root"), filepath.Join(r.dir, "podman-run")
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\nrunroot = %q\ngraphroot = %q\n", runroot, root)
	files := map[string]string{"containers.conf": conf, "storage.conf": storage, "registries.conf": ""}
	for name, s := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.env = append(os.Environ(),
		"CONTAINERS_CONF="+filepath.Join(r.dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(r.dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF="+filepath.Join(r.dir, "registries.conf"))
	p.args = []string{"--root", root, "--runroot", runroot, "--storage-driver", "overlay",
		"--network-backend", "cni", "--cni-config-dir", r.confDir, "--cgroup-manager", "cgroupfs"}
	t.Cleanup(func() {
		if out, err := p.run("rm", "--all", "--force", "--time", "2"); err != nil {
			t.Logf("cleanup: %v %s", err, out)
		}
		r.reap()
	})
	p.must("load", "--input", podTar)
	return p
}

func (p *podman) cmd(args ...string) *exec.Cmd {
	cmd := p.r.inHost(p.bin, append(append([]string{}, p.args...), args...)...)
	cmd.Env = p.env
	return cmd
}

// run runs podman and returns its standard output.
func (p *podman) run(args ...string) (string, error) {
	return output("podman", p.cmd(args...), args)
}

func (p *podman) must(args ...string) string {
	p.r.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.r.t.Fatal(err)
	}
	return out
}

// start runs a detached container of the test image (its pause command)
// on the tabby network and returns its id.
func (p *podman) start(name string) (string, error) {
	id, err := p.run("run", "--detach", "--name", name, "--cgroup-parent", p.r.cgroupParent, "--network", p.r.net, podImage)
	if err != nil {
		return "", err
	}
	if ns, err := p.run("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", id); err == nil && ns != "" {
		p.r.netns = append(p.r.netns, ns)
	}
	return id, nil
}

// ip is the container's address on the tabby network as podman reports it.
func (p *podman) ip(id string) string {
	return p.must("inspect", "--format", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", p.r.net), id)
}

// podman with its CNI backend (podman 4's network_backend = "cni"): two
// containers on a tabby network get addresses from the pool (checked in
// IPAM, with the container's id and the network as attributes, and the
// host interface named after the container id, podman sending no
// Kubernetes CNI_ARGS); each reaches the other (podman exec), a third,
// short-lived container (run --rm) reaches the first; a restart gives the
// container a working address again; stop and rm leave no cali* interface
// and no allocation. Then every cniVersion, as for containerd.
//
// podman runs in a throwaway network namespace (nsenter --net), so the
// plugin runs there and the containers' host side lives there.
func TestPodmanCNI(t *testing.T) {
	bins := requireRuntime(t, "podman", "conmon", "runc")
	r := newRig(t, "podm")
	r.writeConf("1.0.0")
	p := newPodman(t, r, bins)
	t.Logf("%s", p.must("version", "--format", "podman {{.Client.Version}}"))

	type ctr struct {
		name, id string
		ip       netip.Addr
	}
	ctrs := []*ctr{{name: "a"}, {name: "b"}}
	for _, c := range ctrs {
		id, err := p.start(c.name)
		if err != nil {
			t.Fatal(err)
		}
		c.id = id
		c.ip = r.requireAddr(p.ip(id), map[string]string{"container": id, "network": r.net}, veth.HostIfName("", id))
	}
	if ctrs[0].ip == ctrs[1].ip {
		t.Fatalf("both containers got %v", ctrs[0].ip)
	}
	ping := func(from string, to netip.Addr) {
		t.Helper()
		out, err := p.run("exec", from, "/pod", "ping", to.String(), "20")
		if err != nil || !strings.Contains(out, "reply from "+to.String()) {
			t.Fatalf("ping from %s to %v: %v\n%s", from, to, err, out)
		}
	}
	ping("a", ctrs[1].ip)
	ping("b", ctrs[0].ip)
	// A short-lived container: ADD, ping, DEL.
	out, err := p.run("run", "--rm", "--cgroup-parent", r.cgroupParent, "--network", r.net, podImage, "ping", ctrs[0].ip.String(), "20")
	if err != nil || !strings.Contains(out, "reply from "+ctrs[0].ip.String()) {
		t.Fatalf("run --rm ping: %v\n%s", err, out)
	}
	if n := len(r.allocations()); n != 2 {
		t.Fatalf("%d allocations after run --rm, want 2", n)
	}
	// A restart is a DEL and an ADD for the same container id.
	p.must("restart", "--time", "2", "a")
	ctrs[0].ip = r.requireAddr(p.ip(ctrs[0].id), map[string]string{"container": ctrs[0].id}, veth.HostIfName("", ctrs[0].id))
	ping("b", ctrs[0].ip)
	if n := len(r.allocations()); n != 2 {
		t.Fatalf("%d allocations after restart, want 2", n)
	}
	for _, c := range ctrs {
		p.must("stop", "--time", "2", c.name)
	}
	r.requireClean("after stop")
	for _, c := range ctrs {
		p.must("rm", c.name)
	}
	r.requireClean("after rm")

	r.subtest(t, "cniVersion", func(t *testing.T) {
		var table []string
		for _, v := range cniVersions {
			r.writeConf(v)
			name := "ver-" + strings.ReplaceAll(v, ".", "")
			id, err := p.start(name)
			if err != nil {
				table = append(table, fmt.Sprintf("%s: refused: %v", v, err))
				if v != "1.1.0" {
					t.Errorf("cniVersion %s: %v", v, err)
				}
				p.run("rm", "--force", name) // podman keeps the created container
			} else {
				r.requireAddr(p.ip(id), map[string]string{"container": id}, "")
				p.must("rm", "--force", "--time", "2", id)
				table = append(table, v+": ok")
			}
			r.requireClean("cniVersion " + v)
		}
		t.Logf("cniVersion under podman:\n%s", strings.Join(table, "\n"))
	})
}
