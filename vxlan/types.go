package vxlan

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
)

// Defaults, Calico-compatible.
const (
	// DefaultDevice is the IPv4 VXLAN device name.
	DefaultDevice = "vxlan.calico"
	// DefaultDeviceV6 is the IPv6 VXLAN device name (one Manager per family).
	DefaultDeviceV6 = "vxlan-v6.calico"
	// DefaultVNI is the VXLAN network identifier.
	DefaultVNI = 4096
	// DefaultPort is the VXLAN UDP destination port.
	DefaultPort = 4789
	// DefaultRouteProtocol marks the routes a Manager owns (rtm_protocol).
	// 80 is the number Calico's felix uses for its routes.
	DefaultRouteProtocol netlink.RouteProtocol = 80
	// Overhead is what VXLAN encapsulation costs over an IPv4 underlay:
	// 14 (inner Ethernet) + 8 (VXLAN) + 8 (UDP) + 20 (IPv4).
	Overhead = 50
	// OverheadV6 is the same over an IPv6 underlay (40-byte header).
	OverheadV6 = 70
)

// Errors. Match with errors.Is.
var (
	// ErrInvalidConfig: the Config cannot work; nothing was changed.
	ErrInvalidConfig = errors.New("vxlan: invalid config")
	// ErrInvalidPeer: SetPeers or SetLocalBlocks got a bad value; the
	// previous desired state is kept.
	ErrInvalidPeer = errors.New("vxlan: invalid peer")
	// ErrNoParent: the parent (underlay) device does not exist.
	ErrNoParent = errors.New("vxlan: parent device not found")
	// ErrRouteConflict: a route for a desired destination exists in the main
	// table but is not owned by tabby; it is left alone.
	ErrRouteConflict = errors.New("vxlan: route owned by someone else")
)

// Mode says how peers are reached. The zero value is invalid; in a Config
// zero means ModeAlways. Values are safe for concurrent use.
type Mode int

const (
	// ModeAlways encapsulates traffic to every peer.
	ModeAlways Mode = iota + 1
	// ModeCrossSubnet routes peers on the local underlay subnet directly via
	// their node address on the parent device and encapsulates the others.
	ModeCrossSubnet
)

func (m Mode) String() string {
	switch m {
	case ModeAlways:
		return "Always"
	case ModeCrossSubnet:
		return "CrossSubnet"
	}
	return "invalid"
}

// ParseMode parses "Always" or "CrossSubnet" (case as written).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "Always":
		return ModeAlways, nil
	case "CrossSubnet":
		return ModeCrossSubnet, nil
	}
	return 0, fmt.Errorf("%w: mode %q", ErrInvalidConfig, s)
}

// ChecksumOffload selects the TX checksum-offload workaround. The zero value
// is invalid; in a Config zero means ChecksumAuto. Values are safe for
// concurrent use.
type ChecksumOffload int

const (
	// ChecksumAuto turns TX checksum offload off on the VXLAN device on
	// kernels up to 5.7, which corrupt checksums of VXLAN packets under
	// offload (the 63-second TCP stalls), and leaves it alone otherwise.
	ChecksumAuto ChecksumOffload = iota + 1
	// ChecksumOn makes sure TX checksum offload is on.
	ChecksumOn
	// ChecksumOff always turns TX checksum offload off.
	ChecksumOff
)

func (c ChecksumOffload) String() string {
	switch c {
	case ChecksumAuto:
		return "Auto"
	case ChecksumOn:
		return "On"
	case ChecksumOff:
		return "Off"
	}
	return "invalid"
}

// Offloader sets TX checksum offload on a device. The default uses the
// SIOCETHTOOL ioctl (ETHTOOL_STXCSUM) inside Config.Namespace; tests inject
// their own. A Manager calls it from Sync, one call at a time.
type Offloader interface {
	SetTxChecksum(device string, on bool) error
}

// Peer is another node as seen by this one. For one Manager (one address
// family) NodeIP may be of either family, TunnelIP, Blocks and Addrs are of
// the Manager's family. A Peer is a plain value: SetPeers copies it, so the
// caller may reuse it; it is not safe for concurrent mutation.
type Peer struct {
	// Name is the node name, unique among peers.
	Name string
	// NodeIP is the peer's underlay address (FDB destination).
	NodeIP netip.Addr
	// TunnelIP is the address of the peer's VXLAN device: the next hop of
	// its routes.
	TunnelIP netip.Addr
	// TunnelMAC is the peer's VTEP MAC.
	TunnelMAC net.HardwareAddr
	// Blocks are the peer's affine pod blocks.
	Blocks []netip.Prefix
	// Addrs are single addresses the peer borrowed from other nodes' blocks;
	// they are routed as /32 (/128).
	Addrs []netip.Addr
}

// Config configures a Manager. A nil *Config is invalid (Parent, LocalAddr
// and TunnelAddr have no defaults); zero fields get defaults. New copies it;
// it is not safe for concurrent mutation while New reads it.
type Config struct {
	// Device is the VXLAN device name; default DefaultDevice
	// (DefaultDeviceV6 for an IPv6 TunnelAddr).
	Device string
	// VNI defaults to DefaultVNI; Port to DefaultPort.
	VNI, Port int
	// Parent is the underlay device (e.g. "ens33"). Required.
	Parent string
	// LocalAddr is the node's underlay address with its subnet length, e.g.
	// 10.4.7.61/24: the VXLAN source address and, in CrossSubnet mode, the
	// subnet whose peers are routed directly. Required.
	LocalAddr netip.Prefix
	// TunnelAddr is the node's tunnel address, put on Device as a /32
	// (/128). Its family is the Manager's family. Required.
	TunnelAddr netip.Addr
	// MAC is the VTEP MAC. Default: derived from NodeName (MACFromName),
	// so it survives restarts and reboots.
	MAC net.HardwareAddr
	// NodeName names this node; used for the MAC and for logs.
	NodeName string
	// MTU of Device; default parent MTU minus Overhead (OverheadV6 for an
	// IPv6 underlay).
	MTU int
	// Mode defaults to ModeAlways.
	Mode Mode
	// RouteProtocol marks owned routes; default DefaultRouteProtocol.
	RouteProtocol netlink.RouteProtocol
	// ChecksumOffload defaults to ChecksumAuto.
	ChecksumOffload ChecksumOffload
	// Namespace is the path of the network namespace the Netlink handle
	// works in ("" = the caller's); the default Offloader runs its ioctl
	// there.
	Namespace string
	// Offloader replaces the ethtool ioctl. When nil and the Netlink
	// handed to New is itself an Offloader (netlinktest.Kernel is), that
	// one is used: a fake kernel never makes the Manager touch the host.
	Offloader Offloader
	// KernelRelease replaces uname -r for ChecksumAuto (tests), e.g.
	// "5.4.0-42-generic". When empty and the Netlink has a
	// KernelRelease() string method (netlinktest.Kernel), that is used.
	KernelRelease string
	// Logger; nil discards.
	Logger *slog.Logger
}

// MACFromName derives a stable VTEP MAC from a node name: the first six
// bytes of SHA-256(name), made locally administered and unicast.
func MACFromName(name string) net.HardwareAddr {
	s := sha256.Sum256([]byte("tabby-vtep:" + name))
	mac := net.HardwareAddr(slices.Clone(s[:6]))
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return mac
}

// withDefaults validates c and returns a filled-in copy.
func (c *Config) withDefaults() (Config, error) {
	if c == nil {
		return Config{}, fmt.Errorf("%w: nil config (Parent, LocalAddr and TunnelAddr are required)", ErrInvalidConfig)
	}
	o := *c
	if o.Parent == "" || len(o.Parent) > 15 {
		return o, fmt.Errorf("%w: parent %q", ErrInvalidConfig, o.Parent)
	}
	if !o.LocalAddr.IsValid() {
		return o, fmt.Errorf("%w: LocalAddr is required", ErrInvalidConfig)
	}
	o.LocalAddr = netip.PrefixFrom(o.LocalAddr.Addr().Unmap(), o.LocalAddr.Bits())
	if !o.TunnelAddr.IsValid() {
		return o, fmt.Errorf("%w: TunnelAddr is required", ErrInvalidConfig)
	}
	o.TunnelAddr = o.TunnelAddr.Unmap()
	if o.Device == "" {
		o.Device = DefaultDevice
		if o.TunnelAddr.Is6() {
			o.Device = DefaultDeviceV6
		}
	}
	if len(o.Device) > 15 {
		return o, fmt.Errorf("%w: device name %q longer than 15 bytes", ErrInvalidConfig, o.Device)
	}
	if o.VNI == 0 {
		o.VNI = DefaultVNI
	}
	if o.VNI < 0 || o.VNI >= 1<<24 {
		return o, fmt.Errorf("%w: VNI %d", ErrInvalidConfig, o.VNI)
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.Port < 0 || o.Port > 65535 {
		return o, fmt.Errorf("%w: port %d", ErrInvalidConfig, o.Port)
	}
	if o.MTU < 0 || (o.MTU > 0 && o.MTU < 68) {
		return o, fmt.Errorf("%w: MTU %d", ErrInvalidConfig, o.MTU)
	}
	if o.MAC == nil {
		if o.NodeName == "" {
			return o, fmt.Errorf("%w: MAC or NodeName is required", ErrInvalidConfig)
		}
		o.MAC = MACFromName(o.NodeName)
	} else if len(o.MAC) != 6 || o.MAC[0]&1 != 0 || isZeroMAC(o.MAC) {
		return o, fmt.Errorf("%w: VTEP MAC %s must be a 6-byte unicast address", ErrInvalidConfig, o.MAC)
	}
	o.MAC = slices.Clone(o.MAC)
	if o.Mode == 0 {
		o.Mode = ModeAlways
	}
	if o.Mode != ModeAlways && o.Mode != ModeCrossSubnet {
		return o, fmt.Errorf("%w: mode %d", ErrInvalidConfig, o.Mode)
	}
	if o.RouteProtocol == 0 {
		o.RouteProtocol = DefaultRouteProtocol
	}
	if o.RouteProtocol < 5 || o.RouteProtocol > 255 {
		return o, fmt.Errorf("%w: route protocol %d is reserved or out of range", ErrInvalidConfig, o.RouteProtocol)
	}
	if o.ChecksumOffload == 0 {
		o.ChecksumOffload = ChecksumAuto
	}
	if o.ChecksumOffload < ChecksumAuto || o.ChecksumOffload > ChecksumOff {
		return o, fmt.Errorf("%w: checksum offload %d", ErrInvalidConfig, o.ChecksumOffload)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

func isZeroMAC(m net.HardwareAddr) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}

// validatePeers checks peers for one family and returns normalised copies.
func validatePeers(family6 bool, peers []Peer) ([]Peer, error) {
	out := make([]Peer, 0, len(peers))
	names := make(map[string]bool, len(peers))
	dsts := make(map[netip.Prefix]string, len(peers))
	tunnels := make(map[netip.Addr]string, len(peers))
	macs := make(map[string]string, len(peers))
	for _, p := range peers {
		if p.Name == "" {
			return nil, fmt.Errorf("%w: empty name", ErrInvalidPeer)
		}
		if names[p.Name] {
			return nil, fmt.Errorf("%w: duplicate peer %q", ErrInvalidPeer, p.Name)
		}
		names[p.Name] = true
		q := Peer{Name: p.Name, NodeIP: p.NodeIP.Unmap(), TunnelIP: p.TunnelIP.Unmap()}
		if !q.NodeIP.IsValid() || q.NodeIP.IsUnspecified() {
			return nil, fmt.Errorf("%w: %s: node IP %v", ErrInvalidPeer, p.Name, p.NodeIP)
		}
		if !q.TunnelIP.IsValid() || q.TunnelIP.Is6() != family6 || q.TunnelIP.IsUnspecified() {
			return nil, fmt.Errorf("%w: %s: tunnel IP %v", ErrInvalidPeer, p.Name, p.TunnelIP)
		}
		if len(p.TunnelMAC) != 6 || p.TunnelMAC[0]&1 != 0 || isZeroMAC(p.TunnelMAC) {
			return nil, fmt.Errorf("%w: %s: tunnel MAC %v", ErrInvalidPeer, p.Name, p.TunnelMAC)
		}
		q.TunnelMAC = slices.Clone(p.TunnelMAC)
		if o, ok := tunnels[q.TunnelIP]; ok {
			return nil, fmt.Errorf("%w: %s: tunnel IP %s already used by %s", ErrInvalidPeer, p.Name, q.TunnelIP, o)
		}
		tunnels[q.TunnelIP] = p.Name
		if o, ok := macs[string(q.TunnelMAC)]; ok {
			return nil, fmt.Errorf("%w: %s: tunnel MAC %s already used by %s", ErrInvalidPeer, p.Name, q.TunnelMAC, o)
		}
		macs[string(q.TunnelMAC)] = p.Name
		add := func(d netip.Prefix) error {
			if o, ok := dsts[d]; ok {
				return fmt.Errorf("%w: %s: %s already routed to %s", ErrInvalidPeer, p.Name, d, o)
			}
			dsts[d] = p.Name
			return nil
		}
		for _, b := range p.Blocks {
			if !b.IsValid() || b.Addr().Is6() != family6 || b.Masked() != b {
				return nil, fmt.Errorf("%w: %s: block %v", ErrInvalidPeer, p.Name, b)
			}
			if err := add(b); err != nil {
				return nil, err
			}
			q.Blocks = append(q.Blocks, b)
		}
		for _, a := range p.Addrs {
			a = a.Unmap()
			if !a.IsValid() || a.Is6() != family6 {
				return nil, fmt.Errorf("%w: %s: address %v", ErrInvalidPeer, p.Name, a)
			}
			if err := add(netip.PrefixFrom(a, a.BitLen())); err != nil {
				return nil, err
			}
			q.Addrs = append(q.Addrs, a)
		}
		out = append(out, q)
	}
	return out, nil
}
