//go:build linux

package nettools

import "github.com/tabbynet/tabby/internal/probe"

// Frame is one captured IPv4 packet; see probe.Frame.
type Frame = probe.Frame

// Capture records IPv4 frames on one interface of a namespace; see
// probe.Capture.
type Capture = probe.Capture

// StartCapture opens an AF_PACKET socket bound to the interface with
// index ifindex in the namespace at nsPath and records every IPv4 frame
// until Stop (probe.StartCapture).
func StartCapture(nsPath string, ifindex int) (*Capture, error) {
	return probe.StartCapture(nsPath, ifindex)
}
