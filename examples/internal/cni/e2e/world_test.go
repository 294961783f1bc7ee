//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/kerneltest"
)

// world is one test's CNI setup: a throwaway host namespace in which the
// plugins run, a network configuration directory and the agent state
// directory (holding the bolt datastore) in t.TempDir().
type world struct {
	t        *testing.T
	host     *kerneltest.NS
	dir      string
	netDir   string
	stateDir string
	net      string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	requireTools(t)
	w := &world{t: t, host: kerneltest.NewNS(t, "cnih"), dir: t.TempDir()}
	w.netDir = filepath.Join(w.dir, "net.d")
	w.stateDir = filepath.Join(w.dir, "state")
	w.net = kerneltest.UniqueName("tabby-e2e-")
	for _, d := range []string{w.netDir, w.stateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// libcni (cnitool) caches results in /var/lib/cni; drop ours.
	t.Cleanup(func() {
		files, _ := filepath.Glob("/var/lib/cni/results/" + w.net + "-*")
		for _, f := range files {
			os.Remove(f)
		}
	})
	return w
}

// tabbyConf is the tabby plugin's configuration with overrides.
func (w *world) tabbyConf(kv map[string]any) map[string]any {
	c := map[string]any{
		"type": "tabby", "nodeName": "worker1", "stateDir": w.stateDir, "proxyARP": "userspace",
		"ipam": map[string]any{"type": "tabby-ipam", "pools": []string{"10.244.0.0/16"}, "blockSize": 26},
	}
	for k, v := range kv {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// writeList installs the network as a conflist of plugins.
func (w *world) writeList(plugins ...map[string]any) {
	w.t.Helper()
	b, err := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": w.net, "plugins": plugins})
	if err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.netDir, "10-"+w.net+".conflist"), b, 0o600); err != nil {
		w.t.Fatal(err)
	}
}

// inHost runs a binary of binDir inside the host namespace.
func (w *world) inHost(env []string, stdin []byte, bin string, args ...string) (string, string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", w.host.Name, filepath.Join(binDir, bin)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (w *world) cniEnv(extra ...string) []string {
	return append([]string{"NETCONFPATH=" + w.netDir, "CNI_PATH=" + binDir}, extra...)
}

// cnitool runs `cnitool cmd <network> <netns>` in the host namespace.
func (w *world) cnitool(cmd, netns string, env ...string) (string, error) {
	w.t.Helper()
	out, errs, err := w.inHost(w.cniEnv(env...), nil, "cnitool", cmd, w.net, netns)
	if err != nil {
		return out, &cmdError{err: err, stderr: errs}
	}
	return out, nil
}

type cmdError struct {
	err    error
	stderr string
}

func (e *cmdError) Error() string { return e.err.Error() + ": " + e.stderr }

// cniError is a plugin's error object.
type cniError struct {
	Code uint   `json:"code"`
	Msg  string `json:"msg"`
}

// raw runs a plugin with the CNI protocol directly and returns its stdout
// and, if it failed, its error object.
func (w *world) raw(bin, command, containerID, netns string, conf any, extra ...string) (string, *cniError) {
	w.t.Helper()
	b, err := json.Marshal(conf)
	if err != nil {
		w.t.Fatal(err)
	}
	env := append([]string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + containerID, "CNI_NETNS=" + netns,
		"CNI_IFNAME=eth0", "CNI_PATH=" + binDir}, extra...)
	out, errs, err := w.inHost(env, b, bin)
	if err == nil {
		return out, nil
	}
	var ce cniError
	if jerr := json.Unmarshal([]byte(out), &ce); jerr != nil || ce.Code == 0 {
		w.t.Fatalf("%s %s failed without a CNI error object: %v\nstdout %s\nstderr %s", bin, command, err, out, errs)
	}
	if strings.TrimSpace(errs) != "" {
		w.t.Logf("%s %s stderr: %s", bin, command, errs)
	}
	return out, &ce
}

// netConf is a single plugin configuration as the runtime sends it.
func (w *world) netConf(plugin map[string]any) map[string]any {
	c := map[string]any{"cniVersion": "1.1.0", "name": w.net}
	for k, v := range plugin {
		c[k] = v
	}
	return c
}

func (w *world) datastore() string { return "bolt://" + filepath.Join(w.stateDir, "tabby.db") }

// ctl runs tabbyctl on the world's datastore (in the machine's namespace:
// it touches no network state).
func (w *world) ctl(args ...string) (string, error) {
	w.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "tabbyctl"), append([]string{"--datastore", w.datastore()}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), &cmdError{err: err, stderr: errb.String()}
	}
	return out.String(), nil
}

// allocated is the sum of `tabbyctl ipam show -o json`'s allocated
// counts (0 when the datastore was never created).
func (w *world) allocated() int {
	w.t.Helper()
	if _, err := os.Stat(filepath.Join(w.stateDir, "tabby.db")); os.IsNotExist(err) {
		return 0
	}
	out, err := w.ctl("ipam", "show", "-o", "json")
	if err != nil {
		w.t.Fatal(err)
	}
	var show struct {
		Pools []struct {
			Allocated int `json:"allocated"`
		} `json:"pools"`
	}
	if err := json.Unmarshal([]byte(out), &show); err != nil {
		w.t.Fatalf("%v: %s", err, out)
	}
	n := 0
	for _, p := range show.Pools {
		n += p.Allocated
	}
	return n
}

// hostLinks are the interfaces of the host namespace but lo.
func (w *world) hostLinks() []string {
	w.t.Helper()
	ls, err := w.host.Handle.LinkList()
	if err != nil {
		w.t.Fatal(err)
	}
	var names []string
	for _, l := range ls {
		if n := l.Attrs().Name; n != "lo" && !strings.HasPrefix(n, "dummy") {
			names = append(names, n)
		}
	}
	return names
}

// result decodes an ADD result.
type addResult struct {
	CNIVersion string `json:"cniVersion"`
	Interfaces []struct {
		Name    string `json:"name"`
		Mac     string `json:"mac"`
		Sandbox string `json:"sandbox"`
	} `json:"interfaces"`
	IPs []struct {
		Address string `json:"address"`
		Gateway string `json:"gateway"`
	} `json:"ips"`
}

func decodeResult(t *testing.T, s string) addResult {
	t.Helper()
	var r addResult
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatalf("result %q: %v", s, err)
	}
	if len(r.IPs) == 0 {
		t.Fatalf("result without address: %s", s)
	}
	return r
}
