package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"
	"github.com/containernetworking/cni/pkg/version"
)

// execDelegator runs a delegated IPAM plugin as the CNI spec says and as
// package invoke does: the binary named by the type, found on CNI_PATH,
// the configuration on stdin, this process's environment with CNI_COMMAND
// set to the command; a failure is the plugin's error object. It is not
// package invoke because that package links OpenTelemetry and net/http,
// whose initialisation every call of the plugin paid (about 1 ms, most
// calls never delegating); invoke's only addition, a trace context taken
// from ctx, is empty in a plugin, and TRACEPARENT is inherited anyway.
type execDelegator struct{}

// textBusyRetries: a plugin binary being replaced ("text file busy") is
// retried this many times, a second apart, as invoke does.
const textBusyRetries = 5

func (execDelegator) exec(ctx context.Context, plugin, command string, conf []byte) ([]byte, error) {
	path, err := findInPath(plugin, filepath.SplitList(os.Getenv("CNI_PATH")))
	if err != nil {
		return nil, err
	}
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CNI_COMMAND=") {
			env = append(env, kv)
		}
	}
	env = append(env, "CNI_COMMAND="+command)
	for i := 0; ; i++ {
		var stdout, stderr bytes.Buffer
		c := exec.CommandContext(ctx, path)
		c.Env = env
		c.Stdin = bytes.NewReader(conf)
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		if err == nil {
			if stderr.Len() > 0 {
				_, _ = stderr.WriteTo(os.Stderr)
			}
			return stdout.Bytes(), nil
		}
		if strings.Contains(err.Error(), "text file busy") && i < textBusyRetries {
			select {
			case <-time.After(time.Second):
				continue
			case <-ctx.Done():
			}
		}
		return nil, pluginErr(err, stdout.Bytes(), stderr.Bytes())
	}
}

// pluginErr is the delegated plugin's error object, or one describing how
// it failed without one.
func pluginErr(err error, stdout, stderr []byte) error {
	e := types.Error{}
	switch {
	case len(stdout) == 0 && len(stderr) == 0:
		e.Msg = fmt.Sprintf("netplugin failed with no error message: %v", err)
	case len(stdout) == 0:
		e.Msg = fmt.Sprintf("netplugin failed: %q: %v", string(stderr), err)
	default:
		if perr := json.Unmarshal(stdout, &e); perr != nil {
			e.Msg = fmt.Sprintf("netplugin failed but error parsing its diagnostic message %q: %v", string(stdout), perr)
		}
	}
	return &e
}

// findInPath is the first regular file called plugin in paths.
func findInPath(plugin string, paths []string) (string, error) {
	if plugin == "" {
		return "", fmt.Errorf("no plugin name provided")
	}
	if strings.ContainsRune(plugin, os.PathSeparator) {
		return "", fmt.Errorf("invalid plugin name: %s", plugin)
	}
	if len(paths) == 0 {
		return "", fmt.Errorf("no paths provided")
	}
	for _, p := range paths {
		full := filepath.Join(p, plugin)
		if fi, err := os.Stat(full); err == nil && fi.Mode().IsRegular() {
			return full, nil
		}
	}
	return "", fmt.Errorf("failed to find plugin %q in path %s", plugin, paths)
}

// result decodes a delegated ADD's stdout; a result without cniVersion is
// taken to be of the configuration's version.
func delegatedResult(conf, out []byte) (types.Result, error) {
	confVersion, err := (&version.ConfigDecoder{}).Decode(conf)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("failed to unmarshal raw result: %w", err)
	}
	if raw == nil {
		raw = map[string]any{}
	}
	if v, ok := raw["cniVersion"].(string); ok && v != "" {
		return create.Create(v, out)
	}
	raw["cniVersion"] = confVersion
	fixed, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("failed to marshal fixed result: %w", err)
	}
	return create.Create(confVersion, fixed)
}

func (d execDelegator) Add(ctx context.Context, p string, c []byte) (types.Result, error) {
	out, err := d.exec(ctx, p, "ADD", c)
	if err != nil {
		return nil, err
	}
	return delegatedResult(c, out)
}

func (d execDelegator) Check(ctx context.Context, p string, c []byte) error {
	_, err := d.exec(ctx, p, "CHECK", c)
	return err
}

func (d execDelegator) Del(ctx context.Context, p string, c []byte) error {
	_, err := d.exec(ctx, p, "DEL", c)
	return err
}

func (d execDelegator) GC(ctx context.Context, p string, c []byte) error {
	_, err := d.exec(ctx, p, "GC", c)
	return err
}

func (d execDelegator) Status(ctx context.Context, p string, c []byte) error {
	_, err := d.exec(ctx, p, "STATUS", c)
	return err
}
