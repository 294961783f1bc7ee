//go:build linux

package agent

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
	"github.com/tabbynet/tabby/examples/internal/cni"
	"github.com/tabbynet/tabby/internal/sysctl"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/nat"
	"github.com/tabbynet/tabby/proxyarp"
	"github.com/tabbynet/tabby/reflector"
	"github.com/tabbynet/tabby/vxlan"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ErrInvalidConfig: the Config cannot work; nothing was started.
var ErrInvalidConfig = errors.New("agent: invalid config")

// ErrDatastore: the datastore did not answer at start.
var ErrDatastore = errors.New("agent: datastore unreachable")

// Config configures an Agent. A plain value.
type Config struct {
	// Node is the node name. Required.
	Node string
	// NodeIP is the node's underlay address with its subnet
	// (10.4.7.61/24). Required.
	NodeIP netip.Prefix
	// Uplink is the underlay interface (the VXLAN parent). Required.
	Uplink string
	// Pools are created if missing (named like the CNI plugin names them);
	// with none and no pool in the store, 10.244.0.0/16 "default" is made.
	Pools []netip.Prefix
	// BlockSize of the created pools (0: 26).
	BlockSize int
	// VXLANMode: Always (default), CrossSubnet or Never (direct routes to
	// peers on the local subnet only).
	VXLANMode ipam.VXLANMode
	// NATOutgoing of the created pools.
	NATOutgoing bool
	// ProxyARP is "userspace" (default) or "kernel".
	ProxyARP string
	// HoldTime this node announces (default 30s).
	HoldTime time.Duration
	// ResyncInterval of the full resync (default 90s).
	ResyncInterval time.Duration
	// HealthInterval: how often the datastore is probed (default 2s).
	HealthInterval time.Duration
	// StateDir receives the files nodename and mtu (default
	// /var/lib/tabby).
	StateDir string
	// GracefulRestart keeps the announcement on stop (peers keep the
	// routes for the hold time).
	GracefulRestart bool
	// Netns is the path of the node's network namespace; "" is the
	// caller's.
	Netns string
	// SysctlRoot is where /proc/sys is mounted (default /proc/sys).
	SysctlRoot string
	// MTU of the VXLAN device and the pods (0: uplink MTU - 50).
	MTU int
	// Store is the datastore. Required; the Agent does not close it.
	Store datastore.Store
	// Logger; nil discards.
	Logger *slog.Logger
	// OnSync, if set, is called after every sync with its duration, the
	// kernel writes it made and its error (metrics).
	OnSync func(took time.Duration, writes int, err error)
	// StartTimeout bounds the datastore work at start (default 15s).
	StartTimeout time.Duration
	// Now is the clock of IPAM's records and of the sync timings (default
	// time.Now). Intervals (resync, health, the reflector's heartbeats
	// and hold time) run on real time.
	Now func() time.Time
}

// Agent is one node's daemon. Create with New, run with Run (once).
// Safe for concurrent use.
type Agent struct {
	cfg Config
	log *slog.Logger
	ipm *ipam.IPAM
	sys sysctl.NS

	mu    sync.Mutex
	stats Stats
	ready chan struct{}

	// owned by Run
	ns     netns.NsHandle
	nl     *netlink.Handle
	vx     *vxlan.Manager // nil in VXLAN mode Never
	direct *directRoutes  // VXLAN mode Never
	nt     *nat.Manager
	arp    *proxyarp.Responder
	ann    *reflector.Announcer
	refl   *reflector.Reflector
	peers  []reflector.Announcement
	pools  []ipam.Pool
	blocks []netip.Prefix
	addrs  []netip.Addr // borrowed from other nodes' blocks
	// lastBorrowCheck rate-limits re-reading IPAM for unknown pod addresses.
	lastBorrowCheck time.Time
	tunnel          netip.Addr
	dsOK            bool
	synced          bool
	lastErr         error
}

// Stats is a snapshot of an Agent's state and counters. A plain value.
type Stats struct {
	Node           string
	TunnelAddr     netip.Addr
	TunnelMAC      net.HardwareAddr
	Blocks         []netip.Prefix
	Peers          int
	PeerNames      []string
	Syncs          uint64
	SyncErrors     uint64
	SyncSeconds    float64 // total time spent in syncs
	LastSync       time.Duration
	LastSyncWrites int
	KernelWrites   uint64
	DatastoreOK    bool
	Synced         bool
	LastError      string
	IPAMCapacity   int // addresses in the node's blocks
	IPAMInUse      int
	ARP            proxyarp.Stats
	ProxyARPMode   string
	vxIndex        int
}

// New checks cfg and returns an Agent that has not started.
func New(cfg Config) (*Agent, error) {
	if cfg.Node == "" || !reflector.ValidNodeName(cfg.Node) {
		return nil, fmt.Errorf("%w: node name %q", ErrInvalidConfig, cfg.Node)
	}
	if !cfg.NodeIP.IsValid() || !cfg.NodeIP.Addr().Is4() {
		return nil, fmt.Errorf("%w: node address %v (want IPv4 with prefix length)", ErrInvalidConfig, cfg.NodeIP)
	}
	if cfg.Uplink == "" {
		return nil, fmt.Errorf("%w: no uplink", ErrInvalidConfig)
	}
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: no datastore", ErrInvalidConfig)
	}
	if cfg.VXLANMode == 0 {
		cfg.VXLANMode = ipam.VXLANAlways
	}
	if !cfg.VXLANMode.Valid() {
		return nil, fmt.Errorf("%w: vxlan mode %d", ErrInvalidConfig, cfg.VXLANMode)
	}
	switch cfg.ProxyARP {
	case "":
		cfg.ProxyARP = ProxyARPUserspace
	case ProxyARPUserspace, ProxyARPKernel:
	default:
		return nil, fmt.Errorf("%w: proxy-arp %q (userspace or kernel)", ErrInvalidConfig, cfg.ProxyARP)
	}
	if cfg.HoldTime == 0 {
		cfg.HoldTime = reflector.DefaultHoldTime
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 2 * time.Second
	}
	if cfg.HoldTime < 0 || cfg.ResyncInterval < 0 || cfg.HealthInterval < 0 {
		return nil, fmt.Errorf("%w: negative interval", ErrInvalidConfig)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.SysctlRoot == "" {
		cfg.SysctlRoot = DefaultSysctlRoot
	}
	for _, p := range cfg.Pools {
		if !p.IsValid() || p.Masked() != p || !p.Addr().Is4() {
			return nil, fmt.Errorf("%w: pool %v", ErrInvalidConfig, p)
		}
	}
	if cfg.BlockSize != 0 && (cfg.BlockSize < ipam.MinBlockSize4 || cfg.BlockSize > ipam.MaxBlockSize4) {
		return nil, fmt.Errorf("%w: block size %d (%d..%d)", ErrInvalidConfig, cfg.BlockSize, ipam.MinBlockSize4, ipam.MaxBlockSize4)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.Node)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := ipam.New(cfg.Store, &ipam.Config{Logger: log, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &Agent{
		cfg: cfg, log: log, ipm: m,
		sys:   sysctl.NS{Path: cfg.Netns, Root: cfg.SysctlRoot},
		ready: make(chan struct{}),
	}, nil
}

// IPAM returns the agent's IPAM (for tools and tests).
func (a *Agent) IPAM() *ipam.IPAM { return a.ipm }

// Ready reports nil when the datastore answers and the first sync is done,
// else why not.
func (a *Agent) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case !a.stats.Synced:
		return errors.New("first sync not done")
	case !a.stats.DatastoreOK:
		return fmt.Errorf("datastore unreachable: %s", a.stats.LastError)
	}
	return nil
}

// Started is closed once the first sync is done.
func (a *Agent) Started() <-chan struct{} { return a.ready }

// Stats returns a snapshot.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	s := a.stats
	s.Blocks = slices.Clone(s.Blocks)
	s.PeerNames = slices.Clone(s.PeerNames)
	arp := a.arp
	a.mu.Unlock()
	if arp != nil {
		s.ARP = arp.Stats()
	}
	s.ProxyARPMode = a.cfg.ProxyARP
	return s
}

// Run starts the node and serves it until ctx ends, then stops the
// announcement (withdrawn, or kept with GracefulRestart) and returns nil.
// A start-up failure (datastore unreachable, uplink missing, ...) is
// returned at once.
func (a *Agent) Run(ctx context.Context) (err error) {
	defer a.close()
	if err := a.start(ctx); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	snaps, err := a.watchPeers(runCtx)
	if err != nil {
		return err
	}
	links := make(chan struct{}, 1)
	a.watchLinks(runCtx, links)
	if a.cfg.ProxyARP == ProxyARPUserspace {
		r, err := proxyarp.New(&proxyarp.Config{Netns: a.cfg.Netns, Logger: a.log})
		if err != nil {
			return fmt.Errorf("agent: proxy arp: %w", err)
		}
		a.mu.Lock()
		a.arp = r
		a.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(runCtx); err != nil {
				a.log.Error("proxy arp", "err", err)
			}
		}()
	}

	// Wait for the first set of peers so that the first sync does not
	// remove routes to live peers.
	select {
	case s := <-snaps:
		a.peers = s.Peers
	case <-ctx.Done():
		a.stop()
		return nil
	}
	a.sync(ctx, "start")
	close(a.ready)

	resync := time.NewTicker(a.cfg.ResyncInterval)
	defer resync.Stop()
	health := time.NewTicker(a.cfg.HealthInterval)
	defer health.Stop()
	for {
		select {
		case <-ctx.Done():
			a.stop()
			return nil
		case s, ok := <-snaps:
			if !ok {
				snaps = nil
				continue
			}
			a.peers = s.Peers
			a.sync(ctx, "peers")
		case <-links:
			a.sync(ctx, "link")
		case <-health.C:
			a.probe(ctx)
		case <-resync.C:
			a.refresh(ctx)
			a.sync(ctx, "interval")
		}
	}
}

func (a *Agent) start(ctx context.Context) error {
	c := a.cfg
	var err error
	if c.Netns != "" {
		a.ns, err = netns.GetFromPath(c.Netns)
		if err != nil {
			return fmt.Errorf("agent: open namespace %s: %w", c.Netns, err)
		}
		a.nl, err = netlink.NewHandleAt(a.ns)
	} else {
		a.ns = netns.None()
		a.nl, err = netlink.NewHandle()
	}
	if err != nil {
		return fmt.Errorf("agent: netlink: %w", err)
	}
	up, err := a.nl.LinkByName(c.Uplink)
	if err != nil {
		return fmt.Errorf("agent: uplink %s: %w", c.Uplink, err)
	}
	mtu := c.MTU
	if mtu == 0 {
		mtu = up.Attrs().MTU - vxlan.Overhead
	}

	st := c.StartTimeout
	if st <= 0 {
		st = 15 * time.Second
	}
	sctx, cancel := context.WithTimeout(ctx, st)
	defer cancel()
	poolNames, err := a.ensurePools(sctx)
	if err != nil {
		return err
	}
	a.tunnel, err = a.ipm.AssignTunnelAddress(sctx, c.Node, ipam.IPv4, poolNames...)
	if err != nil {
		return fmt.Errorf("%w: assign tunnel address: %w", dsErr(err), err)
	}
	if err := a.refreshStore(sctx); err != nil {
		return fmt.Errorf("%w: %w", dsErr(err), err)
	}
	a.usage(sctx)
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		return fmt.Errorf("agent: state dir: %w", err)
	}
	if err := writeIfChanged(filepath.Join(c.StateDir, "nodename"), c.Node); err != nil {
		return err
	}
	if err := writeIfChanged(filepath.Join(c.StateDir, "mtu"), strconv.Itoa(mtu)); err != nil {
		return err
	}
	if _, err := a.setSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("agent: enable forwarding: %w", err)
	}

	if c.VXLANMode == ipam.VXLANNever {
		a.direct = &directRoutes{nl: a.nl, uplink: c.Uplink, local: c.NodeIP.Masked(), log: a.log}
	} else {
		mode := vxlan.ModeAlways
		if c.VXLANMode == ipam.VXLANCrossSubnet {
			mode = vxlan.ModeCrossSubnet
		}
		a.vx, err = vxlan.New(a.nl, &vxlan.Config{
			Parent: c.Uplink, LocalAddr: c.NodeIP, TunnelAddr: a.tunnel, NodeName: c.Node,
			MTU: mtu, Mode: mode, Namespace: c.Netns, Logger: a.log,
		})
		if err != nil {
			return fmt.Errorf("agent: vxlan: %w", err)
		}
	}
	fd := 0
	if c.Netns != "" {
		fd = int(a.ns)
	}
	ncfg := &nat.Config{Logger: a.log}
	if c.VXLANMode == ipam.VXLANNever {
		ncfg.DisableVXLANGuard = true
	} else {
		ncfg.TunnelInterface = a.vx.Device()
	}
	nt, err := nat.Open(fd, ncfg)
	a.mu.Lock()
	a.nt = nt
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("agent: nat: %w", err)
	}

	r, err := reflector.New(c.Store, &reflector.Config{
		HoldTime: c.HoldTime, Validator: validator{a.ipm}, Logger: a.log,
	})
	if err != nil {
		return fmt.Errorf("agent: reflector: %w", err)
	}
	a.ann, err = r.Announce(sctx, a.announcement())
	if err != nil {
		return fmt.Errorf("%w: announce: %w", dsErr(err), err)
	}
	a.refl = r
	a.mu.Lock()
	a.stats.Node = c.Node
	a.stats.TunnelAddr = a.tunnel
	a.stats.TunnelMAC = a.tunnelMAC()
	a.stats.DatastoreOK = true
	a.mu.Unlock()
	a.dsOK = true
	a.log.Info("started", "tunnel", a.tunnel, "blocks", a.blocks, "mtu", mtu, "mode", c.VXLANMode)
	return nil
}

func dsErr(err error) error {
	if errors.Is(err, datastore.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return ErrDatastore
	}
	return errors.New("agent")
}

func (a *Agent) ensurePools(ctx context.Context) ([]string, error) {
	existing, err := a.ipm.ListPools(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: list pools: %w", dsErr(err), err)
	}
	cidrs := a.cfg.Pools
	if len(cidrs) == 0 {
		if len(existing) > 0 {
			return nil, nil
		}
		cidrs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	}
	var names []string
	for _, cidr := range cidrs {
		i := slices.IndexFunc(existing, func(p ipam.Pool) bool { return p.CIDR == cidr })
		if i >= 0 {
			names = append(names, existing[i].Name)
			continue
		}
		name := "default"
		if len(a.cfg.Pools) > 0 {
			name = cni.PoolName(cidr) // as the CNI plugin names it
		}
		err := a.ipm.CreatePool(ctx, ipam.Pool{
			Name: name, CIDR: cidr, BlockSize: a.cfg.BlockSize,
			NATOutgoing: a.cfg.NATOutgoing, VXLANMode: a.cfg.VXLANMode,
		})
		if err != nil && !errors.Is(err, ipam.ErrPoolExists) {
			if errors.Is(err, ipam.ErrPoolOverlap) || errors.Is(err, ipam.ErrInvalid) {
				return nil, fmt.Errorf("%w: pool %v: %w", ErrInvalidConfig, cidr, err)
			}
			return nil, fmt.Errorf("%w: create pool %v: %w", dsErr(err), cidr, err)
		}
		names = append(names, name)
	}
	return names, nil
}

// refreshStore reads pools and the node's blocks.
func (a *Agent) refreshStore(ctx context.Context) error {
	pools, err := a.ipm.ListPools(ctx)
	if err != nil {
		return fmt.Errorf("list pools: %w", err)
	}
	blocks, err := a.ipm.HostBlocks(ctx, a.cfg.Node)
	if err != nil {
		return fmt.Errorf("host blocks: %w", err)
	}
	a.pools, a.blocks = pools, blocks
	a.mu.Lock()
	a.stats.Blocks = slices.Clone(blocks)
	a.mu.Unlock()
	return nil
}

func (a *Agent) announcement() reflector.Announcement {
	return reflector.Announcement{
		Node: a.cfg.Node, NodeIP: a.cfg.NodeIP.Addr(), TunnelIP: a.tunnel,
		TunnelMAC: a.tunnelMAC(), Blocks: slices.Clone(a.blocks), Addrs: slices.Clone(a.addrs),
	}
}

// refresh re-reads the datastore (blocks may have been claimed by the CNI
// plugin) and re-announces when they changed, and updates IPAM usage.
func (a *Agent) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	old, oldAddrs := slices.Clone(a.blocks), slices.Clone(a.addrs)
	if err := a.refreshStore(ctx); err != nil {
		a.setDS(err)
		return
	}
	a.usage(ctx)
	if !slices.Equal(old, a.blocks) || !slices.Equal(oldAddrs, a.addrs) {
		if err := a.ann.Update(a.announcement()); err != nil {
			a.log.Warn("re-announce", "err", err)
		}
	}
	a.setDS(nil)
}

// usage updates the IPAM metrics and the addresses this node borrowed
// from other nodes' blocks (announced as single addresses). Allocations are
// listed only when the node has borrowed any.
func (a *Agent) usage(ctx context.Context) {
	u, err := a.ipm.Usage(ctx)
	if err != nil {
		return
	}
	var borrowed int
	for _, h := range u.Hosts {
		if h.Host == a.cfg.Node {
			a.mu.Lock()
			a.stats.IPAMCapacity, a.stats.IPAMInUse = h.Capacity, h.InUse+h.Borrowed
			a.mu.Unlock()
			borrowed = h.Borrowed
		}
	}
	if borrowed == 0 {
		a.addrs = nil
		return
	}
	all, err := a.ipm.Allocations(ctx)
	if err != nil {
		return
	}
	var addrs []netip.Addr
	for _, al := range all {
		if al.Host == a.cfg.Node && !slices.ContainsFunc(a.blocks, func(b netip.Prefix) bool { return b.Contains(al.Addr) }) {
			addrs = append(addrs, al.Addr)
		}
	}
	a.addrs = addrs
}

// probe checks that the datastore answers; new blocks of the node are
// picked up here too.
func (a *Agent) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, a.cfg.HealthInterval)
	defer cancel()
	blocks, err := a.ipm.HostBlocks(pctx, a.cfg.Node)
	if err == nil {
		err = a.ann.Err()
	}
	a.setDS(err)
	if err == nil && !slices.Equal(blocks, a.blocks) {
		a.refresh(ctx)
		a.sync(ctx, "blocks")
	}
}

func (a *Agent) setDS(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	was := a.stats.DatastoreOK
	a.stats.DatastoreOK = err == nil
	if err != nil {
		a.stats.LastError = err.Error()
		if was {
			a.log.Warn("datastore unreachable: not ready, dataplane kept", "err", err)
		}
	} else if !was {
		a.log.Info("datastore reachable again")
	}
}

func (a *Agent) watchPeers(ctx context.Context) (<-chan reflector.Snapshot, error) {
	ch, err := a.refl.Watch(ctx, a.cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("agent: watch peers: %w", err)
	}
	return ch, nil
}

func (a *Agent) watchLinks(ctx context.Context, kick chan<- struct{}) {
	updates := make(chan netlink.LinkUpdate, 64)
	opts := netlink.LinkSubscribeOptions{ErrorCallback: func(err error) { a.log.Debug("link watch", "err", err) }}
	if a.cfg.Netns != "" {
		ns := a.ns
		opts.Namespace = &ns
	}
	if err := netlink.LinkSubscribeWithOptions(updates, ctx.Done(), opts); err != nil {
		a.log.Warn("link watch unavailable: resync on the interval only", "err", err)
		return
	}
	routes := make(chan netlink.RouteUpdate, 64)
	ropts := netlink.RouteSubscribeOptions{Namespace: opts.Namespace, ErrorCallback: opts.ErrorCallback}
	if err := netlink.RouteSubscribeWithOptions(routes, ctx.Done(), ropts); err != nil {
		a.log.Warn("route watch unavailable", "err", err)
		routes = nil
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case r, ok := <-routes:
				if !ok {
					routes = nil
					continue
				}
				// A pod's /32 route (veth's): the workload guard needs it.
				if r.Protocol != routeProtocol || r.Gw != nil || r.Dst == nil || r.LinkIndex == a.vxIndex() {
					continue
				}
				time.Sleep(20 * time.Millisecond)
				select {
				case kick <- struct{}{}:
				default:
				}
			case u, ok := <-updates:
				if !ok {
					return
				}
				name := u.Attrs().Name
				if name != a.cfg.Uplink && name != vxlan.DefaultDevice && !strings.HasPrefix(name, HostPrefix) {
					continue
				}
				// Coalesce bursts (a pod's ADD makes several events).
				time.Sleep(50 * time.Millisecond)
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		}
	}()
}

// sync makes the kernel match the desired state.
func (a *Agent) sync(ctx context.Context, why string) {
	start := a.cfg.Now()
	var errs []error
	writes := 0
	peers := a.vxPeers()
	if a.vx != nil {
		if err := a.vx.SetPeers(peers); err != nil {
			errs = append(errs, err)
		}
		if err := a.vx.SetLocalBlocks(a.blocks); err != nil {
			errs = append(errs, err)
		}
		if err := a.vx.Sync(ctx); err != nil {
			errs = append(errs, err)
		}
		writes += a.vx.LastResult().Writes
	} else {
		n, err := a.direct.sync(peers, a.blocks)
		if err != nil {
			errs = append(errs, err)
		}
		writes += n
	}

	if n, err := a.setSysctl("net/ipv4/ip_forward", "1"); err != nil {
		errs = append(errs, err)
	} else {
		writes += n
	}
	workloads, err := a.workloads()
	if err != nil {
		errs = append(errs, err)
	}
	if a.cfg.ProxyARP == ProxyARPKernel {
		for _, w := range workloads {
			if on, err := proxyarp.KernelEnabled(a.sys, w.Interface); err == nil && on {
				continue
			}
			if err := proxyarp.EnableKernel(a.sys, w.Interface); err != nil {
				errs = append(errs, err)
			} else {
				writes++
			}
		}
	}
	if why != "borrowed" && a.unannounced(workloads) && a.cfg.Now().Sub(a.lastBorrowCheck) > 2*time.Second {
		a.lastBorrowCheck = a.cfg.Now()
		// A local pod got an address outside the node's blocks (borrowed)
		// or from a new block: read IPAM again and announce it now.
		a.refresh(ctx)
		defer a.sync(ctx, "borrowed")
	}
	d := nat.Desired{Workloads: workloads}
	for _, p := range a.pools {
		d.Pools = append(d.Pools, nat.Pool{CIDR: p.CIDR, NATOutgoing: p.NATOutgoing && !p.Disabled})
	}
	for _, p := range a.peers {
		if p.NodeIP.Is4() {
			d.VXLANPeers = append(d.VXLANPeers, p.NodeIP)
		}
	}
	if len(d.Pools) > 0 {
		if err := a.nt.SetDesired(d); err != nil {
			errs = append(errs, err)
		} else {
			if err := a.nt.Sync(ctx); err != nil {
				errs = append(errs, err)
			}
			writes += a.nt.LastResult().Writes
		}
	}
	err = errors.Join(errs...)
	el := a.cfg.Now().Sub(start)
	a.mu.Lock()
	a.stats.Syncs++
	a.stats.SyncSeconds += el.Seconds()
	a.stats.LastSync = el
	a.stats.LastSyncWrites = writes
	if a.vx != nil {
		a.stats.vxIndex = a.vx.LastResult().DeviceIndex
	}
	a.stats.KernelWrites += uint64(writes)
	a.stats.Peers = len(a.peers)
	a.stats.PeerNames = a.stats.PeerNames[:0]
	for _, p := range a.peers {
		a.stats.PeerNames = append(a.stats.PeerNames, p.Node)
	}
	if err != nil {
		a.stats.SyncErrors++
		a.stats.LastError = err.Error()
	} else {
		a.stats.Synced = true
	}
	a.mu.Unlock()
	if a.cfg.OnSync != nil {
		a.cfg.OnSync(el, writes, err)
	}
	if err != nil {
		a.log.Warn("sync", "why", why, "writes", writes, "err", err)
	} else {
		a.log.Debug("sync", "why", why, "writes", writes, "peers", len(a.peers), "took", el)
	}
}

func (a *Agent) vxPeers() []vxlan.Peer {
	out := make([]vxlan.Peer, 0, len(a.peers))
	for _, p := range a.peers {
		if !p.NodeIP.Is4() || !p.TunnelIP.Is4() {
			continue
		}
		if a.cfg.VXLANMode == ipam.VXLANNever && !a.cfg.NodeIP.Masked().Contains(p.NodeIP) {
			continue // no encapsulation: only peers on the local subnet are reachable
		}
		out = append(out, vxlan.Peer{
			Name: p.Node, NodeIP: p.NodeIP, TunnelIP: p.TunnelIP, TunnelMAC: p.TunnelMAC,
			Blocks: p.Blocks, Addrs: p.Addrs,
		})
	}
	return out
}

// workloads reads the local pods from the kernel: the /32 routes with
// tabby's protocol on cali* interfaces.
func (a *Agent) workloads() ([]nat.Workload, error) {
	links, err := a.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("agent: list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		if n := l.Attrs().Name; strings.HasPrefix(n, HostPrefix) && l.Type() == "veth" {
			names[l.Attrs().Index] = n
		}
	}
	routes, err := a.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("agent: list routes: %w", err)
	}
	by := map[string][]netip.Addr{}
	for _, r := range routes {
		n, ok := names[r.LinkIndex]
		if !ok || r.Dst == nil || r.Gw != nil {
			continue
		}
		if ones, bits := r.Dst.Mask.Size(); ones != 32 || bits != 32 {
			continue
		}
		ad, _ := netip.AddrFromSlice(r.Dst.IP.To4())
		by[n] = append(by[n], ad)
	}
	out := make([]nat.Workload, 0, len(names))
	for _, n := range names {
		slices.SortFunc(by[n], func(x, y netip.Addr) int { return x.Compare(y) })
		out = append(out, nat.Workload{Interface: n, Addrs: by[n]})
	}
	slices.SortFunc(out, func(x, y nat.Workload) int { return strings.Compare(x.Interface, y.Interface) })
	return out, nil
}

// setSysctl writes key only when it differs; it returns the writes made.
func (a *Agent) setSysctl(key, val string) (int, error) {
	if cur, err := a.sys.Sysctl(key); err == nil && cur == val {
		return 0, nil
	}
	if err := a.sys.SetSysctl(key, val); err != nil {
		return 0, err
	}
	return 1, nil
}

// SetGracefulRestart changes what stopping does (see
// Config.GracefulRestart).
func (a *Agent) SetGracefulRestart(keep bool) {
	a.mu.Lock()
	a.cfg.GracefulRestart = keep
	a.mu.Unlock()
}

func (a *Agent) stop() {
	if a.ann == nil {
		return
	}
	a.mu.Lock()
	graceful := a.cfg.GracefulRestart
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.ann.Stop(ctx, graceful); err != nil {
		a.log.Warn("stop announcement", "err", err)
	}
	if graceful {
		a.log.Info("stopped; announcement kept for graceful restart", "holdTime", a.cfg.HoldTime)
	} else {
		a.log.Info("stopped; withdrawn")
	}
}

func (a *Agent) close() {
	if a.nt != nil {
		a.nt.Close()
	}
	if a.nl != nil {
		a.nl.Close()
	}
	if a.ns.IsOpen() {
		a.ns.Close()
	}
	a.mu.Lock()
	a.stats.Synced = false
	a.mu.Unlock()
}

func writeIfChanged(path, val string) error {
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == val {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(val+"\n"), 0o644); err != nil {
		return fmt.Errorf("agent: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("agent: write %s: %w", path, err)
	}
	return nil
}

// validator checks peers' announcements against IPAM.
type validator struct{ m *ipam.IPAM }

func (v validator) Owns(ctx context.Context, node string, blocks []netip.Prefix, addrs []netip.Addr) error {
	for _, b := range blocks {
		ok, err := v.m.IsBlockAffine(ctx, b, node)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("block %v is not affine to %s", b, node)
		}
	}
	for _, ad := range addrs {
		ok, err := v.m.IsAssignedTo(ctx, ad, node)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("address %v is not assigned to %s", ad, node)
		}
	}
	return nil
}

func (a *Agent) vxIndex() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats.vxIndex
}

// NATRules returns the agent's nftables table as the kernel holds it.
func (a *Agent) NATRules(ctx context.Context) (string, error) {
	a.mu.Lock()
	nt := a.nt
	a.mu.Unlock()
	if nt == nil {
		return "", errors.New("agent: not started")
	}
	return nt.Dump(ctx)
}

// unannounced reports whether a local pod address is neither in the
// node's blocks nor among its announced borrowed addresses.
func (a *Agent) unannounced(ws []nat.Workload) bool {
	for _, w := range ws {
		for _, ad := range w.Addrs {
			if !slices.ContainsFunc(a.blocks, func(b netip.Prefix) bool { return b.Contains(ad) }) && !slices.Contains(a.addrs, ad) {
				return true
			}
		}
	}
	return false
}

// tunnelMAC is the VTEP MAC announced (derived from the node name when
// there is no VXLAN device, as the vxlan package derives it).
func (a *Agent) tunnelMAC() net.HardwareAddr {
	if a.vx != nil {
		return a.vx.MAC()
	}
	return vxlan.MACFromName(a.cfg.Node)
}
