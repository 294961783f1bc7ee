package agentflags

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseArgsConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent.conf")
	conf := "# tabby\n\ndatastore = etcd://10.96.232.136:2379\npool=10.244.0.0/16\n--hold-time=5s\nvxlan-mode=CrossSubnet\nnat-outgoing=false\n"
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := ParseArgs([]string{"--config", file, "--vxlan-mode=Always", "--pool=10.245.0.0/16"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if f.Datastore != "etcd://10.96.232.136:2379" || f.HoldTime != 5*time.Second || f.NATOutgoing {
		t.Errorf("file not applied: %+v", f)
	}
	if f.VXLANMode != "Always" || f.Pools.String() != "10.245.0.0/16" {
		t.Errorf("command line must win: mode %s pools %s", f.VXLANMode, f.Pools.String())
	}
}

func TestParseArgsErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		conf string
		args []string
	}{
		"unknown flag in file": {conf: "colour=blue\n"},
		"no value":             {conf: "pool\n"},
		"bad value":            {conf: "hold-time=soon\n"},
		"nested config":        {conf: "config=/etc/x\n"},
		"bad pool":             {args: []string{"--pool=10.244.0.1/16"}},
		"extra argument":       {args: []string{"worker1"}},
	} {
		t.Run(name, func(t *testing.T) {
			args := tc.args
			if tc.conf != "" {
				file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
				if err := os.WriteFile(file, []byte(tc.conf), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config="+file)
			}
			if _, err := ParseArgs(args, io.Discard); err == nil {
				t.Errorf("ParseArgs(%q) with %q: no error", args, tc.conf)
			} else if tc.conf != "" && !errors.Is(err, ErrConfigFile) {
				t.Errorf("error %v does not wrap ErrConfigFile", err)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"", "# c\nname=value\n", "a=b=c", "  --x = y  ", "=v", "a b=c", "\x00=\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		es, err := ParseConfig(strings.NewReader(s))
		if err != nil {
			if !errors.Is(err, ErrConfigFile) {
				t.Fatalf("error %v does not wrap ErrConfigFile", err)
			}
			return
		}
		for _, e := range es {
			if e.Name == "" || strings.ContainsAny(e.Name, " \t=") || strings.HasPrefix(e.Name, "#") {
				t.Fatalf("bad entry %+v from %q", e, s)
			}
		}
	})
}

func ExampleParseConfig() {
	es, _ := ParseConfig(strings.NewReader("# tabby-agent\ndatastore=etcd://10.96.232.136:2379\nvxlan-mode = CrossSubnet\n"))
	for _, e := range es {
		fmt.Printf("line %d: --%s=%s\n", e.Line, e.Name, e.Value)
	}
	// Output:
	// line 2: --datastore=etcd://10.96.232.136:2379
	// line 3: --vxlan-mode=CrossSubnet
}
