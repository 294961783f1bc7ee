package vxlan

// Linux netlink constants, spelled out so that the package also builds on
// other systems (where golang.org/x/sys/unix and netlink lack them).
const (
	afInet       = 2    // AF_INET, netlink.FAMILY_V4
	afInet6      = 10   // AF_INET6, netlink.FAMILY_V6
	afBridge     = 7    // AF_BRIDGE: FDB entries
	nudPermanent = 0x80 // NUD_PERMANENT
	ntfSelf      = 0x02 // NTF_SELF
	rtnUnicast   = 1    // RTN_UNICAST
	rtnBlackhole = 6    // RTN_BLACKHOLE
	rtTableMain  = 254  // RT_TABLE_MAIN
	rtnhFOnlink  = 4    // RTNH_F_ONLINK
)
