package cni

import (
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netlink's address families.
const (
	familyV4 = netlink.FAMILY_V4
	familyV6 = netlink.FAMILY_V6
)

// errNoDev is what the kernel says of a missing link.
const errNoDev = unix.ENODEV
