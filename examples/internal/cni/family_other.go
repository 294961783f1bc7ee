//go:build !linux

package cni

import "syscall"

// netlink's address families (AF_INET, AF_INET6 on Linux), which
// vishvananda/netlink defines only on Linux.
const (
	familyV4 = 0x2
	familyV6 = 0xa
)

// errNoDev is what the kernel says of a missing link.
const errNoDev = syscall.ENODEV
