//go:build !linux

package nsenter

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netns"
)

// Do reports errors.ErrUnsupported: network namespaces exist only on Linux.
func Do(ns netns.NsHandle, fn func() error) error {
	return fmt.Errorf("nsenter: setns: %w", errors.ErrUnsupported)
}

// DoPath runs fn directly for an empty path (the caller's own namespace,
// the only one there is); any other path is errors.ErrUnsupported.
func DoPath(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	return fmt.Errorf("nsenter: open %s: %w", path, errors.ErrUnsupported)
}
