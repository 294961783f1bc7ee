package abi

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestErrnoMatchesUnix pins the errno constants to golang.org/x/sys/unix,
// so that the fake returns exactly what the Linux kernel does.
func TestErrnoMatchesUnix(t *testing.T) {
	for _, c := range []struct {
		name      string
		abi, unix unix.Errno
	}{
		{"EADDRNOTAVAIL", EADDRNOTAVAIL, unix.EADDRNOTAVAIL},
		{"EAFNOSUPPORT", EAFNOSUPPORT, unix.EAFNOSUPPORT},
		{"EBADF", EBADF, unix.EBADF},
		{"EBUSY", EBUSY, unix.EBUSY},
		{"EEXIST", EEXIST, unix.EEXIST},
		{"EHOSTUNREACH", EHOSTUNREACH, unix.EHOSTUNREACH},
		{"EINVAL", EINVAL, unix.EINVAL},
		{"ELOOP", ELOOP, unix.ELOOP},
		{"ENETDOWN", ENETDOWN, unix.ENETDOWN},
		{"ENETUNREACH", ENETUNREACH, unix.ENETUNREACH},
		{"ENODEV", ENODEV, unix.ENODEV},
		{"ENOENT", ENOENT, unix.ENOENT},
		{"ENOTSUP", ENOTSUP, unix.ENOTSUP},
		{"EOPNOTSUPP", EOPNOTSUPP, unix.EOPNOTSUPP},
		{"ERANGE", ERANGE, unix.ERANGE},
		{"ESRCH", ESRCH, unix.ESRCH},
	} {
		if c.abi != c.unix {
			t.Errorf("%s = %d, unix has %d", c.name, uintptr(c.abi), uintptr(c.unix))
		}
	}
}
