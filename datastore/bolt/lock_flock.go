//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris

package bolt

import (
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes a flock on f: exclusive to write, shared to read. With
// wait it blocks in the kernel (retrying after signals) until it gets the
// lock; without, it fails at once if another process holds a conflicting
// one.
func lockFile(f *os.File, write, wait bool) error {
	how := unix.LOCK_SH
	if write {
		how = unix.LOCK_EX
	}
	if !wait {
		return unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
	}
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}

// unlockClose closes f, which drops its flock.
func unlockClose(f *os.File) { f.Close() }
