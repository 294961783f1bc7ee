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

// The default tabby binary opens plain bolt stores only; a configuration
// naming any other store (here a bolt URL with a parameter, which only the
// full datastore/dsn parses, and an etcd URL) is handed to tabby-etcd,
// which does the whole call. Without tabby-etcd the call fails with code 7
// before anything is allocated or plumbed.
func TestHandoffToFullPlugin(t *testing.T) {
	w := newWorld(t)
	conf := w.netConf(w.tabbyConf(map[string]any{"datastore": w.datastore() + "?lock-timeout=5s"}))
	pod := kerneltest.NewNS(t, "pod")

	out, cerr := w.raw("tabby", "ADD", "c1", pod.Path, conf)
	if cerr != nil {
		t.Fatalf("ADD through the hand-off: code %d: %s", cerr.Code, cerr.Msg)
	}
	decodeResult(t, out)
	if n := w.allocated(); n != 1 {
		t.Fatalf("allocated %d after ADD, want 1", n)
	}
	if l := w.hostLinks(); len(l) != 1 {
		t.Fatalf("host links after ADD: %v", l)
	}
	if _, cerr := w.raw("tabby", "DEL", "c1", pod.Path, conf); cerr != nil {
		t.Fatalf("DEL through the hand-off: code %d: %s", cerr.Code, cerr.Msg)
	}
	if n := w.allocated(); n != 0 {
		t.Fatalf("allocated %d after DEL, want 0", n)
	}

	// An etcd that does not answer: tabby-etcd reports it (code 11).
	etcd := w.netConf(w.tabbyConf(map[string]any{"datastore": "etcd://127.0.0.1:9?dial-timeout=200ms&request-timeout=200ms"}))
	if _, cerr := w.raw("tabby", "ADD", "c2", pod.Path, etcd); cerr == nil || cerr.Code != 11 {
		t.Fatalf("ADD with etcd down: %+v, want code 11", cerr)
	}

	// tabby alone (another CNI_PATH, no tabby-etcd): code 7 naming
	// tabby-etcd; plain bolt still works.
	alone := t.TempDir()
	b, err := os.ReadFile(filepath.Join(binDir, "tabby"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(alone, "tabby"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []map[string]any{conf, etcd} {
		_, cerr := w.rawAt(alone, "ADD", "c3", pod.Path, c)
		if cerr == nil || cerr.Code != 7 || !strings.Contains(cerr.Msg, "tabby-etcd") {
			t.Fatalf("ADD of %v without tabby-etcd: %+v, want code 7 naming tabby-etcd", c["datastore"], cerr)
		}
	}
	if n := w.allocated(); n != 0 {
		t.Fatalf("allocated %d, want 0", n)
	}
	if l := w.hostLinks(); len(l) != 0 {
		t.Fatalf("host links left: %v", l)
	}
	plain := w.netConf(w.tabbyConf(nil))
	if _, cerr := w.rawAt(alone, "ADD", "c4", pod.Path, plain); cerr != nil {
		t.Fatalf("plain bolt ADD with tabby alone: code %d: %s", cerr.Code, cerr.Msg)
	}
	if _, cerr := w.rawAt(alone, "DEL", "c4", pod.Path, plain); cerr != nil {
		t.Fatalf("DEL: code %d: %s", cerr.Code, cerr.Msg)
	}
}

// rawAt runs dir/tabby with the CNI protocol, CNI_PATH=dir, in the host
// namespace; it returns stdout and the error object if it failed.
func (w *world) rawAt(dir, command, containerID, netns string, conf any) (string, *cniError) {
	w.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", w.host.Name, filepath.Join(dir, "tabby"))
	cmd.Env = append(os.Environ(), "CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID, "CNI_NETNS="+netns,
		"CNI_IFNAME=eth0", "CNI_PATH="+dir)
	b, err := json.Marshal(conf)
	if err != nil {
		w.t.Fatal(err)
	}
	cmd.Stdin = bytes.NewReader(b)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err == nil {
		return out.String(), nil
	}
	var ce cniError
	if err := json.Unmarshal(out.Bytes(), &ce); err != nil || ce.Code == 0 {
		w.t.Fatalf("%s %s failed without a CNI error object: %s", dir, command, out.String())
	}
	return out.String(), &ce
}
