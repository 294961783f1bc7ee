//go:build linux

package node_test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The fake cluster must pass with no privilege at all: as root, this test
// runs TestSeedClusterOnFake again in a child process under uid/gid 65534
// (nobody), which has no capabilities (no CAP_NET_ADMIN, NET_RAW or
// SYS_ADMIN), so any fallback to the host kernel fails it. Unprivileged,
// the suite itself is that proof and this test checks there are no
// capabilities.
func TestSeedClusterOnFakeUnprivileged(t *testing.T) {
	if os.Getenv("TABBY_NODE_UNPRIVILEGED_CHILD") == "1" {
		t.Skip("in the child")
	}
	if os.Getuid() != 0 {
		if c := capEff(t); c != "0000000000000000" {
			t.Skipf("not root but capabilities %s: run as root or as a plain user", c)
		}
		return // TestSeedClusterOnFake runs in this process, unprivileged
	}
	dir, err := os.MkdirTemp("", "tabby-node-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "node.test")
	copyFile(t, os.Args[0], bin)
	cmd := exec.Command(bin, "-test.run", "^TestSeedClusterOnFake$", "-test.count", "1", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TABBY_NODE_UNPRIVILEGED_CHILD=1", "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the fake cluster failed without privileges: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestSeedClusterOnFake ") || !strings.Contains(string(out), "CapEff 0000000000000000") {
		t.Fatalf("child did not run the cluster unprivileged:\n%s", out)
	}
}

func capEff(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return ""
}

func copyFile(t *testing.T, from, to string) {
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
