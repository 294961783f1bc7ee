//go:build linux

package proxyarp

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Netlink is the part of *netlink.Handle the kernel LinkSource uses.
type Netlink interface {
	LinkList() ([]netlink.Link, error)
}

var _ Netlink = (*netlink.Handle)(nil)

// NetlinkLinks is the kernel LinkSource: it lists interfaces over netlink
// and follows RTM_NEWLINK/RTM_DELLINK notifications. Safe for concurrent
// use.
type NetlinkLinks struct {
	// Netns is the namespace path (empty: the caller's namespace).
	Netns string
	// Handle, when set, is used for listing instead of a handle opened in
	// Netns for each call.
	Handle Netlink
}

func kernelLinks(path string) LinkSource { return &NetlinkLinks{Netns: path} }

func openNS(path string) (netns.NsHandle, error) {
	if path == "" {
		return netns.Get()
	}
	return netns.GetFromPath(path)
}

// Links lists the namespace's interfaces.
func (k *NetlinkLinks) Links() ([]Link, error) {
	h := k.Handle
	if h == nil {
		ns, err := openNS(k.Netns)
		if err != nil {
			return nil, fmt.Errorf("open netns %q: %w", k.Netns, err)
		}
		defer ns.Close()
		nh, err := netlink.NewHandleAt(ns)
		if err != nil {
			return nil, fmt.Errorf("netlink handle: %w", err)
		}
		defer nh.Close()
		h = nh
	}
	ls, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		a := l.Attrs()
		if a.EncapType != "" && a.EncapType != "ether" {
			continue
		}
		out = append(out, Link{Index: a.Index, Name: a.Name, MAC: a.HardwareAddr})
	}
	return out, nil
}

var errSubscription = errors.New("proxyarp: link subscription ended")

// Watch subscribes to link notifications in the namespace.
func (k *NetlinkLinks) Watch(ctx context.Context, changed chan<- struct{}) error {
	ns, err := openNS(k.Netns)
	if err != nil {
		return fmt.Errorf("open netns %q: %w", k.Netns, err)
	}
	defer ns.Close()
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	errc := make(chan error, 1)
	opts := netlink.LinkSubscribeOptions{
		Namespace: &ns,
		ErrorCallback: func(err error) {
			select {
			case errc <- err:
			default:
			}
		},
	}
	if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
		return fmt.Errorf("subscribe to links: %w", err)
	}
	defer func() {
		close(done)
		for range updates { // the receiver closes it once its socket is closed
		}
	}()
	notify(changed)
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-updates:
			if !ok {
				select {
				case err := <-errc:
					return fmt.Errorf("%w: %w", errSubscription, err)
				default:
					return errSubscription
				}
			}
			notify(changed)
		}
	}
}
