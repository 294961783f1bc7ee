//go:build linux

package nsenter

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on a dedicated, locked OS thread that has joined the network
// namespace ns. Files and sockets fn opens stay bound to ns after Do returns.
// The calling goroutine's thread is never touched: if the dedicated thread
// cannot be returned to its original namespace it is discarded by the runtime.
func Do(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("nsenter: current namespace: %w", err)
			return // thread stays locked and dies with this goroutine
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("nsenter: setns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// DoPath is Do for a namespace named by a path such as /var/run/netns/x or
// /proc/<pid>/ns/net. An empty path runs fn in the caller's namespace (still
// on a dedicated thread).
func DoPath(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("nsenter: open %s: %w", path, err)
	}
	defer ns.Close()
	return Do(ns, fn)
}
