//go:build windows

package bolt

import (
	"os"

	"golang.org/x/sys/windows"
)

// HoldLock takes the store's file lock on f the way another process would
// (exclusive if write), for tests that simulate one.
func HoldLock(f *os.File, write bool) error { return lockFile(f, write, true) }

// DropLock releases what HoldLock took, keeping f open.
func DropLock(f *os.File) error {
	ol := &windows.Overlapped{OffsetHigh: lockOffsetHigh}
	return windows.UnlockFileEx(windows.Handle(f.Fd()), 0, lockLen, 0, ol)
}
