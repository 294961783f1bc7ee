//go:build linux

package explain

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/mdlayher/arp"
	"github.com/tabbynet/tabby/internal/nsenter"
)

// ProbeARP returns an Input.ProbeARP that sends one ARP request for
// 169.254.1.1 out of ifname inside the namespace at nsPath (a packet socket
// opened there; the calling thread does not move) and returns the MAC that
// answered. The request stays on the pod's veth: only the host side sees it.
func ProbeARP(nsPath, ifname string) func(ctx context.Context) (net.HardwareAddr, error) {
	return func(ctx context.Context) (net.HardwareAddr, error) {
		var c *arp.Client
		err := nsenter.DoPath(nsPath, func() error {
			ifi, err := net.InterfaceByName(ifname)
			if err != nil {
				return err
			}
			c, err = arp.Dial(ifi)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("explain: arp socket in %s: %w", nsPath, err)
		}
		defer c.Close()
		dl := time.Now().Add(2 * time.Second)
		if d, ok := ctx.Deadline(); ok && d.Before(dl) {
			dl = d
		}
		if err := c.SetDeadline(dl); err != nil {
			return nil, err
		}
		mac, err := c.Resolve(gateway)
		if err != nil {
			return nil, fmt.Errorf("explain: who has %v: %w", gateway, err)
		}
		return mac, nil
	}
}
