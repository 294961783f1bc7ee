//go:build !linux

package cni

// familyV4 is netlink's IPv4 address family (AF_INET on Linux), which
// vishvananda/netlink defines only on Linux.
const familyV4 = 0x2
