package cni

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tabbynet/tabby/ipam"
)

// IPAMPlugin implements the standalone tabby-ipam plugin: block IPAM with
// handles and GC for ptp, bridge, macvlan and other main plugins. It needs
// only Env.OpenStore (and Hostname, Stderr). Safe for concurrent use.
type IPAMPlugin struct {
	p *Plugin
}

// NewIPAM returns the standalone IPAM plugin on env.
func NewIPAM(env Env) *IPAMPlugin { return &IPAMPlugin{p: New(env)} }

// Add allocates one IPv4 address to <network>.<containerID>.<ifname> and
// returns it as a /32 with the configured gateway (default 169.254.1.1)
// and routes (default 0.0.0.0/0). A repeated ADD returns the same address.
func (ip *IPAMPlugin) Add(args *skel.CmdArgs) (types.Result, error) {
	var res *types100.Result
	if args.Netns != "" {
		// Not used by IPAM, but a call for the host's own namespace is
		// refused before anything is allocated, as the main plugin does.
		if err := ValidateCmdArgs(args); err != nil {
			return nil, err
		}
		if err := ip.p.env.CheckNetNS(args.Netns); err != nil {
			return nil, err
		}
	}
	err := ip.withIPAM(args, "ADD", func(ctx context.Context, c *call, m *ipam.IPAM) error {
		var err error
		res, err = c.ipamResult(ctx, m)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// withIPAM runs fn for one plugin call with its configuration, logger and
// IPAM opened, and closes them afterwards.
func (ip *IPAMPlugin) withIPAM(args *skel.CmdArgs, cmd string, fn func(context.Context, *call, *ipam.IPAM) error) error {
	ctx, cancel := ip.p.ctx()
	defer cancel()
	c, err := ip.p.begin(args, cmd, true)
	if err != nil {
		return err
	}
	defer c.close()
	m, err := c.ipam(ctx)
	if err != nil {
		return err
	}
	return fn(ctx, c, m)
}

// ipamResult assigns the call's addresses and builds the IPAM result.
func (c *call) ipamResult(ctx context.Context, m *ipam.IPAM) (*types100.Result, error) {
	a, err := c.assign(ctx, m, nil)
	if err != nil {
		return nil, err
	}
	gw := c.conf.IPAM.GatewayAddr
	res := &types100.Result{CNIVersion: types100.ImplementedSpecVersion}
	for _, p := range a.addrs {
		if p.Addr().Is6() {
			// IPv6 (dual stack): a /128; the main plugin routes it
			// (the gateway and prefixLength settings are IPv4's).
			res.IPs = append(res.IPs, &types100.IPConfig{
				Address: net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(128, 128)},
			})
			continue
		}
		res.IPs = append(res.IPs, &types100.IPConfig{
			Address: net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(c.conf.IPAM.PrefixLength, 32)},
			Gateway: gw.AsSlice(),
		})
	}
	for _, r := range c.conf.IPAM.RoutePrefix {
		res.Routes = append(res.Routes, &types.Route{
			Dst: net.IPNet{IP: r.Addr().AsSlice(), Mask: net.CIDRMask(r.Bits(), r.Addr().BitLen())},
		})
	}
	c.log.Info("assigned", "addrs", a.addrs)
	return res, nil
}

// Del releases the handle's addresses; unknown handles succeed.
func (ip *IPAMPlugin) Del(args *skel.CmdArgs) error {
	return ip.withIPAM(args, "DEL", func(ctx context.Context, c *call, m *ipam.IPAM) error {
		_, err := c.release(ctx, m)
		return err
	})
}

// Check verifies that the handle holds exactly the addresses of
// prevResult.
func (ip *IPAMPlugin) Check(args *skel.CmdArgs) error {
	return ip.withIPAM(args, "CHECK", func(ctx context.Context, c *call, m *ipam.IPAM) error {
		return c.checkIPAM(ctx, m)
	})
}

// checkIPAM compares the handle's addresses with prevResult.
func (c *call) checkIPAM(ctx context.Context, m *ipam.IPAM) error {
	prev, err := c.prevResult()
	if err != nil {
		return err
	}
	held, err := m.HandleAddrs(ctx, c.handle)
	if err != nil {
		return fmt.Errorf("ipam: handle %s: %w", c.handle, err)
	}
	var want []netip.Addr
	for _, x := range prev.IPs {
		a, ok := netip.AddrFromSlice(x.Address.IP)
		if !ok {
			return &checkError{fmt.Sprintf("prevResult address %v is invalid", x.Address)}
		}
		want = append(want, a.Unmap())
	}
	slices.SortFunc(held, netip.Addr.Compare)
	slices.SortFunc(want, netip.Addr.Compare)
	// The main plugin's prevResult may carry addresses of other IPAMs
	// (dual stack): every held address must be in it.
	for _, h := range held {
		if !slices.Contains(want, h) {
			return &checkError{fmt.Sprintf("ipam: handle %s holds %v, not in prevResult %v", c.handle, h, want)}
		}
	}
	if len(held) == 0 {
		return &checkError{fmt.Sprintf("ipam: handle %s holds no address, prevResult has %v", c.handle, want)}
	}
	return nil
}

// GC releases this network's allocations on this node whose attachments
// are not valid.
func (ip *IPAMPlugin) GC(args *skel.CmdArgs) error {
	return ip.withIPAM(args, "GC", func(ctx context.Context, c *call, m *ipam.IPAM) error {
		return c.gc(ctx, m, nil)
	})
}

// Status reports whether the datastore answers (code 50 otherwise).
func (ip *IPAMPlugin) Status(args *skel.CmdArgs) error { return ip.p.status(args, true) }
