//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris || windows)

package bolt

import (
	"errors"
	"fmt"
	"os"
)

// lockFile reports errors.ErrUnsupported: this system has no file lock
// this package knows how to take, so no operation can run.
func lockFile(*os.File, bool, bool) error {
	return fmt.Errorf("bolt: cross-process file lock: %w", errors.ErrUnsupported)
}

// unlockClose closes f.
func unlockClose(f *os.File) { f.Close() }
