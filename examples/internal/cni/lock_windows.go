//go:build windows

package cni

import (
	"os"

	"golang.org/x/sys/windows"
)

// The lock is a byte-range lock on one byte far beyond the (empty) lock
// file's content, as in datastore/bolt.
const (
	lockOffsetHigh = 1 // offset 1<<32
	lockLen        = 1
)

// lockFile takes an exclusive LockFileEx lock on f. With wait it blocks
// until it gets the lock; without, it fails at once if another process
// holds it.
func lockFile(f *os.File, wait bool) error {
	flags := uint32(windows.LOCKFILE_EXCLUSIVE_LOCK)
	if !wait {
		flags |= windows.LOCKFILE_FAIL_IMMEDIATELY
	}
	ol := &windows.Overlapped{OffsetHigh: lockOffsetHigh}
	return windows.LockFileEx(windows.Handle(f.Fd()), flags, 0, lockLen, 0, ol)
}

// unlockClose releases f's lock and closes f. Windows releases the locks
// of a closed handle only eventually, so unlock explicitly first.
func unlockClose(f *os.File) {
	ol := &windows.Overlapped{OffsetHigh: lockOffsetHigh}
	windows.UnlockFileEx(windows.Handle(f.Fd()), 0, lockLen, 0, ol)
	f.Close()
}
