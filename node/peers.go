package node

import (
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
		if v6 {
			nodeIP, tunIP, mac = a.NodeIPv6, a.TunnelIPv6, a.TunnelMACv6
		}
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

// Validator returns the reflector.Validator that checks announcements
// against IPAM: *ipam.IPAM itself (its Owns method): every announced block
// must be a confirmed affinity of the announcing node and every address
// allocated for it, checked in a bounded number of datastore reads whatever
// the announcement's size. What is refused is dropped by every watcher and
// reported to the announcing node (Stats.Refused).
func Validator(m *ipam.IPAM) reflector.Validator { return m }
