//go:build !linux

package probe

import (
	"errors"
	"fmt"
)

// Capture is an AF_PACKET capture; it exists only on Linux.
type Capture struct{}

// StartCapture returns an error wrapping errors.ErrUnsupported: AF_PACKET
// sockets exist only on Linux.
func StartCapture(nsPath string, ifindex int) (*Capture, error) {
	return nil, fmt.Errorf("probe: capture on ifindex %d: %w", ifindex, errors.ErrUnsupported)
}

// Frames returns nothing: there is no capture off Linux.
func (c *Capture) Frames() []Frame { return nil }

// Stop returns no frames and errors.ErrUnsupported.
func (c *Capture) Stop() ([]Frame, error) {
	return nil, fmt.Errorf("probe: capture: %w", errors.ErrUnsupported)
}
