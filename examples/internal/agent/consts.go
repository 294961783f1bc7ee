package agent

import "time"

// Proxy-ARP modes.
const (
	ProxyARPUserspace = "userspace"
	ProxyARPKernel    = "kernel"
)

// Defaults.
const (
	DefaultResyncInterval = 90 * time.Second
	DefaultStateDir       = "/var/lib/tabby"
	DefaultSysctlRoot     = "/proc/sys"
	// HostPrefix is the host-side interface prefix of pods (veth's).
	HostPrefix = "cali"
	// routeProtocol is the protocol veth and vxlan give their routes.
	routeProtocol = 80
)
