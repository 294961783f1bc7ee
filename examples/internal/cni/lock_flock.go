//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris

package cni

import (
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive flock on f. With wait it blocks until it
// gets the lock; without, it fails at once if another process holds it.
func lockFile(f *os.File, wait bool) error {
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	return unix.Flock(int(f.Fd()), how)
}

// unlockClose closes f, which releases its flock.
func unlockClose(f *os.File) { f.Close() }
