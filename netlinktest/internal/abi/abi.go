// Package abi holds the Linux values of the netlink and rtnetlink
// constants netlinktest uses, so that the fake builds (and means Linux)
// on every system: golang.org/x/sys/unix and vishvananda/netlink define
// them only on Linux, and other systems give some of them other values.
package abi

// Linux values (include/uapi/linux/*.h), as in golang.org/x/sys/unix.
const (
	AF_BRIDGE           = 0x7
	AF_INET             = 0x2
	AF_INET6            = 0xa
	AF_UNSPEC           = 0x0
	RTM_NEWLINK         = 0x10
	RTM_DELLINK         = 0x11
	RTN_UNSPEC          = 0x0
	RTN_UNICAST         = 0x1
	RTN_LOCAL           = 0x2
	RTN_BROADCAST       = 0x3
	RTN_ANYCAST         = 0x4
	RTN_MULTICAST       = 0x5
	RTN_BLACKHOLE       = 0x6
	RTN_UNREACHABLE     = 0x7
	RTN_PROHIBIT        = 0x8
	RTN_THROW           = 0x9
	RTN_XRESOLVE        = 0xb
	RT_SCOPE_UNIVERSE   = 0x0
	RT_SCOPE_SITE       = 0xc8
	RT_SCOPE_LINK       = 0xfd
	RT_SCOPE_HOST       = 0xfe
	RT_SCOPE_NOWHERE    = 0xff
	RTPROT_KERNEL       = 0x2
	RTPROT_BOOT         = 0x3
	RTPROT_STATIC       = 0x4
	RTNH_F_ONLINK       = 0x4
	RTNH_F_LINKDOWN     = 0x10
	IFF_UP              = 0x1
	IFF_BROADCAST       = 0x2
	IFF_LOOPBACK        = 0x8
	IFF_POINTOPOINT     = 0x10
	IFF_RUNNING         = 0x40
	IFF_NOARP           = 0x80
	IFF_MULTICAST       = 0x1000
	IFF_LOWER_UP        = 0x10000
	IFA_F_SECONDARY     = 0x1
	IFA_F_PERMANENT     = 0x80
	IFA_F_NOPREFIXROUTE = 0x200
	IFA_F_NODAD         = 0x2
	RT_TABLE_UNSPEC     = 0x0
	RT_TABLE_MAIN       = 0xfe
	RT_TABLE_LOCAL      = 0xff
	RT_TABLE_DEFAULT    = 0xfd
	ARPHRD_ETHER        = 0x1
	ARPHRD_LOOPBACK     = 0x304
	// From vishvananda/netlink (neigh_linux.go, route_linux.go, nl).
	NUD_NONE       = 0x00
	NUD_INCOMPLETE = 0x01
	NUD_REACHABLE  = 0x02
	NUD_STALE      = 0x04
	NUD_DELAY      = 0x08
	NUD_PROBE      = 0x10
	NUD_FAILED     = 0x20
	NUD_NOARP      = 0x40
	NUD_PERMANENT  = 0x80
	NTF_USE        = 0x01
	NTF_SELF       = 0x02
	NTF_MASTER     = 0x04
	NTF_PROXY      = 0x08
	NTF_ROUTER     = 0x80
	FAMILY_ALL     = AF_UNSPEC
	FAMILY_V4      = AF_INET
	FAMILY_V6      = AF_INET6
)
