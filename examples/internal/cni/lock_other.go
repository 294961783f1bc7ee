//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris || windows)

package cni

import (
	"errors"
	"fmt"
	"os"
)

// lockFile reports errors.ErrUnsupported: this system has no file lock
// this package knows how to take.
func lockFile(*os.File, bool) error {
	return fmt.Errorf("cross-process file lock: %w", errors.ErrUnsupported)
}

// unlockClose closes f.
func unlockClose(f *os.File) { f.Close() }
