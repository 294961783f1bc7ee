package veth

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netlink"
)

// Netlink is the part of *netlink.Handle that veth uses, with the same
// signatures: *netlink.Handle and *netlinktest.Kernel both satisfy it.
type Netlink interface {
	LinkAdd(link netlink.Link) error
	LinkDel(link netlink.Link) error
	LinkByName(name string) (netlink.Link, error)
	LinkSetUp(link netlink.Link) error
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	RouteAdd(route *netlink.Route) error
	RouteReplace(route *netlink.Route) error
	RouteList(link netlink.Link, family int) ([]netlink.Route, error)
}

// Sysctl reads and writes /proc/sys keys of one network namespace. Keys are
// relative to /proc/sys in slash form ("net/ipv4/conf/cali0/forwarding").
// *netlinktest.Kernel satisfies it, and so does the value SysctlAt returns.
type Sysctl interface {
	SetSysctl(key, value string) error
	Sysctl(key string) (string, error)
}

// PodNetNS is an open pod network namespace: a netlink handle inside it,
// the namespace file descriptor (for netlink.NsFd when creating the veth
// peer directly in it) and Close. *netlinktest.Kernel satisfies it.
type PodNetNS interface {
	Netlink
	Fd() int
	Close()
}

// OpenFunc opens the network namespace bound at path (a /var/run/netns
// file or /proc/<pid>/ns/net). It returns an error wrapping fs.ErrNotExist
// (unix.ENOENT does) when there is nothing at path, and one wrapping
// ErrNotNamespace when path is not a network namespace; Setup and Check
// report both as ErrInvalidNetNS.
type OpenFunc func(path string) (PodNetNS, error)

// Opener adapts a function returning any concrete PodNetNS to an OpenFunc,
// so a fake plugs in with a one-liner:
//
//	cfg := &veth.Config{Open: veth.Opener(kernel.NamespaceAt)}
func Opener[N PodNetNS](open func(path string) (N, error)) OpenFunc {
	return func(path string) (PodNetNS, error) {
		n, err := open(path)
		if err != nil {
			return nil, err
		}
		return n, nil
	}
}

// ARPMode chooses who answers a pod's ARP request for its gateway
// 169.254.1.1. Its zero value is not a mode; in a Config it selects the
// default, ARPKernel.
type ARPMode int

const (
	_ ARPMode = iota
	// ARPKernel sets proxy_arp=1 and neigh proxy_delay=0 on the host
	// interface: the kernel answers with the host interface's MAC, as
	// Calico does. The kernel only proxies for addresses it has a route to
	// through another interface, so the host needs a default route.
	ARPKernel
	// ARPUserspace leaves proxy_arp off: a userspace responder (tabby's
	// proxyarp package) answers.
	ARPUserspace
)

func (m ARPMode) String() string {
	switch m {
	case ARPKernel:
		return "kernel"
	case ARPUserspace:
		return "userspace"
	}
	return "ARPMode(" + strconv.Itoa(int(m)) + ")"
}

// Defaults (Calico-compatible).
const (
	// DefaultMTU is 1500 minus 50 bytes of VXLAN overhead, as in the seed.
	DefaultMTU = 1450
	// MinMTU and MaxMTU bound a valid MTU (IPv4 minimum, 16-bit maximum).
	MinMTU = 68
	MaxMTU = 65535
	// DefaultPodIfName is the pod-side interface name.
	DefaultPodIfName = "eth0"
	// RouteProtocol is tabby's route protocol number, the rtm_protocol of
	// every route tabby owns in the host namespace: 80, the number Calico
	// uses for the routes it programs ("proto 80" in `ip route`). The
	// vxlan package's DefaultRouteProtocol has the same value, so one
	// protocol marks all of tabby's host routes; vxlan tells its own
	// (gateway or vxlan device) from veth's (no gateway, on a pod
	// interface) and never touches the latter.
	RouteProtocol netlink.RouteProtocol = 80
)

// DefaultHostMAC is the host-side MAC of every pod veth, as in Calico.
// It is a function because Go has no constant slices.
func DefaultHostMAC() net.HardwareAddr { return net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee} }

// Gateway4 returns 169.254.1.1, the IPv4 gateway every pod routes through.
// Nothing owns it: the host interface answers ARP for it (see ARPMode).
func Gateway4() netip.Addr { return netip.AddrFrom4([4]byte{169, 254, 1, 1}) }

// Config configures a Plumber. A nil *Config means all defaults. A Config
// must not be changed after New.
type Config struct {
	// Prefix of host interface names; empty means DefaultPrefix. At most
	// MaxPrefixLen bytes so that names stay within 15 bytes.
	Prefix string
	// HostMAC of every host-side interface; nil means DefaultHostMAC.
	HostMAC net.HardwareAddr
	// MTU of both ends; 0 means DefaultMTU. Pod.MTU overrides it.
	MTU int
	// ARP chooses the proxy-ARP mode; zero means ARPKernel.
	ARP ARPMode
	// StrictRPFilter sets rp_filter=1 (strict reverse-path filtering) on
	// host interfaces, so a pod cannot send with a source address that is
	// not routed back to it.
	StrictRPFilter bool
	// Protocol is the rtm_protocol of host routes to pods; zero means
	// RouteProtocol.
	Protocol netlink.RouteProtocol
	// Sysctl of the host namespace. Nil means: the host Netlink itself
	// when it implements Sysctl (netlinktest.Kernel does), else this
	// process's /proc/sys (SysctlAt("")).
	Sysctl Sysctl
	// Open opens pod namespaces; nil means OpenNetNS (netns.GetFromPath
	// and netlink.NewHandleAt).
	Open OpenFunc
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// Pod describes one workload's interface.
type Pod struct {
	// Key is the workload key (WorkloadKey(namespace, pod) for Kubernetes,
	// else the container ID). Required.
	Key string
	// NetNS is the path of the pod's network namespace. Required for Setup
	// and Check; Teardown does not need it.
	NetNS string
	// IfName is the pod-side interface name; empty means DefaultPodIfName.
	IfName string
	// Addrs are the pod's addresses, each a single host address
	// (10.244.0.5/32, 2001:db8::5/128). At least one, of either family.
	Addrs []netip.Prefix
	// MTU overrides Config.MTU when non-zero.
	MTU int
}

// Result is what Setup made, with what a CNI result needs.
type Result struct {
	HostIfName string
	HostIndex  int
	HostMAC    net.HardwareAddr
	PodIfName  string
	PodIndex   int
	PodMAC     net.HardwareAddr
	// Sandbox is the pod namespace path (the CNI "sandbox").
	Sandbox string
	MTU     int
	// IPs are the pod's addresses with their gateways, on the pod
	// interface.
	IPs []IPConfig
}

// IPConfig is one pod address and the gateway of its family
// (Gateway4() or LinkLocal of the host MAC).
type IPConfig struct {
	Address netip.Prefix
	Gateway netip.Addr
}

func validMTU(mtu int) error {
	if mtu < MinMTU || mtu > MaxMTU {
		return &InputError{Field: "MTU", Value: strconv.Itoa(mtu),
			Reason: fmt.Sprintf("outside %d..%d", MinMTU, MaxMTU), Err: ErrInvalidMTU}
	}
	return nil
}

// LinkLocal returns the EUI-64 IPv6 link-local address of mac
// (fe80::ecee:eeff:feee:eeee for ee:ee:ee:ee:ee:ee), the IPv6 gateway of
// pods.
func LinkLocal(mac net.HardwareAddr) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	if len(mac) == 6 {
		b[8], b[9], b[10] = mac[0]^0x02, mac[1], mac[2]
		b[11], b[12] = 0xff, 0xfe
		b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	}
	return netip.AddrFrom16(b)
}
