package vxlan

import (
	"errors"
	"syscall"
)

// Linux errno values the Manager tells apart (netlink returns them as
// syscall.Errno; x/sys/unix.Errno is the same type).
const (
	errNoEnt        = syscall.Errno(2)  // ENOENT
	errSrch         = syscall.Errno(3)  // ESRCH
	errExist        = syscall.Errno(17) // EEXIST
	errNoDev        = syscall.Errno(19) // ENODEV
	errAddrNotAvail = syscall.Errno(99) // EADDRNOTAVAIL
)

// isErrno reports whether err wraps one of the errnos.
func isErrno(err error, errnos ...syscall.Errno) bool {
	var e syscall.Errno
	if !errors.As(err, &e) {
		return false
	}
	for _, x := range errnos {
		if e == x {
			return true
		}
	}
	return false
}
