//go:build linux

package runtimes

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Versions of the tools the tests install with go install.
const (
	crictlVersion  = "v1.34.0" // sigs.k8s.io/cri-tools
	pluginsVersion = "v1.10.0" // loopback, which containerd's CRI runs on every sandbox
)

// podImage is the tag of the test image (pause process and test container).
const podImage = "localhost/tabby-test-pod:1"

// binDir holds the built and installed binaries and the image tarball
// (podTar); set by TestMain before any test runs and read-only afterwards.
// It is also the CNI plugin directory the runtimes are given.
var binDir, podTar string

// setupErr is why TestMain could not prepare binDir; tests report it.
var setupErr error

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		// The tests skip (or fail under TABBY_KERNEL_TESTS=1) by themselves.
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "tabby-runtimes-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		setupErr = err
	} else {
		binDir, podTar = dir, filepath.Join(dir, "pod.tar")
	}
	return m.Run()
}

// build compiles the plugins (without etcd: the tests use the bolt store),
// the test image's binary and writes the image, and installs loopback and,
// when containerd is on the machine, crictl.
func build(dir string) error {
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	modDir := filepath.Dir(strings.TrimSpace(string(root)))
	cmds := [][]string{
		{"go", "build", "-tags", "tabby_noetcd", "-o", dir + "/", "./examples/tabby", "./examples/tabby-ipam", "./examples/tabbyctl"},
		{"go", "build", "-o", filepath.Join(dir, "pod"), "./examples/internal/cni/e2e/runtimes/testdata/pod"},
		{filepath.Join(dir, "pod"), "image", "-o", filepath.Join(dir, "pod.tar"), podImage},
		{"go", "install", "github.com/containernetworking/plugins/plugins/main/loopback@" + pluginsVersion},
	}
	if _, err := exec.LookPath("containerd"); err == nil {
		cmds = append(cmds, []string{"go", "install", "sigs.k8s.io/cri-tools/cmd/crictl@" + crictlVersion})
	}
	for _, c := range cmds {
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Dir = modDir
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}
