//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris

package bolt

import (
	"os"

	"golang.org/x/sys/unix"
)

// HoldLock takes the store's file lock on f the way another process would
// (exclusive if write), for tests that simulate one.
func HoldLock(f *os.File, write bool) error { return lockFile(f, write, true) }

// DropLock releases what HoldLock took, keeping f open.
func DropLock(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_UN) }
