package kerneltest

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/tabbynet/tabby/internal/probe"
)

// Ping sends ICMP echo requests from namespace n to dst until a reply
// arrives or timeout passes (see probe.Ping). It returns the address the
// reply came from. It is the Go replacement for `ip netns exec n ping dst`.
func (n *NS) Ping(dst netip.Addr, timeout time.Duration) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	a, err := probe.Ping(ctx, n.Path, dst)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("from %s: %w (no reply within %v)", n.Name, err, timeout)
	}
	return a, nil
}

// MustPing fails t unless dst answers a ping from n within 2 seconds.
func (n *NS) MustPing(t interface {
	Helper()
	Fatalf(string, ...any)
}, dst netip.Addr) {
	t.Helper()
	if _, err := n.Ping(dst, 2*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, n.Dump())
	}
}
