package veth

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
)

// Plumber creates, checks and removes pod veth pairs in one host network
// namespace. It is safe for concurrent use when its Netlink and Sysctl
// are (*netlink.Handle and netlinktest.Kernel are), provided calls for the
// same workload key are not concurrent: callers (a CNI plugin run per pod)
// serialise per key.
type Plumber struct {
	host   Netlink
	sysctl Sysctl
	open   OpenFunc
	log    *slog.Logger
	prefix string
	mac    net.HardwareAddr
	mtu    int
	arp    ARPMode
	strict bool
	proto  int
}

// New returns a Plumber that puts host interfaces in the namespace of host
// (a *netlink.Handle, e.g. from netlink.NewHandle(), or a fake). A nil cfg
// means all defaults. Invalid configuration gives an *InputError.
func New(host Netlink, cfg *Config) (*Plumber, error) {
	if host == nil {
		return nil, &InputError{Field: "host", Value: "<nil>", Reason: "no host netlink handle", Err: ErrInvalidConfig}
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	p := &Plumber{host: host, sysctl: c.Sysctl, open: c.Open, log: c.Logger,
		prefix: c.Prefix, mtu: c.MTU, arp: c.ARP, strict: c.StrictRPFilter, proto: int(c.Protocol)}
	if p.prefix == "" {
		p.prefix = DefaultPrefix
	}
	if len(p.prefix) > MaxPrefixLen {
		return nil, &InputError{Field: "prefix", Value: p.prefix,
			Reason: fmt.Sprintf("longer than %d bytes", MaxPrefixLen), Err: ErrInvalidConfig}
	}
	if err := ValidateIfName(p.prefix); err != nil {
		return nil, &InputError{Field: "prefix", Value: p.prefix, Reason: "not usable in an interface name", Err: ErrInvalidConfig, Cause: err}
	}
	p.mac = DefaultHostMAC()
	if c.HostMAC != nil {
		if len(c.HostMAC) != 6 || c.HostMAC[0]&1 != 0 || bytes.Equal(c.HostMAC, make(net.HardwareAddr, 6)) {
			return nil, &InputError{Field: "host MAC", Value: c.HostMAC.String(),
				Reason: "not a unicast Ethernet address", Err: ErrInvalidConfig}
		}
		p.mac = append(net.HardwareAddr(nil), c.HostMAC...)
	}
	if p.mtu == 0 {
		p.mtu = DefaultMTU
	}
	if err := validMTU(p.mtu); err != nil {
		return nil, err
	}
	switch p.arp {
	case 0:
		p.arp = ARPKernel
	case ARPKernel, ARPUserspace:
	default:
		return nil, &InputError{Field: "ARP mode", Value: p.arp.String(), Reason: "unknown", Err: ErrInvalidConfig}
	}
	if p.proto == 0 {
		p.proto = int(RouteProtocol)
	}
	if p.proto < 0 || p.proto > 255 {
		return nil, &InputError{Field: "route protocol", Value: fmt.Sprint(p.proto), Reason: "outside 1..255", Err: ErrInvalidConfig}
	}
	if p.sysctl == nil {
		if s, ok := host.(Sysctl); ok {
			p.sysctl = s
		} else {
			p.sysctl = SysctlAt("")
		}
	}
	if p.open == nil {
		p.open = OpenNetNS
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p, nil
}

// HostIfName is the host interface name this Plumber gives the workload
// with key.
func (p *Plumber) HostIfName(key string) string { return HostIfName(p.prefix, key) }

// spec is a validated Pod with defaults applied.
type spec struct {
	key    string
	host   string // host interface name
	netns  string
	ifname string
	addrs  []netip.Prefix // single-host prefixes, in order given
	mtu    int
}

func validKey(key string) error {
	if key == "" {
		return &InputError{Field: "workload key", Value: key, Reason: "empty", Err: ErrInvalidKey}
	}
	return nil
}

// validate checks pod; needNS says whether NetNS is required (not for
// Teardown).
func (p *Plumber) validate(pod Pod) (*spec, error) {
	if err := validKey(pod.Key); err != nil {
		return nil, err
	}
	s := &spec{key: pod.Key, host: p.HostIfName(pod.Key), netns: pod.NetNS, ifname: pod.IfName, mtu: pod.MTU}
	if s.ifname == "" {
		s.ifname = DefaultPodIfName
	}
	if err := ValidateIfName(s.ifname); err != nil {
		return nil, err
	}
	if s.netns == "" {
		return nil, &InputError{Field: "netns", Value: "", Reason: "empty path", Err: ErrInvalidNetNS}
	}
	if s.mtu == 0 {
		s.mtu = p.mtu
	}
	if err := validMTU(s.mtu); err != nil {
		return nil, err
	}
	if len(pod.Addrs) == 0 {
		return nil, &InputError{Field: "address", Value: "", Reason: "no pod address", Err: ErrInvalidAddress}
	}
	seen := make(map[netip.Addr]bool, len(pod.Addrs))
	for _, a := range pod.Addrs {
		if err := validAddr(a); err != nil {
			return nil, err
		}
		if seen[a.Addr()] {
			return nil, &InputError{Field: "address", Value: a.String(), Reason: "given twice", Err: ErrInvalidAddress}
		}
		seen[a.Addr()] = true
		s.addrs = append(s.addrs, a)
	}
	return s, nil
}

func validAddr(a netip.Prefix) error {
	bad := func(reason string) error {
		return &InputError{Field: "address", Value: a.String(), Reason: reason, Err: ErrInvalidAddress}
	}
	ip := a.Addr()
	switch {
	case !a.IsValid():
		return bad("not a valid prefix")
	case ip.Is4In6():
		return bad("IPv4-mapped IPv6 address; give the IPv4 address")
	case !a.IsSingleIP():
		return bad(fmt.Sprintf("not a single host address (want /%d)", ip.BitLen()))
	case ip.IsUnspecified(), ip.IsMulticast(), ip.IsLoopback(), ip.IsLinkLocalUnicast(),
		ip.Is4() && ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return bad("not a usable unicast pod address")
	}
	return nil
}
