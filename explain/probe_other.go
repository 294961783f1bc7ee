//go:build !linux

package explain

import (
	"context"
	"errors"
	"net"
)

// ProbeARP returns a probe that fails with errors.ErrUnsupported: there are
// no network namespaces on this system.
func ProbeARP(nsPath, ifname string) func(ctx context.Context) (net.HardwareAddr, error) {
	return func(context.Context) (net.HardwareAddr, error) { return nil, errors.ErrUnsupported }
}
