//go:build linux

package kerneltest

import (
	"fmt"

	"github.com/tabbynet/tabby/internal/probe"
)

// Frame is one captured IPv4 packet; see probe.Frame.
type Frame = probe.Frame

// Capture is an AF_PACKET capture on one interface; see probe.Capture.
type Capture = probe.Capture

// StartCapture opens an AF_PACKET capture in n on the interface called dev
// and records every IPv4 frame until Stop: the Go replacement for
// `tcpdump -i dev`.
func (n *NS) StartCapture(dev string) (*Capture, error) {
	l, err := n.Handle.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("capture %s/%s: %w", n.Name, dev, err)
	}
	c, err := probe.StartCapture(n.Path, l.Attrs().Index)
	if err != nil {
		return nil, fmt.Errorf("capture %s/%s: %w", n.Name, dev, err)
	}
	return c, nil
}
