package cni

import "github.com/vishvananda/netlink"

// familyV4 is netlink's IPv4 address family.
const familyV4 = netlink.FAMILY_V4
