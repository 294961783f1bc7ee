//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/tabbynet/tabby/examples/internal/agentflags"
	"github.com/tabbynet/tabby/node"
)

// ConflistName is the file the agent writes in --cni-conf-dir.
const ConflistName = "10-tabby.conflist"

// plugins are the binaries installed in --cni-bin-dir (tabby hands calls
// naming an etcd store to tabby-etcd).
var plugins = []string{"tabby", "tabby-etcd", "tabby-ipam"}

// installCNI copies the plugins found next to this executable into
// --cni-bin-dir and writes the conflist into --cni-conf-dir, each
// atomically (temporary file, then rename), as calico-node's install-cni.
// The etcd TLS files are copied beside the conflist (tabby-tls/), since the
// plugins run on the host where the agent's paths do not exist; a conf dir
// under /host/ is the host's own directory without that prefix.
func installCNI(f *agentflags.Flags, cfg node.Config, storeURL string, log *slog.Logger) error {
	if f.CNIBinDir != "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		dir := filepath.Dir(exe)
		for _, p := range plugins {
			src := filepath.Join(dir, p)
			if err := copyFile(src, filepath.Join(f.CNIBinDir, p), 0o755); err != nil {
				return fmt.Errorf("plugin %s (expected next to %s): %w", p, exe, err)
			}
		}
		log.Info("installed CNI plugins", "dir", f.CNIBinDir, "plugins", plugins)
	}
	if f.CNIConfDir == "" {
		return nil
	}
	hostConfDir := f.CNIConfDir
	if rest, ok := strings.CutPrefix(hostConfDir, "/host/"); ok {
		hostConfDir = "/" + rest
	}
	dsURL := storeURL
	if u, err := url.Parse(storeURL); err == nil && u.Scheme == "etcd" {
		q := u.Query()
		for _, k := range []string{"ca", "cert", "key"} {
			if v := q.Get(k); v != "" {
				if err := copyFile(v, filepath.Join(f.CNIConfDir, "tabby-tls", k+".pem"), 0o600); err != nil {
					return fmt.Errorf("etcd %s: %w", k, err)
				}
				q.Set(k, filepath.Join(hostConfDir, "tabby-tls", k+".pem"))
			}
		}
		u.RawQuery = q.Encode()
		dsURL = u.String()
	}
	var pools []string
	for _, p := range cfg.Pools {
		pools = append(pools, p.String())
	}
	ipamConf := map[string]any{"type": "tabby-ipam"}
	if len(pools) > 0 {
		ipamConf["pools"] = pools
		ipamConf["blockSize"] = cfg.BlockSize
		for _, p := range cfg.Pools {
			if p.Addr().Is6() {
				ipamConf["blockSize6"] = cfg.BlockSize6
			}
		}
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "k8s-pod-network",
		"plugins": []any{map[string]any{
			"type": "tabby", "datastore": dsURL, "stateDir": cfg.StateDir,
			"proxyARP": cfg.ProxyARP.String(), "ipam": ipamConf,
		}},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(f.CNIConfDir, ConflistName), append(b, '\n'), 0o644); err != nil {
		return err
	}
	log.Info("installed CNI conflist", "file", filepath.Join(f.CNIConfDir, ConflistName))
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	b, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	return writeAtomic(dst, b, mode)
}

func writeAtomic(dst string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
