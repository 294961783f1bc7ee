// Package kubernetes holds the manifests that run tabby on a Kubernetes
// cluster; its test parses every manifest and checks what they promise.
package kubernetes

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	agent "github.com/tabbynet/tabby/examples/internal/agentflags"
	"sigs.k8s.io/yaml"
)

// agentFlags are the flags tabby-agent really accepts: its own flag set. A
// manifest that passes anything else would crash-loop the DaemonSet.
var agentFlags = func() []string {
	var names []string
	agent.NewFlagSet(&agent.Flags{}).VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}()

type object = map[string]any

func docs(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var out []object
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range bytes.Split(raw, []byte("\n---\n")) {
			var o object
			if err := yaml.UnmarshalStrict(d, &o); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if o == nil {
				continue
			}
			for _, k := range []string{"apiVersion", "kind"} {
				if s, _ := o[k].(string); s == "" {
					t.Fatalf("%s document %d: no %s", f, i, k)
				}
			}
			if name, _ := get(o, "metadata", "name").(string); name == "" {
				t.Fatalf("%s document %d: no metadata.name", f, i)
			}
			out = append(out, o)
		}
	}
	return out
}

// get walks nested maps and lists (ints index lists).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func find(t *testing.T, all []object, kind string) object {
	t.Helper()
	for _, o := range all {
		if o["kind"] == kind {
			return o
		}
	}
	t.Fatalf("no %s in the manifests", kind)
	return nil
}

func TestManifestsParse(t *testing.T) {
	all := docs(t)
	kinds := map[string]bool{}
	for _, o := range all {
		kinds[o["kind"].(string)] = true
	}
	for _, k := range []string{"ServiceAccount", "ConfigMap", "DaemonSet"} {
		if !kinds[k] {
			t.Errorf("missing %s", k)
		}
	}
}

func TestDaemonSetLeastPrivilege(t *testing.T) {
	ds := find(t, docs(t), "DaemonSet")
	pod := get(ds, "spec", "template", "spec")
	if get(pod, "hostNetwork") != true {
		t.Error("the agent must run in the host network namespace")
	}
	if get(pod, "hostPID") == true || get(pod, "hostIPC") == true {
		t.Error("hostPID/hostIPC are not needed")
	}
	if get(pod, "automountServiceAccountToken") != false {
		t.Error("the agent never calls the API: no token")
	}
	sel := get(ds, "spec", "selector", "matchLabels", "app.kubernetes.io/name")
	if sel == nil || sel != get(ds, "spec", "template", "metadata", "labels", "app.kubernetes.io/name") {
		t.Error("selector does not match the pod template's labels")
	}
	c := get(pod, "containers", 0)
	sc := get(c, "securityContext")
	if get(sc, "privileged") == true {
		t.Error("must not be privileged")
	}
	if get(sc, "allowPrivilegeEscalation") != false {
		t.Error("allowPrivilegeEscalation must be false")
	}
	var add, drop []string
	for _, x := range get(sc, "capabilities", "add").([]any) {
		add = append(add, x.(string))
	}
	for _, x := range get(sc, "capabilities", "drop").([]any) {
		drop = append(drop, x.(string))
	}
	slices.Sort(add)
	if !slices.Equal(add, []string{"NET_ADMIN", "NET_RAW"}) {
		t.Errorf("capabilities add = %v, want exactly NET_ADMIN and NET_RAW", add)
	}
	if !slices.Equal(drop, []string{"ALL"}) {
		t.Errorf("capabilities drop = %v, want ALL", drop)
	}
}

func TestDaemonSetMountsAndFlags(t *testing.T) {
	all := docs(t)
	ds := find(t, all, "DaemonSet")
	pod := get(ds, "spec", "template", "spec")
	c := get(pod, "containers", 0)

	hostPaths := map[string]string{} // volume name -> host path
	for _, v := range get(pod, "volumes").([]any) {
		if p, ok := get(v, "hostPath", "path").(string); ok {
			hostPaths[get(v, "name").(string)] = p
		}
	}
	mounts := map[string]string{} // host path -> container path
	for _, m := range get(c, "volumeMounts").([]any) {
		name := get(m, "name").(string)
		if hp, ok := hostPaths[name]; ok {
			mounts[hp] = get(m, "mountPath").(string)
		}
	}
	args := map[string]string{}
	for _, a := range get(c, "args").([]any) {
		s := a.(string)
		if !strings.HasPrefix(s, "--") {
			t.Errorf("argument %q is not a --flag", s)
			continue
		}
		name, val, _ := strings.Cut(strings.TrimPrefix(s, "--"), "=")
		if !slices.Contains(agentFlags, name) {
			t.Errorf("unknown tabby-agent flag --%s", name)
		}
		args[name] = val
	}
	for flag, host := range map[string]string{
		"cni-bin-dir":  "/opt/cni/bin",
		"cni-conf-dir": "/etc/cni/net.d",
		"state-dir":    "/var/lib/tabby",
	} {
		if mounts[host] == "" || mounts[host] != args[flag] {
			t.Errorf("--%s=%q but host %s is mounted at %q", flag, args[flag], host, mounts[host])
		}
	}
	if mounts["/proc/sys/net"] != args["sysctl-root"]+"/net" {
		t.Errorf("--sysctl-root=%q does not match the /proc/sys/net mount %q", args["sysctl-root"], mounts["/proc/sys/net"])
	}
	for _, p := range []string{"livenessProbe", "readinessProbe"} {
		port := get(c, p, "httpGet", "port")
		if port != float64(9099) || !strings.HasSuffix(args["listen"], ":9099") {
			t.Errorf("%s port %v does not match --listen=%s", p, port, args["listen"])
		}
	}

	// The config file is the ConfigMap's agent.conf: name=value lines
	// naming known flags.
	cm := find(t, all, "ConfigMap")
	conf, _ := get(cm, "data", "agent.conf").(string)
	if conf == "" {
		t.Fatal("ConfigMap has no agent.conf")
	}
	for _, line := range strings.Split(conf, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, ok := strings.Cut(line, "=")
		if !ok || !slices.Contains(agentFlags, name) {
			t.Errorf("agent.conf line %q is not name=value for a known flag", line)
		}
	}
}

// TestAgentConfLoads feeds the ConfigMap's agent.conf to tabby-agent's own
// parser, as the DaemonSet's --config does.
func TestAgentConfLoads(t *testing.T) {
	cm := find(t, docs(t), "ConfigMap")
	conf, _ := get(cm, "data", "agent.conf").(string)
	file := filepath.Join(t.TempDir(), "agent.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := agent.ParseArgs([]string{"--config=" + file, "--node=worker1"}, io.Discard)
	if err != nil {
		t.Fatalf("agent.conf: %v", err)
	}
	if f.Node != "worker1" || len(f.Pools) == 0 || f.VXLANMode == "" {
		t.Errorf("agent.conf not applied: %+v", f)
	}
}
