package abi

import "syscall"

// Linux errno values (include/uapi/asm-generic/errno*.h), as in
// golang.org/x/sys/unix, typed syscall.Errno: on Linux unix.Errno is an
// alias of syscall.Errno, so these are the very values the kernel returns
// (same type, same value, same Error text); on other systems syscall.Errno
// still exists, so the fake builds and keeps returning the Linux numbers.
const (
	EADDRNOTAVAIL = syscall.Errno(0x63)
	EAFNOSUPPORT  = syscall.Errno(0x61)
	EBADF         = syscall.Errno(0x9)
	EBUSY         = syscall.Errno(0x10)
	EEXIST        = syscall.Errno(0x11)
	EHOSTUNREACH  = syscall.Errno(0x71)
	EINVAL        = syscall.Errno(0x16)
	ELOOP         = syscall.Errno(0x28)
	ENETDOWN      = syscall.Errno(0x64)
	ENETUNREACH   = syscall.Errno(0x65)
	ENODEV        = syscall.Errno(0x13)
	ENOENT        = syscall.Errno(0x2)
	ENOTSUP       = syscall.Errno(0x5f)
	EOPNOTSUPP    = syscall.Errno(0x5f)
	ERANGE        = syscall.Errno(0x22)
	ESRCH         = syscall.Errno(0x3)
)
