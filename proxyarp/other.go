//go:build !linux

package proxyarp

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
)

// Netlink is the part of *netlink.Handle the kernel LinkSource uses.
type Netlink interface {
	LinkList() ([]netlink.Link, error)
}

// NetlinkLinks is the kernel LinkSource, which exists only on Linux: here
// Links and Watch return errors wrapping errors.ErrUnsupported. Safe for
// concurrent use.
type NetlinkLinks struct {
	// Netns is the namespace path (empty: the caller's namespace).
	Netns string
	// Handle, when set, is used for listing instead of a handle opened in
	// Netns for each call.
	Handle Netlink
}

func kernelLinks(path string) LinkSource { return &NetlinkLinks{Netns: path} }

// Links returns an error wrapping errors.ErrUnsupported.
func (k *NetlinkLinks) Links() ([]Link, error) {
	return nil, fmt.Errorf("proxyarp: list links: %w", errors.ErrUnsupported)
}

// Watch returns an error wrapping errors.ErrUnsupported.
func (k *NetlinkLinks) Watch(ctx context.Context, changed chan<- struct{}) error {
	return fmt.Errorf("proxyarp: watch links: %w", errors.ErrUnsupported)
}

// RequestFilter returns errors.ErrUnsupported: packet sockets are Linux
// only.
func RequestFilter() ([]bpf.RawInstruction, error) { return nil, errors.ErrUnsupported }

// ListenPacket returns a ListenFunc that fails: packet sockets are Linux only.
func ListenPacket(string) ListenFunc {
	return func(context.Context, Link) (Conn, error) { return nil, errors.ErrUnsupported }
}

func setRealtime(int) error { return errors.ErrUnsupported }
