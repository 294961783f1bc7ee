//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/nat"
	"github.com/tabbynet/tabby/proxyarp"
	"github.com/tabbynet/tabby/reflector"
	"github.com/tabbynet/tabby/veth"
	"github.com/tabbynet/tabby/vxlan"
	"github.com/vishvananda/netlink"
)

// Node is one node of a tabby cluster: it ties ipam, the reflector, vxlan,
// nat and proxy ARP together on one Kernel and one datastore. Create it
// with New and run it with Run, once. Its methods are safe for concurrent
// use while Run runs.
type Node struct {
	cfg Config
	log *slog.Logger
	ipm *ipam.IPAM
	k   *Kernel

	mu      sync.Mutex
	stats   Stats
	ready   chan struct{}
	running bool
	nt      *nat.Manager
	arp     *proxyarp.Responder
	ann     *reflector.Announcer
	pl      *veth.Plumber
	pokes   chan struct{}

	// Owned by Run's goroutine.
	vx      *vxlan.Manager // IPv4; nil in mode Never or without IPv4
	vx6     *vxlan.Manager // IPv6 (vxlan-v6.calico); nil without IPv6
	v4, v6  bool           // the families this node runs
	tunnel6 netip.Addr
	direct  *directRoutes // mode Never
	refl    *reflector.Reflector
	snap    *snapshotValidator // the reflector's Validator; usage reads its listing
	peers   []reflector.Announcement
	pools   []ipam.Pool
	blocks  []netip.Prefix
	addrs   []netip.Addr // borrowed from other nodes' blocks
	tunnel  netip.Addr
	mtu     int
	// natSynced: nat's tables were written once by this run.
	natSynced bool
	// lastBorrowCheck rate-limits re-reading IPAM for unannounced pod
	// addresses.
	lastBorrowCheck time.Time
}

// Stats is a snapshot of a Node's state and counters. A plain value owned
// by the caller.
type Stats struct {
	Node       string
	TunnelAddr netip.Addr
	TunnelMAC  net.HardwareAddr
	// TunnelAddr6 and TunnelMAC6 are the IPv6 VTEP's (vxlan-v6.calico),
	// zero without IPv6.
	TunnelAddr6 netip.Addr
	TunnelMAC6  net.HardwareAddr
	// Blocks are the node's affine blocks, Borrowed the addresses its pods
	// hold in other nodes' blocks (both announced).
	Blocks   []netip.Prefix
	Borrowed []netip.Addr
	MTU      int
	// Peers are the live, validated peers' names.
	Peers []string
	// Syncs counts syncs; SyncErrors those that failed.
	Syncs, SyncErrors uint64
	SyncSeconds       float64 // total time spent in syncs
	LastSync          time.Duration
	LastSyncWrites    int
	KernelWrites      uint64
	// NATRestores counts syncs caused by a change to nat's table made by
	// someone else.
	NATRestores uint64
	// Refused says what the peers refuse of this node's announcement (the
	// Validator's verdict: a block or address IPAM does not give it), ""
	// when nothing.
	Refused      string
	DatastoreOK  bool
	Synced       bool
	LastError    string
	IPAMCapacity int // addresses in the node's blocks
	IPAMInUse    int
	ARP          proxyarp.Stats
	ProxyARPMode ProxyARPMode
	VXLANMode    VXLANMode
}

// New checks cfg and returns a Node that has not started. Nothing is
// written to the kernel or the datastore.
func New(cfg Config) (*Node, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := c.Logger.With("node", c.Name)
	m, err := ipam.New(c.Store, &ipam.Config{Logger: log, Now: c.Now})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &Node{cfg: c, log: log, ipm: m, k: c.Kernel, ready: make(chan struct{}), pokes: make(chan struct{}, 1)}, nil
}

// IPAM returns the node's IPAM (for tools and tests).
func (n *Node) IPAM() *ipam.IPAM { return n.ipm }

// Ready reports nil when the datastore answers and the first sync is done,
// else why not (wrapping ErrNotStarted or ErrDatastore).
func (n *Node) Ready() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case !n.stats.Synced:
		return fmt.Errorf("%w: first sync not done", ErrNotStarted)
	case !n.stats.DatastoreOK:
		return fmt.Errorf("%w: %s", ErrDatastore, n.stats.LastError)
	}
	return nil
}

// Started is closed once the first sync is done.
func (n *Node) Started() <-chan struct{} { return n.ready }

// Stats returns a snapshot.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	s := n.stats
	s.Blocks = slices.Clone(s.Blocks)
	s.Borrowed = slices.Clone(s.Borrowed)
	s.Peers = slices.Clone(s.Peers)
	s.TunnelMAC = slices.Clone(s.TunnelMAC)
	s.TunnelMAC6 = slices.Clone(s.TunnelMAC6)
	arp := n.arp
	n.mu.Unlock()
	if arp != nil {
		s.ARP = arp.Stats()
	}
	s.ProxyARPMode, s.VXLANMode = n.cfg.ProxyARP, n.cfg.VXLANMode
	return s
}

// NATRules returns the node's nftables table as the kernel holds it.
func (n *Node) NATRules(ctx context.Context) (string, error) {
	n.mu.Lock()
	nt := n.nt
	n.mu.Unlock()
	if nt == nil {
		return "", ErrNotStarted
	}
	return nt.Dump(ctx)
}

// SetWithdrawOnStop changes what the end of Run does (see
// Config.WithdrawOnStop).
func (n *Node) SetWithdrawOnStop(withdraw bool) {
	n.mu.Lock()
	n.cfg.WithdrawOnStop = withdraw
	n.mu.Unlock()
}

// Run starts the node and serves it until ctx ends, then stops the
// announcement (kept for the hold time, or withdrawn with WithdrawOnStop)
// and returns nil. The dataplane is left in place either way, so pods keep
// talking while a new run starts. A start-up failure is returned at once
// (wrapping ErrDatastore, ErrKernel or ErrInvalidConfig), with nothing
// announced.
func (n *Node) Run(ctx context.Context) error {
	n.mu.Lock()
	if n.running {
		n.mu.Unlock()
		return ErrRunning
	}
	n.running = true
	n.mu.Unlock()
	defer n.close()
	if err := n.start(ctx); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	snaps, err := n.refl.Watch(runCtx, n.cfg.Name)
	if err != nil {
		n.stop()
		return fmt.Errorf("%w: watch peers: %w", ErrDatastore, err)
	}
	kick := make(chan struct{}, 1)
	natKick := make(chan struct{}, 1)
	n.background(runCtx, &wg, "kernel events", n.k.Events, kick)
	n.background(runCtx, &wg, "nftables notifications", n.nt.Watch, natKick)
	if n.cfg.ProxyARP == ProxyARPUserspace {
		r, err := proxyarp.New(&proxyarp.Config{
			Links: n.k.ARPLinks, Listen: n.k.ARPListen, Logger: n.log,
			Selector: proxyarp.Selector{Prefix: HostPrefix},
		})
		if err != nil {
			n.stop()
			return fmt.Errorf("%w: proxy arp: %w", ErrKernel, err)
		}
		n.mu.Lock()
		n.arp = r
		n.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(runCtx); err != nil {
				n.log.Error("proxy arp", "err", err)
			}
		}()
	}

	// The first sync waits for the first set of peers, so that it does not
	// remove routes to live peers (a restart writes nothing).
	select {
	case s := <-snaps:
		n.peers = s.Peers
	case <-ctx.Done():
		n.stop()
		return nil
	}
	n.sync(ctx, "start")
	n.snap.forget()
	close(n.ready)

	resync := time.NewTicker(n.cfg.ResyncInterval)
	defer resync.Stop()
	health := time.NewTicker(n.cfg.HealthInterval)
	defer health.Stop()
	for {
		select {
		case <-ctx.Done():
			n.stop()
			return nil
		case s, ok := <-snaps:
			if !ok {
				snaps = nil
				continue
			}
			n.peers = s.Peers
			n.sync(ctx, "peers")
		case <-kick:
			n.settle(ctx, kick)
			n.sync(ctx, "link")
		case <-natKick:
			// Also signalled after nat's own writes: that sync finds
			// nothing to do and writes nothing.
			n.settle(ctx, natKick)
			n.sync(ctx, "nat")
		case <-n.pokes:
			n.refresh(ctx)
			n.sync(ctx, "pod")
		case <-health.C:
			n.probe(ctx)
		case <-resync.C:
			n.refresh(ctx)
			n.sync(ctx, "interval")
		}
	}
}

// settle lets a burst of events (a pod's ADD makes several) pass before
// one sync.
func (n *Node) settle(ctx context.Context, ch <-chan struct{}) {
	t := time.NewTimer(30 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ch:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// background runs an event source until ctx ends; when it fails the node
// falls back to its intervals (logged).
func (n *Node) background(ctx context.Context, wg *sync.WaitGroup, what string, f func(context.Context, chan<- struct{}) error, ch chan<- struct{}) {
	if f == nil {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := f(ctx, ch); err != nil && ctx.Err() == nil {
			n.log.Warn(what+" unavailable: resync on the interval only", "err", err)
		}
	}()
}

func (n *Node) start(ctx context.Context) error {
	c := n.cfg
	up, err := n.k.Netlink.LinkByName(c.Uplink)
	if err != nil {
		return fmt.Errorf("%w: uplink %s: %w", ErrKernel, c.Uplink, err)
	}
	sctx, cancel := context.WithTimeout(ctx, c.StartTimeout)
	defer cancel()
	poolNames, err := n.ensurePools(sctx)
	if err != nil {
		return err
	}
	pools, err := n.ipm.ListPools(sctx)
	if err != nil {
		return dsErr("list pools", err)
	}
	// A family runs when the node has an underlay address of it and the
	// cluster a pool of it (dual stack: both).
	var names4, names6 []string
	has4, has6 := false, false
	for _, p := range pools {
		if len(poolNames) > 0 && !slices.Contains(poolNames, p.Name) {
			continue
		}
		if p.CIDR.Addr().Is4() {
			has4, names4 = true, append(names4, p.Name)
		} else {
			has6, names6 = true, append(names6, p.Name)
		}
	}
	n.mu.Lock()
	n.v4, n.v6 = has4 && c.NodeIP.IsValid(), has6 && c.NodeIPv6.IsValid()
	n.mu.Unlock()
	if !n.v4 && !n.v6 {
		return fmt.Errorf("%w: no pool of the node's address families (node %v %v)", ErrInvalidConfig, c.NodeIP, c.NodeIPv6)
	}
	n.mtu = c.MTU
	if n.mtu == 0 {
		n.mtu = up.Attrs().MTU - vxlan.Overhead
		if n.v6 {
			n.mtu = up.Attrs().MTU - vxlan.OverheadV6 // pods' MTU fits both tunnels
		}
	}
	if n.v4 {
		if n.tunnel, err = n.ipm.AssignTunnelAddress(sctx, c.Name, ipam.IPv4, names4...); err != nil {
			return dsErr("assign tunnel address", err)
		}
	}
	if n.v6 {
		if n.tunnel6, err = n.ipm.AssignTunnelAddress(sctx, c.Name, ipam.IPv6, names6...); err != nil {
			return dsErr("assign IPv6 tunnel address", err)
		}
	}
	if err := n.refreshStore(sctx); err != nil {
		return dsErr("read blocks", err)
	}
	// One listing of the blocks serves the node's IPAM figures, the check
	// of its own announcement and the watchers' first validation of every
	// peer.
	n.snap = &snapshotValidator{m: n.ipm, now: time.Now}
	n.usage(sctx)
	if c.StateDir != "" {
		if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
			return fmt.Errorf("node: state dir: %w", err)
		}
		if err := writeIfChanged(filepath.Join(c.StateDir, "nodename"), c.Name); err != nil {
			return err
		}
		if err := writeIfChanged(filepath.Join(c.StateDir, "mtu"), strconv.Itoa(n.mtu)); err != nil {
			return err
		}
	}
	if _, err := n.forwarding(); err != nil {
		return fmt.Errorf("%w: enable forwarding: %w", ErrKernel, err)
	}
	if c.VXLANMode == VXLANNever {
		n.direct = &directRoutes{nl: n.k.Netlink, uplink: c.Uplink, local: c.NodeIP.Masked()}
	} else {
		mode := vxlan.ModeAlways
		if c.VXLANMode == VXLANCrossSubnet {
			mode = vxlan.ModeCrossSubnet
		}
		if n.v4 {
			n.vx, err = vxlan.New(n.k.Netlink, &vxlan.Config{
				Parent: c.Uplink, LocalAddr: c.NodeIP, TunnelAddr: n.tunnel, NodeName: c.Name,
				MTU: c.MTU, Mode: mode, Namespace: n.k.Namespace, Offloader: n.k.Offloader,
				RouteProtocol: RouteProtocol, Logger: n.log,
			})
			if err != nil {
				return fmt.Errorf("%w: vxlan: %w", ErrInvalidConfig, err)
			}
		}
		if n.v6 {
			n.vx6, err = vxlan.New(n.k.Netlink, &vxlan.Config{
				Parent: c.Uplink, LocalAddr: c.NodeIPv6, TunnelAddr: n.tunnel6, NodeName: c.Name,
				MAC: vxlan.MACFromName(c.Name + "/v6"), MTU: c.MTU, Mode: mode,
				Namespace: n.k.Namespace, Offloader: n.k.Offloader, RouteProtocol: RouteProtocol, Logger: n.log,
			})
			if err != nil {
				return fmt.Errorf("%w: vxlan v6: %w", ErrInvalidConfig, err)
			}
		}
	}
	ncfg := &nat.Config{Logger: n.log, Watcher: n.k.NATWatcher}
	if c.VXLANMode == VXLANNever {
		ncfg.DisableVXLANGuard = true
	}
	if n.vx != nil {
		ncfg.TunnelInterface = n.vx.Device()
	}
	if n.vx6 != nil {
		ncfg.TunnelInterface6 = n.vx6.Device()
	}
	nt, err := nat.New(n.k.NAT, ncfg)
	if err != nil {
		return fmt.Errorf("%w: nat: %w", ErrInvalidConfig, err)
	}
	n.mu.Lock()
	n.nt = nt
	n.mu.Unlock()

	r, err := reflector.New(c.Store, &reflector.Config{
		HoldTime: c.HoldTime, Validator: n.snap, Logger: n.log,
	})
	if err != nil {
		return fmt.Errorf("%w: reflector: %w", ErrInvalidConfig, err)
	}
	ann, err := r.Announce(sctx, n.announcement())
	if err != nil {
		return dsErr("announce", err)
	}
	n.refl = r
	n.mu.Lock()
	n.ann = ann
	n.stats.Node = c.Name
	n.stats.TunnelAddr = n.tunnel
	n.stats.TunnelMAC = n.tunnelMAC()
	n.stats.TunnelAddr6 = n.tunnel6
	if n.vx6 != nil {
		n.stats.TunnelMAC6 = n.vx6.MAC()
	}
	n.stats.MTU = n.mtu
	n.stats.DatastoreOK = true
	n.mu.Unlock()
	n.log.Info("started", "tunnel", n.tunnel, "tunnel6", n.tunnel6, "blocks", n.blocks, "mtu", n.mtu, "mode", c.VXLANMode)
	return nil
}

// dsErr wraps a datastore-side failure of the start: ErrDatastore when
// the store did not answer, else the error as it is.
func dsErr(op string, err error) error {
	if errors.Is(err, datastore.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s: %w", ErrDatastore, op, err)
	}
	return fmt.Errorf("node: %s: %w", op, err)
}

// PoolName is the name a Node (and tabby's CNI plugin) gives a pool it
// creates for cidr: "10.244.0.0-16".
func PoolName(cidr netip.Prefix) string {
	return strings.ReplaceAll(cidr.Addr().String(), ":", "-") + "-" + strconv.Itoa(cidr.Bits())
}

func (n *Node) ensurePools(ctx context.Context) ([]string, error) {
	existing, err := n.ipm.ListPools(ctx)
	if err != nil {
		return nil, dsErr("list pools", err)
	}
	cidrs := n.cfg.Pools
	if len(cidrs) == 0 {
		if len(existing) > 0 {
			return nil, nil
		}
		cidrs = []netip.Prefix{DefaultPool()}
	}
	var names []string
	for _, cidr := range cidrs {
		if i := slices.IndexFunc(existing, func(p ipam.Pool) bool { return p.CIDR == cidr }); i >= 0 {
			names = append(names, existing[i].Name)
			continue
		}
		name := "default"
		if len(n.cfg.Pools) > 0 {
			name = PoolName(cidr)
		}
		bs := n.cfg.BlockSize
		if cidr.Addr().Is6() {
			bs = n.cfg.BlockSize6
		}
		err := n.ipm.CreatePool(ctx, ipam.Pool{
			Name: name, CIDR: cidr, BlockSize: bs,
			NATOutgoing: n.cfg.NATOutgoing, VXLANMode: ipamMode(n.cfg.VXLANMode),
		})
		if err != nil && !errors.Is(err, ipam.ErrPoolExists) {
			if errors.Is(err, ipam.ErrPoolOverlap) || errors.Is(err, ipam.ErrInvalid) {
				return nil, fmt.Errorf("%w: pool %v: %w", ErrInvalidConfig, cidr, err)
			}
			return nil, dsErr("create pool "+cidr.String(), err)
		}
		names = append(names, name)
	}
	return names, nil
}

func ipamMode(m VXLANMode) ipam.VXLANMode {
	switch m {
	case VXLANCrossSubnet:
		return ipam.VXLANCrossSubnet
	case VXLANNever:
		return ipam.VXLANNever
	}
	return ipam.VXLANAlways
}

// refreshStore reads the pools, the node's blocks and its borrowed
// addresses.
func (n *Node) refreshStore(ctx context.Context) error {
	pools, err := n.ipm.ListPools(ctx)
	if err != nil {
		return fmt.Errorf("list pools: %w", err)
	}
	blocks, err := n.ipm.HostBlocks(ctx, n.cfg.Name)
	if err != nil {
		return fmt.Errorf("host blocks: %w", err)
	}
	n.pools, n.blocks = pools, blocks
	n.mu.Lock()
	n.stats.Blocks = slices.Clone(blocks)
	n.mu.Unlock()
	return nil
}

func (n *Node) announcement() reflector.Announcement {
	a := reflector.Announcement{Node: n.cfg.Name, Blocks: slices.Clone(n.blocks), Addrs: slices.Clone(n.addrs)}
	if n.v4 {
		a.NodeIP, a.TunnelIP, a.TunnelMAC = n.cfg.NodeIP.Addr(), n.tunnel, n.tunnelMAC()
	}
	if n.v6 {
		a.NodeIPv6, a.TunnelIPv6 = n.cfg.NodeIPv6.Addr(), n.tunnel6
		a.TunnelMACv6 = n.vx6.MAC()
	}
	return a
}

// refresh re-reads the datastore (the CNI plugin may have claimed blocks or
// borrowed addresses) and re-announces when that changed.
func (n *Node) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	old, oldAddrs := slices.Clone(n.blocks), slices.Clone(n.addrs)
	if err := n.refreshStore(ctx); err != nil {
		n.setDS(err)
		return
	}
	n.usage(ctx)
	if !slices.Equal(old, n.blocks) || !slices.Equal(oldAddrs, n.addrs) {
		if err := n.ann.Update(n.announcement()); err != nil {
			n.log.Warn("re-announce", "err", err)
		}
	}
	n.setDS(nil)
}

// usage updates the IPAM figures and the addresses this node borrowed
// from other nodes' blocks (the listing also serves the validation of
// peers for a second). Allocations are listed only when the node has
// borrowed any.
func (n *Node) usage(ctx context.Context) {
	u, err := n.snap.usage(ctx)
	if err != nil {
		return
	}
	var borrowed int
	for _, h := range u.Hosts {
		if h.Host == n.cfg.Name {
			n.mu.Lock()
			n.stats.IPAMCapacity, n.stats.IPAMInUse = h.Capacity, h.InUse+h.Borrowed
			n.mu.Unlock()
			borrowed = h.Borrowed
		}
	}
	var addrs []netip.Addr
	if borrowed > 0 {
		if addrs, err = n.ipm.BorrowedAddrs(ctx, n.cfg.Name); err != nil {
			return
		}
	}
	n.addrs = addrs
	n.mu.Lock()
	n.stats.Borrowed = slices.Clone(addrs)
	n.mu.Unlock()
}

// probe checks that the datastore answers; new blocks of the node are
// picked up here too.
func (n *Node) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, n.cfg.HealthInterval)
	defer cancel()
	blocks, err := n.ipm.HostBlocks(pctx, n.cfg.Name)
	if err == nil {
		err = n.ann.Err()
	}
	refused := ""
	if errors.Is(err, reflector.ErrRefused) {
		// The store answers; the peers refuse part of what this node
		// announces (a hijack, a conflict): say so, stay ready.
		refused, err = err.Error(), nil
	}
	n.mu.Lock()
	if refused != "" && refused != n.stats.Refused {
		n.log.Error("peers refuse part of this node's announcement", "refusal", refused)
	}
	n.stats.Refused = refused
	n.mu.Unlock()
	n.setDS(err)
	if err == nil && !slices.Equal(blocks, n.blocks) {
		n.refresh(ctx)
		n.sync(ctx, "blocks")
	}
}

func (n *Node) setDS(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	was := n.stats.DatastoreOK
	n.stats.DatastoreOK = err == nil
	if err != nil {
		n.stats.LastError = err.Error()
		if was {
			n.log.Warn("datastore unreachable: not ready, dataplane kept", "err", err)
		}
	} else if !was {
		n.log.Info("datastore reachable again")
	}
}

// sync makes the kernel match the desired state.
func (n *Node) sync(ctx context.Context, why string) {
	start := n.cfg.Now()
	var errs []error
	writes := 0
	for _, v := range []struct {
		m  *vxlan.Manager
		v6 bool
	}{{n.vx, false}, {n.vx6, true}} {
		if v.m == nil {
			continue
		}
		if err := v.m.SetPeers(VXLANPeers(n.peers, v.v6)); err != nil {
			errs = append(errs, err)
		}
		if err := v.m.SetLocalBlocks(ofFamily(n.blocks, v.v6)); err != nil {
			errs = append(errs, err)
		}
		if err := v.m.Sync(ctx); err != nil {
			errs = append(errs, err)
		}
		writes += v.m.LastResult().Writes
	}
	if n.direct != nil {
		w, err := n.direct.sync(VXLANPeers(n.peers, false), ofFamily(n.blocks, false))
		if err != nil {
			errs = append(errs, err)
		}
		writes += w
	}
	if w, err := n.forwarding(); err != nil {
		errs = append(errs, err)
	} else {
		writes += w
	}
	workloads, err := Workloads(n.k.Netlink)
	if err != nil {
		errs = append(errs, err)
	}
	if n.cfg.ProxyARP == ProxyARPKernel {
		for _, w := range workloads {
			if on, err := proxyarp.KernelEnabled(n.k.Sysctl, w.Interface); err == nil && on {
				continue
			}
			if err := proxyarp.EnableKernel(n.k.Sysctl, w.Interface); err != nil {
				errs = append(errs, err)
			} else {
				writes++
			}
		}
	}
	if why != "borrowed" && n.unannounced(workloads) && n.cfg.Now().Sub(n.lastBorrowCheck) > 2*time.Second {
		n.lastBorrowCheck = n.cfg.Now()
		// A local pod got an address outside the node's blocks (borrowed)
		// or from a new block: read IPAM again and announce it now.
		n.refresh(ctx)
		defer n.sync(ctx, "borrowed")
	}
	d := nat.Desired{Workloads: workloads}
	for _, p := range n.pools {
		if (p.CIDR.Addr().Is4() && n.v4) || (p.CIDR.Addr().Is6() && n.v6) {
			d.Pools = append(d.Pools, nat.Pool{CIDR: p.CIDR, NATOutgoing: p.NATOutgoing && !p.Disabled})
		}
	}
	for _, p := range n.peers {
		if p.NodeIP.Is4() && n.v4 {
			d.VXLANPeers = append(d.VXLANPeers, p.NodeIP)
		}
		if p.NodeIPv6.Is6() && n.v6 {
			d.VXLANPeers = append(d.VXLANPeers, p.NodeIPv6)
		}
	}
	if !n.v4 || !n.v6 {
		// nat takes only addresses of a family with a pool.
		d.Workloads = workloadsOf(d.Workloads, n.v6)
	}
	if len(d.Pools) > 0 {
		prev := n.nt.Render()
		if err := n.nt.SetDesired(d); err != nil {
			errs = append(errs, err)
		} else {
			serr := n.nt.Sync(ctx)
			if serr != nil {
				errs = append(errs, serr)
			}
			w := n.nt.LastResult().Writes
			writes += w
			if w > 0 && n.natSynced && n.nt.Render() == prev {
				// Nothing the node wants changed, yet nat had to write:
				// someone else changed tabby's tables.
				n.mu.Lock()
				n.stats.NATRestores++
				n.mu.Unlock()
				n.log.Warn("nat: restored tables changed by someone else", "why", why)
			}
			n.natSynced = n.natSynced || serr == nil
		}
	}
	err = errors.Join(errs...)
	took := n.cfg.Now().Sub(start)
	n.mu.Lock()
	n.stats.Syncs++
	n.stats.SyncSeconds += took.Seconds()
	n.stats.LastSync = took
	n.stats.LastSyncWrites = writes
	n.stats.KernelWrites += uint64(writes)
	n.stats.Peers = n.stats.Peers[:0]
	for _, p := range n.peers {
		n.stats.Peers = append(n.stats.Peers, p.Node)
	}
	if err != nil {
		n.stats.SyncErrors++
		n.stats.LastError = err.Error()
	} else {
		n.stats.Synced = true
	}
	n.mu.Unlock()
	if n.cfg.OnSync != nil {
		n.cfg.OnSync(SyncInfo{Reason: why, Took: took, Writes: writes, Err: err})
	}
	if err != nil {
		n.log.Warn("sync", "why", why, "writes", writes, "err", err)
	} else {
		n.log.Debug("sync", "why", why, "writes", writes, "peers", len(n.peers), "took", took)
	}
}

// routeIterator is optional: when the Netlink value has it (as
// *netlink.Handle does), routes are streamed rather than listed.
type routeIterator interface {
	RouteListFilteredIter(family int, filter *netlink.Route, filterMask uint64, f func(netlink.Route) bool) error
}

// Workloads reads the local pods back from the kernel: the /32 routes with
// RouteProtocol and no gateway on HostPrefix veth interfaces (what package
// veth installs), sorted by interface.
func Workloads(nl Netlink) ([]nat.Workload, error) {
	links, err := nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("node: list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		if nm := l.Attrs().Name; strings.HasPrefix(nm, HostPrefix) && l.Type() == "veth" {
			names[l.Attrs().Index] = nm
		}
	}
	by := map[string][]netip.Addr{}
	add := func(r *netlink.Route) {
		nm, ok := names[r.LinkIndex]
		if !ok || r.Dst == nil || r.Gw != nil {
			return
		}
		ad, ok := netip.AddrFromSlice(r.Dst.IP)
		if ones, bits := r.Dst.Mask.Size(); !ok || ones != bits {
			return
		}
		by[nm] = append(by[nm], ad.Unmap())
	}
	filter := &netlink.Route{Protocol: RouteProtocol}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if it, ok := nl.(routeIterator); ok {
			// vxlan's routes have the same protocol: at 5,000 peers,
			// streaming them spares a slice of 5,000 netlink.Routes per
			// sync.
			err := it.RouteListFilteredIter(fam, filter, netlink.RT_FILTER_PROTOCOL, func(r netlink.Route) bool {
				add(&r)
				return true
			})
			if err != nil {
				return nil, fmt.Errorf("node: list routes: %w", err)
			}
			continue
		}
		routes, err := nl.RouteListFiltered(fam, filter, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			return nil, fmt.Errorf("node: list routes: %w", err)
		}
		for i := range routes {
			add(&routes[i])
		}
	}
	out := make([]nat.Workload, 0, len(names))
	for _, nm := range names {
		slices.SortFunc(by[nm], func(x, y netip.Addr) int { return x.Compare(y) })
		out = append(out, nat.Workload{Interface: nm, Addrs: by[nm]})
	}
	slices.SortFunc(out, func(x, y nat.Workload) int { return strings.Compare(x.Interface, y.Interface) })
	return out, nil
}

// forwarding enables IP forwarding for the node's families; it returns the
// writes made.
func (n *Node) forwarding() (int, error) {
	w := 0
	if n.v4 {
		x, err := n.setSysctl("net/ipv4/ip_forward", "1")
		if err != nil {
			return w, err
		}
		w += x
	}
	if n.v6 {
		x, err := n.setSysctl("net/ipv6/conf/all/forwarding", "1")
		if err != nil {
			return w, err
		}
		w += x
	}
	return w, nil
}

// ofFamily returns the prefixes of one family.
func ofFamily(ps []netip.Prefix, v6 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is6() == v6 {
			out = append(out, p)
		}
	}
	return out
}

// workloadsOf keeps the workloads' addresses of one family.
func workloadsOf(ws []nat.Workload, v6 bool) []nat.Workload {
	out := make([]nat.Workload, 0, len(ws))
	for _, w := range ws {
		x := nat.Workload{Interface: w.Interface}
		for _, a := range w.Addrs {
			if a.Is6() == v6 {
				x.Addrs = append(x.Addrs, a)
			}
		}
		out = append(out, x)
	}
	return out
}

// setSysctl writes key only when it differs; it returns the writes made.
func (n *Node) setSysctl(key, val string) (int, error) {
	if cur, err := n.k.Sysctl.Sysctl(key); err == nil && cur == val {
		return 0, nil
	}
	if err := n.k.Sysctl.SetSysctl(key, val); err != nil {
		return 0, fmt.Errorf("node: sysctl %s: %w", key, err)
	}
	return 1, nil
}

func (n *Node) stop() {
	n.mu.Lock()
	ann, withdraw := n.ann, n.cfg.WithdrawOnStop
	n.mu.Unlock()
	if ann == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ann.Stop(ctx, !withdraw); err != nil {
		n.log.Warn("stop announcement", "err", err)
	}
	if withdraw {
		n.log.Info("stopped; withdrawn")
	} else {
		n.log.Info("stopped; announcement kept for graceful restart", "holdTime", n.cfg.HoldTime)
	}
}

func (n *Node) close() {
	n.mu.Lock()
	n.stats.Synced = false
	n.mu.Unlock()
}

func writeIfChanged(path, val string) error {
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == val {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(val+"\n"), 0o644); err != nil {
		return fmt.Errorf("node: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("node: write %s: %w", path, err)
	}
	return nil
}

// unannounced reports whether a local pod address is neither in the
// node's blocks nor among its announced borrowed addresses.
func (n *Node) unannounced(ws []nat.Workload) bool {
	for _, w := range ws {
		for _, ad := range w.Addrs {
			if !slices.ContainsFunc(n.blocks, func(b netip.Prefix) bool { return b.Contains(ad) }) && !slices.Contains(n.addrs, ad) {
				return true
			}
		}
	}
	return false
}

// tunnelMAC is the VTEP MAC announced (derived from the node name when
// there is no VXLAN device, as package vxlan derives it).
func (n *Node) tunnelMAC() net.HardwareAddr {
	if n.vx != nil {
		return n.vx.MAC()
	}
	return vxlan.MACFromName(n.cfg.Name)
}
