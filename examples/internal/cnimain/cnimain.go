// Package cnimain is the main function of the tabby CNI plugin binaries:
// tabby (bolt only, the default, quick to start) and tabby-etcd (every
// store URL, etcd included). tabby hands a call whose configuration names a
// store it cannot open (etcd://, a bolt URL with parameters) to tabby-etcd,
// unchanged: same environment, same configuration on stdin, same process
// (exec). Keeping the etcd client and gRPC out of the default binary saves
// their package initialisation (about 2.5 ms per CNI call, see
// BENCHMARKS.md) on every pod start of a one-host bolt installation. It owns
// nothing.
package cnimain

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/examples/internal/cni"
	"github.com/tabbynet/tabby/examples/internal/storeurl"
)

// FullPlugin is the binary tabby hands etcd stores to.
const FullPlugin = "tabby-etcd"

// HandoffEnv is set (to the handing binary's path) in the environment of a
// handed-off call; a binary that finds it set never hands off again.
const HandoffEnv = "TABBY_CNI_HANDOFF"

// stallEnv is for tests only: "<point>:<file>" makes ADD create file at
// point ("assigned" or "plumbed") and then wait to be killed.
const stallEnv = "TABBY_CNI_TEST_STALL"

// Main runs the tabby plugin with stores opened by opts. Unless opts.DSN is
// set (the binary opens every store itself), a call whose datastore needs
// DSN is handed to FullPlugin, found next to this executable or on
// CNI_PATH; if there is none the call fails with code 7 (invalid network
// configuration) saying so, before anything is done.
func Main(about string, opts *storeurl.Options) {
	var handoffErr error
	if opts.DSN == nil {
		handoffErr = handOff(FullPlugin)
	}
	env := cni.Env{OpenStore: func(ctx context.Context, url string) (datastore.Store, error) {
		if handoffErr != nil && storeurl.NeedsDSN(url) {
			return nil, handoffErr
		}
		return storeurl.Open(ctx, url, opts)
	}}
	if point, file, ok := strings.Cut(os.Getenv(stallEnv), ":"); ok {
		env.Hook = func(p string) {
			if p == point {
				_ = os.WriteFile(file, []byte(p), 0o600)
				time.Sleep(10 * time.Minute)
			}
		}
	}
	// tabby refuses the host's own namespace itself, before it allocates or
	// writes anything (code 107); skel's own check runs only after the
	// command has done its work (an ADD printed its result, then code 8;
	// every DEL failed with 8 after releasing), so it is switched off.
	os.Setenv(cni.NetNSOverrideEnv, "1")
	skel.PluginMainFuncs(cni.Funcs(cni.New(env), os.Stdout), cni.VersionInfo(), about)
}

// handOff execs the plugin named full when this call's configuration names
// a store that needs it; it returns only when it does not (nil), or with
// the reason it could not (wrapping datastore.ErrInvalid, reported when the
// store is opened). Either way os.Stdin then reads the configuration from
// its start.
func handOff(full string) error {
	switch os.Getenv("CNI_COMMAND") {
	case "ADD", "DEL", "CHECK", "GC", "STATUS":
	default:
		return nil // VERSION, or not run as a plugin: stdin is not ours to read
	}
	if by := os.Getenv(HandoffEnv); by != "" {
		// A loop (tabby installed under the full plugin's name): this
		// call came from a hand-off already.
		return fmt.Errorf("%w: this datastore (etcd://, or a bolt URL with parameters) needs the %s plugin, but %s handed the call to this binary, which cannot open it either", datastore.ErrInvalid, full, by)
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return nil // skel reads stdin again and reports it
	}
	in, err := rewind(data)
	if err != nil {
		// Nothing to hand the configuration over with: this binary does
		// the call (and refuses a store it cannot open).
		os.Stdin = readerFile(data)
		return fmt.Errorf("%w: cannot hand the call to %s: configuration on stdin: %w", datastore.ErrUnavailable, full, err)
	}
	os.Stdin = in
	var conf struct {
		Datastore string `json:"datastore"`
	}
	if json.Unmarshal(data, &conf) != nil || !storeurl.NeedsDSN(conf.Datastore) {
		return nil
	}
	path, err := findPlugin(full)
	if err != nil {
		return fmt.Errorf("%w: this datastore (etcd://, or a bolt URL with parameters) is opened by the %s plugin, which tabby hands the call to; install it next to tabby or on CNI_PATH (%w)", datastore.ErrInvalid, full, err)
	}
	err = execPlugin(path, in)
	return fmt.Errorf("%w: exec %s: %w", datastore.ErrUnavailable, path, err)
}

// findPlugin looks for name next to this executable, then on CNI_PATH.
func findPlugin(name string) (string, error) {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	for _, d := range filepath.SplitList(os.Getenv("CNI_PATH")) {
		if d != "" && !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %s", strings.Join(dirs, ", "))
}

// readerFile is a pipe that yields data (fed by a goroutine).
func readerFile(data []byte) *os.File {
	r, w, err := os.Pipe()
	if err != nil {
		return os.Stdin
	}
	go func() {
		w.Write(data)
		w.Close()
	}()
	return r
}
