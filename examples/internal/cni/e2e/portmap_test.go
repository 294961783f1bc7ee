//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/kerneltest"
)

// tabby chained before portmap (both backends portmap has): the port
// mapping exists after ADD, CHECK passes through the chain, and DEL
// removes everything.
func TestPortmapChain(t *testing.T) {
	requireTools(t)
	backends := map[string][]string{
		"iptables": {"iptables-save", "-t", "nat"},
		"nftables": {"nft", "list", "ruleset"},
	}
	for backend, dump := range backends {
		t.Run(backend, func(t *testing.T) {
			if _, err := exec.LookPath(dump[0]); err != nil {
				if os.Getenv(kerneltest.EnvForce) == "1" {
					t.Fatalf("portmap's %s backend needs %s: install it (bench/cni/deps.sh: apt-get install -y nftables iptables)", backend, dump[0])
				}
				t.Skipf("%s not installed", dump[0])
			}
			w := newWorld(t)
			w.writeList(w.tabbyConf(nil), map[string]any{"type": "portmap", "backend": backend, "capabilities": map[string]bool{"portMappings": true}})
			pod := kerneltest.NewNS(t, "pod")
			capArgs := `CAP_ARGS={"portMappings":[{"hostPort":18080,"containerPort":80,"protocol":"tcp"}]}`
			out, err := w.cnitool("add", pod.Path, capArgs)
			if err != nil {
				t.Fatal(err)
			}
			addr := strings.TrimSuffix(decodeResult(t, out).IPs[0].Address, "/32")
			rules := w.dump(t, dump)
			if !strings.Contains(rules, "18080") || !strings.Contains(rules, addr) {
				t.Fatalf("no DNAT of 18080 to %s in:\n%s", addr, rules)
			}
			if _, err := w.cnitool("check", pod.Path, capArgs); err != nil {
				t.Fatal(err)
			}
			if _, err := w.cnitool("del", pod.Path, capArgs); err != nil {
				t.Fatal(err)
			}
			if rules := w.dump(t, dump); strings.Contains(rules, "18080") {
				t.Fatalf("DEL left the port mapping:\n%s", rules)
			}
			if n, l := w.allocated(), w.hostLinks(); n != 0 || len(l) != 0 {
				t.Fatalf("after DEL: %d allocated, links %v", n, l)
			}
		})
	}
}

func (w *world) dump(t *testing.T, argv []string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", w.host.Name}, argv...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
	return string(out)
}
