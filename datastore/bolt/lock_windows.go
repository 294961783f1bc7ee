//go:build windows

package bolt

import (
	"os"

	"golang.org/x/sys/windows"
)

// The lock is a byte-range lock on one byte far beyond the lock file's
// content. Windows byte-range locks are mandatory, so locking the first 8
// bytes (where writers publish the revision) would stop other processes'
// watches from reading them.
const (
	lockOffsetHigh = 1 // offset 1<<32
	lockLen        = 1
)

// lockFile takes a LockFileEx lock on f: exclusive to write, shared to
// read. With wait it blocks until it gets the lock; without, it fails at
// once if another process holds a conflicting one.
func lockFile(f *os.File, write, wait bool) error {
	var flags uint32
	if write {
		flags |= windows.LOCKFILE_EXCLUSIVE_LOCK
	}
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
