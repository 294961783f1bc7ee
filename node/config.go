package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/reflector"
)

// Errors returned by New and Run; match them with errors.Is.
var (
	// ErrInvalidConfig: the Config cannot work; nothing was started or
	// written.
	ErrInvalidConfig = errors.New("node: invalid config")
	// ErrDatastore: the datastore did not answer at start (Run returns
	// it wrapped); the kernel was not touched beyond what start had done.
	ErrDatastore = errors.New("node: datastore unreachable")
	// ErrKernel: a kernel-facing step of the start failed (uplink
	// missing, netlink or nftables refused).
	ErrKernel = errors.New("node: kernel")
	// ErrNotStarted: the Node has not finished its start (or has ended).
	ErrNotStarted = errors.New("node: not started")
	// ErrRunning: Run was called twice.
	ErrRunning = errors.New("node: already run")
)

// VXLANMode is how traffic to other nodes' pods is carried. The zero value
// is invalid (a zero Config field means VXLANAlways).
type VXLANMode int

const (
	// VXLANAlways encapsulates all traffic to other nodes' pods in VXLAN
	// (Calico's vxlanMode: Always).
	VXLANAlways VXLANMode = iota + 1
	// VXLANCrossSubnet routes directly to peers on the node's underlay
	// subnet and encapsulates only to the others.
	VXLANCrossSubnet
	// VXLANNever makes no VXLAN device: peers on the local subnet get
	// direct routes, others are unreachable.
	VXLANNever
)

func (m VXLANMode) String() string {
	switch m {
	case VXLANAlways:
		return "Always"
	case VXLANCrossSubnet:
		return "CrossSubnet"
	case VXLANNever:
		return "Never"
	}
	return fmt.Sprintf("VXLANMode(%d)", int(m))
}

// ParseVXLANMode parses "Always", "CrossSubnet" or "Never" (any case).
func ParseVXLANMode(s string) (VXLANMode, error) {
	for _, m := range []VXLANMode{VXLANAlways, VXLANCrossSubnet, VXLANNever} {
		if strings.EqualFold(s, m.String()) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%w: vxlan mode %q (want Always, CrossSubnet or Never)", ErrInvalidConfig, s)
}

// ProxyARPMode is who answers the pods' ARP requests for 169.254.1.1. The
// zero value is invalid (a zero Config field means ProxyARPUserspace).
type ProxyARPMode int

const (
	// ProxyARPUserspace runs package proxyarp's responder on the pods'
	// host interfaces (kernel proxy_arp stays off).
	ProxyARPUserspace ProxyARPMode = iota + 1
	// ProxyARPKernel switches the kernel's proxy_arp (and proxy_delay 0)
	// on for each pod's host interface, as Calico does.
	ProxyARPKernel
	// ProxyARPOff does neither (the embedder answers, or veth's own
	// ARPKernel mode does).
	ProxyARPOff
)

func (m ProxyARPMode) String() string {
	switch m {
	case ProxyARPUserspace:
		return "userspace"
	case ProxyARPKernel:
		return "kernel"
	case ProxyARPOff:
		return "off"
	}
	return fmt.Sprintf("ProxyARPMode(%d)", int(m))
}

// ParseProxyARPMode parses "userspace", "kernel" or "off".
func ParseProxyARPMode(s string) (ProxyARPMode, error) {
	for _, m := range []ProxyARPMode{ProxyARPUserspace, ProxyARPKernel, ProxyARPOff} {
		if strings.EqualFold(s, m.String()) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%w: proxy-arp mode %q (want userspace, kernel or off)", ErrInvalidConfig, s)
}

// Defaults.
const (
	DefaultResyncInterval = 90 * time.Second
	DefaultHealthInterval = 2 * time.Second
	DefaultStartTimeout   = 15 * time.Second
	// DefaultHoldTime is the reflector's default hold time.
	DefaultHoldTime = reflector.DefaultHoldTime
	// HostPrefix is the host-side interface prefix of pods (veth's
	// default), the interfaces the node serves and guards.
	HostPrefix = "cali"
	// RouteProtocol marks the routes veth and vxlan own (and, in mode
	// Never, the node's direct routes).
	RouteProtocol = 80
)

// DefaultPool is the pool made when the store has none and Config.Pools is
// empty: Calico's and the seed's cluster CIDR.
var defaultPool = netip.MustParsePrefix("10.244.0.0/16")

// DefaultPool returns 10.244.0.0/16.
func DefaultPool() netip.Prefix { return defaultPool }

// Config configures a Node. A plain value: New copies it. Zero fields get
// the defaults named on each.
type Config struct {
	// Name is the node name (reflector.ValidNodeName). Required.
	Name string
	// NodeIP is the node's IPv4 underlay address with its subnet
	// (10.4.7.61/24): the VXLAN source address and, in CrossSubnet and
	// Never modes, the subnet whose peers are routed directly. Required for
	// IPv4 pods.
	NodeIP netip.Prefix
	// NodeIPv6 is the node's IPv6 underlay address with its subnet
	// (2001:db8:4:7::61/64), the source of vxlan-v6.calico. Required for
	// IPv6 pods. NodeIP, NodeIPv6 or both: IPv4-only, IPv6-only or
	// dual-stack; a family runs when the node has its address and the
	// cluster a pool of it.
	NodeIPv6 netip.Prefix
	// Uplink is the underlay interface (the VXLAN parent). Required.
	Uplink string
	// Pools are created if missing (named "default" for the default pool,
	// else after their CIDR), IPv4 and IPv6 alike; with none and no pool in
	// the store, DefaultPool is made (an IPv6-only node must name its
	// pools). Existing pools are used as they are.
	Pools []netip.Prefix
	// BlockSize of the created IPv4 pools (0: ipam's default, 26).
	BlockSize int
	// BlockSize6 of the created IPv6 pools (0: ipam's default, 122).
	BlockSize6 int
	// NATOutgoing of the created pools: masquerade pod traffic leaving them.
	NATOutgoing bool
	// VXLANMode; 0 means VXLANAlways.
	VXLANMode VXLANMode
	// ProxyARP; 0 means ProxyARPUserspace.
	ProxyARP ProxyARPMode
	// HoldTime this node announces (0: DefaultHoldTime): peers withdraw it
	// after that long without hearing from it.
	HoldTime time.Duration
	// ResyncInterval of the full resync (0: DefaultResyncInterval).
	ResyncInterval time.Duration
	// HealthInterval: how often the datastore is probed and the node's
	// blocks re-read (0: DefaultHealthInterval).
	HealthInterval time.Duration
	// StartTimeout bounds the datastore work of the start (0:
	// DefaultStartTimeout).
	StartTimeout time.Duration
	// WithdrawOnStop withdraws the node's announcement when Run ends, so
	// that peers drop its routes at once. The default keeps it for the
	// hold time (graceful restart: a node that comes back within it never
	// costs its pods a packet). Withdraw does it explicitly.
	WithdrawOnStop bool
	// MTU of the VXLAN device and the pods (0: uplink MTU - 50).
	MTU int
	// StateDir, when set, receives the files "nodename" and "mtu" that the
	// CNI plugin reads (tabby-agent uses /var/lib/tabby). Empty: no files.
	StateDir string
	// Store is the datastore. Required; the Node does not close it.
	Store datastore.Store
	// Kernel is the node's kernel: OpenKernel for a real namespace,
	// nodetest.NewKernel for the fake. Required; the Node does not close it.
	Kernel *Kernel
	// Logger; nil discards.
	Logger *slog.Logger
	// OnSync, if set, is called after every sync (metrics). It runs on the
	// Node's goroutine: keep it short.
	OnSync func(SyncInfo)
	// Now is the clock of IPAM's records and of the sync timings (nil:
	// time.Now). Intervals run on real time.
	Now func() time.Time
}

// SyncInfo describes one sync, for Config.OnSync.
type SyncInfo struct {
	// Reason is what triggered it: "start", "peers", "link", "nat",
	// "blocks", "interval", "borrowed".
	Reason string
	Took   time.Duration
	// Writes is the number of kernel writes it made (0 when nothing
	// changed).
	Writes int
	Err    error
}

// withDefaults validates c and fills the defaults.
func (c Config) withDefaults() (Config, error) {
	bad := func(f string, a ...any) (Config, error) {
		return c, fmt.Errorf("%w: "+f, append([]any{ErrInvalidConfig}, a...)...)
	}
	if c.Name == "" || !reflector.ValidNodeName(c.Name) {
		return bad("node name %q", c.Name)
	}
	if !c.NodeIP.IsValid() && !c.NodeIPv6.IsValid() {
		return bad("no node address (NodeIP, NodeIPv6 or both)")
	}
	if c.NodeIP.IsValid() && (!c.NodeIP.Addr().Is4() || c.NodeIP.Addr().IsUnspecified()) {
		return bad("node address %v (want IPv4 with prefix length, e.g. 10.4.7.61/24)", c.NodeIP)
	}
	if c.NodeIPv6.IsValid() && (!c.NodeIPv6.Addr().Is6() || c.NodeIPv6.Addr().Is4In6() || !c.NodeIPv6.Addr().IsGlobalUnicast()) {
		return bad("node IPv6 address %v (want a global IPv6 address with prefix length, e.g. 2001:db8:4:7::61/64)", c.NodeIPv6)
	}
	if c.Uplink == "" {
		return bad("no uplink")
	}
	if c.Store == nil {
		return bad("no datastore")
	}
	if c.Kernel == nil {
		return bad("no kernel (node.OpenKernel, or nodetest.NewKernel in tests)")
	}
	if err := c.Kernel.validate(c.ProxyARP); err != nil {
		return c, err
	}
	if c.VXLANMode == 0 {
		c.VXLANMode = VXLANAlways
	}
	if c.VXLANMode < VXLANAlways || c.VXLANMode > VXLANNever {
		return bad("vxlan mode %d", int(c.VXLANMode))
	}
	if c.ProxyARP == 0 {
		c.ProxyARP = ProxyARPUserspace
	}
	if c.ProxyARP < ProxyARPUserspace || c.ProxyARP > ProxyARPOff {
		return bad("proxy-arp mode %d", int(c.ProxyARP))
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
		n   string
	}{
		{&c.HoldTime, DefaultHoldTime, "hold time"}, {&c.ResyncInterval, DefaultResyncInterval, "resync interval"},
		{&c.HealthInterval, DefaultHealthInterval, "health interval"}, {&c.StartTimeout, DefaultStartTimeout, "start timeout"},
	} {
		if *d.v < 0 {
			return bad("negative %s %v", d.n, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.HoldTime < 10*time.Millisecond {
		return bad("hold time %v (at least 10ms)", c.HoldTime)
	}
	for _, p := range c.Pools {
		if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() {
			return bad("pool %v (want a network address with prefix length)", p)
		}
		if p.Addr().Is4() && !c.NodeIP.IsValid() {
			return bad("IPv4 pool %v on a node without an IPv4 address (NodeIP)", p)
		}
		if p.Addr().Is6() && !c.NodeIPv6.IsValid() {
			return bad("IPv6 pool %v on a node without an IPv6 address (NodeIPv6)", p)
		}
	}
	if !c.NodeIP.IsValid() && len(c.Pools) == 0 {
		return bad("an IPv6-only node needs its IPv6 pools in Pools (the default pool is IPv4)")
	}
	if c.NodeIPv6.IsValid() && c.VXLANMode == VXLANNever {
		return bad("VXLAN mode Never is IPv4 only (direct routes); use Always or CrossSubnet with IPv6")
	}
	if c.BlockSize != 0 && (c.BlockSize < 20 || c.BlockSize > 32) {
		return bad("block size %d (20..32)", c.BlockSize)
	}
	if c.BlockSize6 != 0 && (c.BlockSize6 < 116 || c.BlockSize6 > 128) {
		return bad("IPv6 block size %d (116..128)", c.BlockSize6)
	}
	if c.MTU < 0 || (c.MTU != 0 && c.MTU < 576) {
		return bad("MTU %d", c.MTU)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}
