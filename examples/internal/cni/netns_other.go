//go:build !linux

package cni

import (
	"errors"
	"fmt"
)

// CheckNetNS is the default Env.CheckNetNS: pods have no network
// namespaces outside Linux.
func CheckNetNS(path string) error {
	return fmt.Errorf("check netns %s: %w", path, errors.ErrUnsupported)
}
