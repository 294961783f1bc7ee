//go:build linux

package nettools

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NetnsDir is where named namespaces are bound (as by `ip netns add`).
const NetnsDir = "/var/run/netns"

// NS is an open named network namespace with a netlink handle in it.
// Its Handle and NL may be used concurrently; Close once, when done.
type NS struct {
	Name   string
	Path   string
	Handle netns.NsHandle
	NL     *netlink.Handle
}

// NewNS creates the named namespace name (with lo up). The calling
// thread never changes namespace: creation happens on a locked thread that
// is discarded.
func NewNS(name string) (*NS, error) {
	errc := make(chan error, 1)
	var h netns.NsHandle
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		var err error
		h, err = netns.NewNamed(name)
		errc <- err
	}()
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	n := &NS{Name: name, Path: filepath.Join(NetnsDir, name), Handle: h}
	var err error
	if n.NL, err = netlink.NewHandleAt(h); err != nil {
		n.Close()
		return nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	lo, err := n.NL.LinkByName("lo")
	if err == nil {
		err = n.NL.LinkSetUp(lo)
	}
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("lo up in %s: %w", name, err)
	}
	return n, nil
}

// Close releases the handles (the namespace stays until DeleteNS).
func (n *NS) Close() {
	if n.NL != nil {
		n.NL.Close()
		n.NL = nil
	}
	if n.Handle.IsOpen() {
		n.Handle.Close()
	}
}

// DeleteNS removes the named namespace; a missing one is not an error.
// The namespace (and every interface in it) goes away once nothing holds
// it open any more.
func DeleteNS(name string) error {
	if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

// ListNS returns the named namespaces whose name starts with prefix.
func ListNS(prefix string) ([]string, error) {
	ents, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
