//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/nftables"
	"github.com/tabbynet/tabby/internal/nlbatch"
	"github.com/tabbynet/tabby/internal/sysctl"
	"github.com/tabbynet/tabby/nat"
	"github.com/tabbynet/tabby/proxyarp"
	"github.com/tabbynet/tabby/veth"
	"github.com/tabbynet/tabby/vxlan"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Netlink is the part of *netlink.Handle a Node uses: what packages vxlan
// and veth need, plus listing links (the pods' host interfaces). *netlink.Handle
// and *netlinktest.Kernel satisfy it.
type Netlink interface {
	vxlan.Netlink
	veth.Netlink
	LinkList() ([]netlink.Link, error)
	LinkByIndex(index int) (netlink.Link, error)
}

// Sysctl reads and writes /proc/sys keys (slash form, relative to
// /proc/sys) of the node's namespace. *netlinktest.Kernel has the same two
// methods.
type Sysctl interface {
	Sysctl(key string) (string, error)
	SetSysctl(key, value string) error
}

var (
	_ Netlink  = (*netlink.Handle)(nil)
	_ Sysctl   = sysctl.NS{}
	_ nat.Conn = (*nftables.Conn)(nil)
)

// Kernel is everything of the node's network namespace a Node talks to,
// one seam per subsystem. OpenKernel fills it for a real namespace;
// nodetest.NewKernel fills it with the in-memory fakes (netlinktest,
// nattest, proxyarptest), so the same Node code runs unprivileged in tests.
// A Node never reaches past these fields to the host.
//
// A Kernel is used by one Node at a time; its fields must not change while
// the Node runs.
type Kernel struct {
	// Netlink programs links, addresses, routes, neighbours and FDB.
	// Required.
	Netlink Netlink
	// Sysctl sets forwarding and, in ProxyARPKernel mode, proxy_arp.
	// Required.
	Sysctl Sysctl
	// NAT is the nftables connection of package nat. Required.
	NAT nat.Conn
	// ARPLinks and ARPListen are the userspace proxy-ARP responder's link
	// source and packet connections. Required in ProxyARPUserspace mode.
	ARPLinks  proxyarp.LinkSource
	ARPListen proxyarp.ListenFunc
	// OpenPodNS opens pods' namespaces for Node.AddPod (nil:
	// veth.OpenNetNS, the real ones).
	OpenPodNS veth.OpenFunc
	// Offloader sets vxlan's TX checksum offload. nil: the Netlink's own
	// when it has one (the fake), else the ethtool ioctl in Namespace.
	Offloader vxlan.Offloader
	// Events, if set, runs until ctx ends and sends on changed (without
	// blocking) once it is watching, and then whenever the node's links,
	// owned routes, neighbours or FDB entries may have changed, so the Node
	// resyncs at once instead of on its interval. nil: interval only.
	Events func(ctx context.Context, changed chan<- struct{}) error
	// NATWatcher reports changes to nat's nftables tables, so that a
	// flushed ruleset is restored at once, not on the resync interval.
	// nil: the NAT connection's own when it is a nat.Watcher (nattest.Conn
	// is); OpenKernel sets the kernel's.
	NATWatcher nat.Watcher
	// Namespace is the path of the namespace ("" = the caller's), for
	// logs and for the ioctl offloader.
	Namespace string

	closers []func() error
}

func (k *Kernel) validate(arp ProxyARPMode) error {
	switch {
	case k.Netlink == nil:
		return fmt.Errorf("%w: kernel: no Netlink", ErrInvalidConfig)
	case k.Sysctl == nil:
		return fmt.Errorf("%w: kernel: no Sysctl", ErrInvalidConfig)
	case k.NAT == nil:
		return fmt.Errorf("%w: kernel: no NAT connection", ErrInvalidConfig)
	case (arp == 0 || arp == ProxyARPUserspace) && (k.ARPLinks == nil || k.ARPListen == nil):
		return fmt.Errorf("%w: kernel: userspace proxy ARP needs ARPLinks and ARPListen", ErrInvalidConfig)
	}
	return nil
}

// OpenKernel opens the real kernel of the network namespace at path ("" is
// the caller's own): a netlink handle in it, /proc/sys as seen from it
// (sysctlRoot, "" for /proc/sys), an nftables connection, AF_PACKET sockets
// for proxy ARP and link and route notifications. Close releases them.
// Nothing is written.
func OpenKernel(path, sysctlRoot string) (*Kernel, error) {
	k := &Kernel{Namespace: path}
	ns := netns.None()
	var err error
	if path != "" {
		if ns, err = netns.GetFromPath(path); err != nil {
			return nil, fmt.Errorf("%w: open namespace %s: %w", ErrKernel, path, err)
		}
		k.closers = append(k.closers, ns.Close)
	}
	var h *netlink.Handle
	if path != "" {
		h, err = netlink.NewHandleAt(ns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("%w: netlink: %w", ErrKernel, err)
	}
	k.closers = append(k.closers, func() error { h.Close(); return nil })
	bc, err := nlbatch.Dial(path)
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("%w: netlink: %w", ErrKernel, err)
	}
	k.closers = append(k.closers, bc.Close)
	fd := 0
	if path != "" {
		fd = int(ns)
	}
	conn, err := nat.Dial(fd)
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("%w: nftables: %w", ErrKernel, err)
	}
	k.closers = append(k.closers, conn.CloseLasting)
	k.Netlink, k.NAT = &batchedHandle{Handle: h, conn: bc}, conn
	k.NATWatcher = nat.NewWatcher(fd)
	k.Sysctl = sysctl.NS{Path: path, Root: sysctlRoot}
	links := &proxyarp.NetlinkLinks{Netns: path}
	k.ARPLinks, k.ARPListen = links, proxyarp.ListenPacket(path)
	k.Events = func(ctx context.Context, changed chan<- struct{}) error {
		return watchKernel(ctx, ns, path != "", changed)
	}
	return k, nil
}

// batchedHandle is the netlink handle of OpenKernel: vxlan's bulk writes
// (routes, neighbours, FDB entries) go through a batching socket in the
// same namespace, many requests to a system call, the rest through the
// handle. Safe for concurrent use.
type batchedHandle struct {
	*netlink.Handle
	mu   sync.Mutex
	conn *nlbatch.Conn
}

// WriteBatch performs ws in order; see vxlan's Netlink.
func (b *batchedHandle) WriteBatch(ws []nlbatch.Write) []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conn.WriteBatch(ws)
}

// Close releases what OpenKernel opened (nothing for a Kernel built by
// hand).
func (k *Kernel) Close() error {
	var errs []error
	for i := len(k.closers) - 1; i >= 0; i-- {
		errs = append(errs, k.closers[i]())
	}
	k.closers = nil
	return errors.Join(errs...)
}

// watchKernel turns link updates, updates of routes with RouteProtocol
// (vxlan's and the pods' /32s) and deletions of permanent neighbours and FDB
// entries (vxlan's) into "changed" hints, so that what someone else removes
// is put back at once rather than on the resync interval.
func watchKernel(ctx context.Context, ns netns.NsHandle, inNS bool, changed chan<- struct{}) error {
	updates := make(chan netlink.LinkUpdate, 64)
	errc := make(chan error, 1)
	opts := netlink.LinkSubscribeOptions{ErrorCallback: func(err error) {
		select {
		case errc <- err:
		default:
		}
	}}
	if inNS {
		opts.Namespace = &ns
	}
	if err := netlink.LinkSubscribeWithOptions(updates, ctx.Done(), opts); err != nil {
		return fmt.Errorf("link notifications: %w", err)
	}
	routes := make(chan netlink.RouteUpdate, 64)
	ropts := netlink.RouteSubscribeOptions{Namespace: opts.Namespace, ErrorCallback: opts.ErrorCallback}
	if err := netlink.RouteSubscribeWithOptions(routes, ctx.Done(), ropts); err != nil {
		return fmt.Errorf("route notifications: %w", err)
	}
	neighs := make(chan netlink.NeighUpdate, 64)
	nopts := netlink.NeighSubscribeOptions{Namespace: opts.Namespace, ErrorCallback: opts.ErrorCallback}
	if err := netlink.NeighSubscribeWithOptions(neighs, ctx.Done(), nopts); err != nil {
		return fmt.Errorf("neighbour notifications: %w", err)
	}
	kick := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	kick() // what changed before the subscriptions were in place
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("notifications: %w", err)
		case u, ok := <-neighs:
			if !ok {
				return errors.New("neighbour notifications ended")
			}
			// vxlan's permanent neighbours and FDB entries deleted by
			// someone else (ARP churn of other entries is ignored).
			if u.Type == unix.RTM_DELNEIGH && u.State&netlink.NUD_PERMANENT != 0 {
				kick()
			}
		case r, ok := <-routes:
			if !ok {
				return errors.New("route notifications ended")
			}
			if r.Protocol == RouteProtocol {
				kick()
			}
		case u, ok := <-updates:
			if !ok {
				return errors.New("link notifications ended")
			}
			_ = u // any link may matter (uplink, VXLAN devices, pods'): the Node coalesces
			kick()
		}
	}
}
