package node

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/reflector"
	"github.com/tabbynet/tabby/vxlan"
)

// VXLANPeers converts the reflector's announcements into package vxlan's
// peers of one family: for IPv4 (v6 false) the IPv4 VTEP and the IPv4
// blocks and addresses, for IPv6 the IPv6 ones. Announcements without a
// VTEP of that family are left out. The result shares no memory with anns.
func VXLANPeers(anns []reflector.Announcement, v6 bool) []vxlan.Peer {
	out := make([]vxlan.Peer, 0, len(anns))
	for _, a := range anns {
		nodeIP, tunIP, mac := a.NodeIP, a.TunnelIP, a.TunnelMAC
		if !nodeIP.IsValid() || !tunIP.IsValid() || nodeIP.Is6() != v6 || tunIP.Is6() != v6 {
			continue
		}
		p := vxlan.Peer{Name: a.Node, NodeIP: nodeIP, TunnelIP: tunIP, TunnelMAC: append([]byte(nil), mac...)}
		for _, b := range a.Blocks {
			if b.Addr().Is6() == v6 {
				p.Blocks = append(p.Blocks, b)
			}
		}
		for _, ad := range a.Addrs {
			if ad.Is6() == v6 {
				p.Addrs = append(p.Addrs, ad)
			}
		}
		out = append(out, p)
	}
	return out
}

// Validator returns the reflector.Validator that checks peers'
// announcements against IPAM: every announced block must be affine to the
// announcing node and every announced address assigned to it. A refused
// block or address is dropped by the watchers (see reflector's docs for the
// conflict rule); the error names the first thing not owned.
func Validator(m *ipam.IPAM) reflector.Validator { return ipamValidator{m} }

type ipamValidator struct{ m *ipam.IPAM }

func (v ipamValidator) Owns(ctx context.Context, node string, blocks []netip.Prefix, addrs []netip.Addr) error {
	for _, b := range blocks {
		ok, err := v.m.IsBlockAffine(ctx, b, node)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("block %v is not affine to %s", b, node)
		}
	}
	for _, ad := range addrs {
		ok, err := v.m.IsAssignedTo(ctx, ad, node)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("address %v is not assigned to %s", ad, node)
		}
	}
	return nil
}
