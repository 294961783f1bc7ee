//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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
		return watchKernel(ctx, ns, path != "", changed, watchOptions{})
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
//
// A burst of changes (the first sync at 5,000 peers writes 15,000
// entries, and each is announced) can overrun a notification socket: the
// kernel drops what does not fit and the next read fails with ENOBUFS.
// What was dropped is unknown, so an overrun is a hint like any other
// (the sync that follows reads the whole state) and the subscriptions are
// made again; only failing to subscribe ends the watch.
func watchKernel(ctx context.Context, ns netns.NsHandle, inNS bool, changed chan<- struct{}, o watchOptions) error {
	kick := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	for {
		err := subscribeKernel(ctx, ns, inNS, kick, o.rcvBuf)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errSubscribe) {
			return err
		}
		if o.overrun != nil {
			o.overrun(err)
		}
		kick()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// watchOptions tune watchKernel for tests: the notification sockets'
// receive buffer (0: eventRcvBuf) and a callback for every overrun.
type watchOptions struct {
	rcvBuf  int
	overrun func(error)
}

// eventRcvBuf is the receive buffer of each notification socket: room for
// about 20,000 route notifications, so that a first sync at 5,000 peers
// does not overrun it (forced past net.core.rmem_max with CAP_NET_ADMIN,
// else capped by it).
const eventRcvBuf = 4 << 20

var errSubscribe = errors.New("subscribe")

// subscribeKernel subscribes to link, route and neighbour notifications and
// kicks on the ones that matter until ctx ends (nil) or one of the
// subscriptions fails (its error; wrapping errSubscribe when it could not
// be made).
func subscribeKernel(ctx context.Context, ns netns.NsHandle, inNS bool, kick func(), rcvBuf int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends this generation's subscriptions
	if rcvBuf == 0 {
		rcvBuf = eventRcvBuf
	}
	var nsh *netns.NsHandle
	if inNS {
		nsh = &ns
	}
	errc := make(chan error, 1)
	onErr := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	updates := make(chan netlink.LinkUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(updates, ctx.Done(), netlink.LinkSubscribeOptions{
		Namespace: nsh, ErrorCallback: onErr, ReceiveBufferSize: rcvBuf, ReceiveBufferForceSize: true,
	}); err != nil {
		return fmt.Errorf("%w: link notifications: %w", errSubscribe, err)
	}
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.RouteSubscribeWithOptions(routes, ctx.Done(), netlink.RouteSubscribeOptions{
		Namespace: nsh, ErrorCallback: onErr, ReceiveBufferSize: rcvBuf, ReceiveBufferForceSize: true,
	}); err != nil {
		return fmt.Errorf("%w: route notifications: %w", errSubscribe, err)
	}
	neighs := make(chan netlink.NeighUpdate, 64)
	if err := netlink.NeighSubscribeWithOptions(neighs, ctx.Done(), netlink.NeighSubscribeOptions{
		Namespace: nsh, ErrorCallback: onErr, ReceiveBufferSize: rcvBuf, ReceiveBufferForceSize: true,
	}); err != nil {
		return fmt.Errorf("%w: neighbour notifications: %w", errSubscribe, err)
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
