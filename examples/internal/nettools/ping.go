//go:build linux

package nettools

import (
	"context"
	"net/netip"
	"time"

	"github.com/tabbynet/tabby/internal/probe"
)

// Ping sends ICMP echo requests from the namespace at nsPath to dst until
// a reply arrives or timeout passes (probe.Ping). It returns the address
// the reply came from.
func Ping(nsPath string, dst netip.Addr, timeout time.Duration) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return probe.Ping(ctx, nsPath, dst)
}

// PingStream sends one ICMP echo request every interval from the namespace
// at nsPath to dst until stop is closed (probe.PingStream). It returns how
// many requests were sent and how many distinct replies came back.
func PingStream(nsPath string, dst netip.Addr, interval time.Duration, stop <-chan struct{}) (sent, received int, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return probe.PingStream(ctx, nsPath, dst, interval)
}
