//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/kerneltest"
)

// Versions of the tools the tests install.
const (
	cniVersion     = "v1.3.1"  // cnitool
	pluginsVersion = "v1.10.0" // portmap, ptp, host-local
)

// binDir holds the built and installed binaries; set by TestMain before any
// test runs and read-only afterwards.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		// The tests skip (or fail under TABBY_KERNEL_TESTS=1) by themselves.
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "tabby-cni-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		return 1
	}
	binDir = dir
	return m.Run()
}

func build(dir string) error {
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	modDir := filepath.Dir(strings.TrimSpace(string(root)))
	cmds := [][]string{
		{"go", "build", "-o", dir + "/", "./examples/tabby", "./examples/tabby-etcd", "./examples/tabby-ipam", "./examples/tabbyctl"},
		{"go", "install", "github.com/containernetworking/cni/cnitool@" + cniVersion},
		{"go", "install",
			"github.com/containernetworking/plugins/plugins/meta/portmap@" + pluginsVersion,
			"github.com/containernetworking/plugins/plugins/main/ptp@" + pluginsVersion,
			"github.com/containernetworking/plugins/plugins/ipam/host-local@" + pluginsVersion},
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

func requireTools(t *testing.T) {
	t.Helper()
	kerneltest.Require(t)
	if binDir == "" {
		t.Fatal("e2e binaries were not built")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("the e2e tests need iproute2's ip (ip netns exec)")
	}
}
