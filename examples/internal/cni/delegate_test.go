//go:build linux

package cni

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// The delegator runs the plugin from CNI_PATH with the configuration on
// stdin and CNI_COMMAND set, decodes its result (of the configuration's
// version when it names none) and returns its error object.
func TestExecDelegator(t *testing.T) {
	dir := t.TempDir()
	script := `#!/bin/sh
cat > "$0.stdin"
echo "$CNI_COMMAND" >> "$0.cmds"
case "$CNI_COMMAND" in
ADD) echo '{"ips":[{"address":"10.1.2.3/24","gateway":"10.1.2.1"}]}' ;;
DEL) echo '{"cniVersion":"1.1.0","code":11,"msg":"try later","details":"busy"}'; exit 1 ;;
CHECK) echo "no object" >&2; exit 3 ;;
esac
`
	plugin := filepath.Join(dir, "fake-ipam")
	if err := os.WriteFile(plugin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CNI_PATH", "/nonexistent"+string(filepath.ListSeparator)+dir)
	t.Setenv("CNI_COMMAND", "VERSION") // overridden per command
	conf := []byte(`{"cniVersion":"1.1.0","name":"n","ipam":{"type":"fake-ipam"}}`)
	ctx := context.Background()
	d := execDelegator{}

	r, err := d.Add(ctx, "fake-ipam", conf)
	if err != nil {
		t.Fatal(err)
	}
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		t.Fatal(err)
	}
	if res.CNIVersion != "1.1.0" || len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.1.2.3/24" {
		t.Fatalf("result %+v", res)
	}
	if b, _ := os.ReadFile(plugin + ".stdin"); string(b) != string(conf) {
		t.Fatalf("plugin read %q on stdin", b)
	}

	err = d.Del(ctx, "fake-ipam", conf)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != 11 || te.Msg != "try later" {
		t.Fatalf("DEL: %v, want the plugin's error object (code 11)", err)
	}
	err = d.Check(ctx, "fake-ipam", conf)
	if !errors.As(err, &te) || !strings.Contains(te.Msg, "no object") {
		t.Fatalf("CHECK: %v, want stderr in the message", err)
	}
	if err := d.GC(ctx, "fake-ipam", conf); err != nil {
		t.Fatal(err)
	}
	if err := d.Status(ctx, "fake-ipam", conf); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(plugin + ".cmds"); string(b) != "ADD\nDEL\nCHECK\nGC\nSTATUS\n" {
		t.Fatalf("CNI_COMMAND seen by the plugin: %q", b)
	}
	if _, err := d.Add(ctx, "missing-ipam", conf); err == nil || !strings.Contains(err.Error(), "failed to find plugin") {
		t.Fatalf("missing plugin: %v", err)
	}
	if _, err := d.Add(ctx, "../fake-ipam", conf); err == nil {
		t.Fatal("a plugin name with a path was run")
	}
}
