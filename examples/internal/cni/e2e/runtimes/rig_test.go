//go:build linux

package runtimes

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/ipam"
)

// cniVersions are the spec versions tabby speaks, oldest first.
var cniVersions = []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// pool is the tabby network's pool.
var pool = netip.MustParsePrefix("10.244.0.0/16")

// requireRuntime gates a runtime test: root (kerneltest.Require), the
// binaries TestMain prepares, and the named runtime binaries, whose paths
// it returns. A missing runtime skips the test, or fails it under
// TABBY_KERNEL_TESTS=1.
func requireRuntime(t *testing.T, bins ...string) map[string]string {
	t.Helper()
	kerneltest.Require(t)
	if setupErr != nil {
		t.Fatalf("setup: %v", setupErr)
	}
	paths := map[string]string{}
	for _, b := range append([]string{"nsenter"}, bins...) {
		p, err := exec.LookPath(b)
		if err != nil {
			if os.Getenv(kerneltest.EnvForce) == "1" {
				t.Fatalf("runtime test needs %s (%s=1): %v", b, kerneltest.EnvForce, err)
			}
			t.Skipf("runtime test needs %s: %v", b, err)
		}
		paths[b] = p
	}
	return paths
}

// rig is one runtime test's world: a temporary directory for every piece
// of the runtime's state, a throwaway "host" network namespace in which
// the runtime (and so the CNI plugins) runs, the tabby network's
// configuration directory and state (the bolt datastore), and a cgroup
// parent of its own for the containers.
type rig struct {
	t        *testing.T
	dir      string
	host     *kerneltest.NS
	net      string // the CNI network's name
	confDir  string // CNI configuration directory
	stateDir string // tabby's stateDir (tabby.db)
	// cgroupParent is the containers' cgroup parent, "/tabby-test-<random>".
	cgroupParent string
	// netns are network namespace files the runtime made for the test's
	// containers, removed at cleanup if the runtime left them.
	netns []string
}

func newRig(t *testing.T, prefix string) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), host: kerneltest.NewNS(t, prefix)}
	r.net = kerneltest.UniqueName("tabby-rt-")
	r.confDir = filepath.Join(r.dir, "net.d")
	r.stateDir = filepath.Join(r.dir, "tabby")
	r.cgroupParent = "/" + kerneltest.UniqueName("tabby-test-")
	for _, d := range []string{r.confDir, r.stateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// The pods reach each other through the host and its proxy ARP for
	// 169.254.1.1 (tabby's "kernel" mode), which the kernel answers only
	// for a destination routed through another interface: give the host
	// namespace a default route into a veth going nowhere.
	if err := r.host.Handle.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "dummy0"}, PeerName: "dummy1"}); err != nil {
		t.Fatal(err)
	}
	d := r.host.Link(t, "dummy0")
	if err := r.host.Handle.LinkSetUp(d); err != nil {
		t.Fatal(err)
	}
	r.host.AddRoute(t, &netlink.Route{LinkIndex: d.Attrs().Index, Scope: netlink.SCOPE_LINK, Dst: kerneltest.IPNet("0.0.0.0/0")})
	t.Cleanup(func() {
		// libcni caches results in /var/lib/cni whatever the runtime's
		// configuration says; drop ours.
		files, _ := filepath.Glob("/var/lib/cni/results/" + r.net + "-*")
		for _, f := range files {
			os.Remove(f)
		}
		removeCgroups(t, r.cgroupParent)
	})
	return r
}

// subtest runs f as a subtest of t with r reporting to the subtest's t,
// and to t again afterwards.
func (r *rig) subtest(t *testing.T, name string, f func(t *testing.T)) bool {
	return t.Run(name, func(st *testing.T) {
		r.t = st
		defer func() { r.t = t }()
		f(st)
	})
}

// writeConf installs the tabby network as a conflist of the given
// cniVersion.
func (r *rig) writeConf(version string) {
	r.t.Helper()
	b, err := json.Marshal(map[string]any{"cniVersion": version, "name": r.net, "plugins": []any{map[string]any{
		"type": "tabby", "nodeName": "node1", "stateDir": r.stateDir, "proxyARP": "kernel",
		"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{pool.String()}, "blockSize": 26},
	}}})
	if err != nil {
		r.t.Fatal(err)
	}
	// Write and rename within the directory, so that a runtime watching it
	// never reads half a file and sees a rename (containerd 1.6 ignores
	// the creation of a file, which a rename from elsewhere is). Runtimes
	// load only *.conf, *.conflist and *.json files.
	tmp := filepath.Join(r.confDir, "conflist.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(r.confDir, "10-"+r.net+".conflist")); err != nil {
		r.t.Fatal(err)
	}
}

// inHost is a command that runs in the host namespace (nsenter --net,
// which unlike `ip netns exec` keeps the machine's /sys and so its cgroup
// mounts, which the runtimes need).
func (r *rig) inHost(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + r.host.Path, "--", name}, args...)...)
}

// allocations are the addresses allocated in the tabby datastore, read
// with package ipam (none when the plugin never created the store).
func (r *rig) allocations() []ipam.Allocation {
	r.t.Helper()
	path := filepath.Join(r.stateDir, "tabby.db")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	ctx := context.Background()
	st, err := bolt.Open(ctx, path, &bolt.Options{NoCreate: true})
	if err != nil {
		r.t.Fatal(err)
	}
	defer st.Close()
	m, err := ipam.New(st, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	as, err := m.Allocations(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	if probs, err := m.Check(ctx, nil); err != nil || len(probs) != 0 {
		r.t.Fatalf("ipam check: %v %+v", err, probs)
	}
	return as
}

// caliLinks are the host namespace's interfaces named cali*.
func (r *rig) caliLinks() []string {
	r.t.Helper()
	ls, err := r.host.Handle.LinkList()
	if err != nil {
		r.t.Fatal(err)
	}
	var names []string
	for _, l := range ls {
		if n := l.Attrs().Name; strings.HasPrefix(n, "cali") {
			names = append(names, n)
		}
	}
	return names
}

// requireClean fails unless the host has no cali* interface and IPAM no
// allocation.
func (r *rig) requireClean(when string) {
	r.t.Helper()
	if l := r.caliLinks(); len(l) != 0 {
		r.t.Fatalf("%s: host interfaces left: %v", when, l)
	}
	if as := r.allocations(); len(as) != 0 {
		r.t.Fatalf("%s: %d allocations left: %+v", when, len(as), as)
	}
}

// requireAddr checks that a pod got address s from the pool, allocated
// with the given IPAM attributes, and that its host interface is
// hostIf (if not empty).
func (r *rig) requireAddr(s string, attrs map[string]string, hostIf string) netip.Addr {
	r.t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil || !pool.Contains(a) {
		r.t.Fatalf("pod address %q is not in %v (%v)", s, pool, err)
	}
	var found *ipam.Allocation
	as := r.allocations()
	for i := range as {
		if as[i].Addr == a {
			found = &as[i]
		}
	}
	if found == nil {
		r.t.Fatalf("%v is not allocated in IPAM: %+v", a, as)
	}
	for k, v := range attrs {
		if found.Attrs[k] != v {
			r.t.Fatalf("allocation of %v: attribute %s=%q, want %q (%v)", a, k, found.Attrs[k], v, found.Attrs)
		}
	}
	if hostIf != "" && !slices.Contains(r.caliLinks(), hostIf) {
		r.t.Fatalf("no host interface %s: %v", hostIf, r.caliLinks())
	}
	return a
}

// reap ends what a runtime left running or mounted under the rig's
// directory after the runtime itself was asked to clean up: processes
// whose command line names the directory (daemons, shims, conmon) or that
// live in the rig's cgroup parent (containers), by pid; then every mount
// under the directory, and the network namespace files in r.netns.
func (r *rig) reap() {
	pids, _ := filepath.Glob("/proc/[0-9]*")
	self := os.Getpid()
	for _, p := range pids {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil || pid == self {
			continue
		}
		cmdline, _ := os.ReadFile(p + "/cmdline")
		cg, _ := os.ReadFile(p + "/cgroup")
		if bytes.Contains(cmdline, []byte(r.dir)) || bytes.Contains(cg, []byte(r.cgroupParent+"/")) {
			r.t.Logf("cleanup: killing pid %d %q", pid, strings.ReplaceAll(string(cmdline), "\x00", " "))
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	unmountUnder(r.t, r.dir)
	for _, ns := range r.netns {
		if _, err := os.Stat(ns); err == nil {
			r.t.Logf("cleanup: removing network namespace %s", ns)
			unix.Unmount(ns, unix.MNT_DETACH)
			os.Remove(ns)
		}
	}
}

// unmountUnder detaches every mount point at or below dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMount(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range slices.Compact(points) {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			t.Errorf("cleanup: unmount %s: %v", p, err)
		}
	}
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeCgroups removes the cgroup parent's directories (leaves first) in
// every hierarchy mounted under /sys/fs/cgroup. The killed processes may
// take a moment to leave them: retry for a few seconds.
func removeCgroups(t *testing.T, parent string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		top := filepath.Join(root, parent)
		if _, err := os.Stat(top); err != nil {
			continue
		}
		var dirs []string
		filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs) // children before parents
		for _, d := range dirs {
			var err error
			for range 50 {
				if err = os.Remove(d); err == nil || errors.Is(err, fs.ErrNotExist) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("cleanup: remove cgroup %s: %v", d, err)
			}
		}
	}
}

// mustRun runs cmd and returns its combined output, failing t when it fails.
func mustRun(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return string(out)
}

// output runs cmd (a runtime's client, name, with args) and returns its
// standard output, trimmed; a failure's error carries its standard error.
func output(name string, cmd *exec.Cmd, args []string) (string, error) {
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out)), nil
}
