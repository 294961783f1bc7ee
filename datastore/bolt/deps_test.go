package bolt_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoEtcdOrGRPC: a one-host user of the memory or bolt store does not
// link etcd or gRPC (bbolt itself is fine).
func TestNoEtcdOrGRPC(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps",
		"github.com/tabbynet/tabby/datastore/memory",
		"github.com/tabbynet/tabby/datastore/bolt").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "go.etcd.io/etcd") || strings.Contains(pkg, "google.golang.org/grpc") {
			t.Errorf("memory or bolt depends on %s", pkg)
		}
	}
}
