package netlinktest

import "github.com/tabbynet/tabby/netlinktest/internal/abi"

// Errors the fake returns, the Linux errno values of the real kernel's
// answers, typed syscall.Errno with their Linux numbers on every system (on
// Linux they equal unix.EEXIST and friends). Match them with errors.Is:
//
//	if errors.Is(err, netlinktest.EEXIST) { ... }
const (
	EADDRNOTAVAIL = abi.EADDRNOTAVAIL
	EAFNOSUPPORT  = abi.EAFNOSUPPORT
	EBUSY         = abi.EBUSY
	EEXIST        = abi.EEXIST
	EINVAL        = abi.EINVAL
	ENETDOWN      = abi.ENETDOWN
	ENETUNREACH   = abi.ENETUNREACH
	ENODEV        = abi.ENODEV
	ENOENT        = abi.ENOENT
	EOPNOTSUPP    = abi.EOPNOTSUPP
	ERANGE        = abi.ERANGE
	ESRCH         = abi.ESRCH
)

// Address families the list methods take (AddrList, RouteList,
// RouteListFiltered, NeighList), with the values of netlink.FAMILY_* and
// unix.AF_* on Linux; defined here so that tests using the fake build on
// every system.
const (
	FamilyAll    = abi.FAMILY_ALL // every family
	FamilyV4     = abi.FAMILY_V4  // AF_INET
	FamilyV6     = abi.FAMILY_V6  // AF_INET6
	FamilyBridge = abi.AF_BRIDGE  // AF_BRIDGE: FDB entries in NeighList
)
