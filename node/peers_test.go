package node_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/node"
	"github.com/tabbynet/tabby/reflector"
)

func TestVXLANPeersPerFamily(t *testing.T) {
	mac4, mac6 := net.HardwareAddr{2, 0, 0, 0, 0, 4}, net.HardwareAddr{2, 0, 0, 0, 0, 6}
	anns := []reflector.Announcement{{
		Node: "dual", NodeIP: netip.MustParseAddr("10.4.7.62"), TunnelIP: netip.MustParseAddr("10.244.189.64"), TunnelMAC: mac4,
		NodeIPv6: netip.MustParseAddr("2001:db8:4:7::62"), TunnelIPv6: netip.MustParseAddr("fd00:10:244:1::"), TunnelMACv6: mac6,
		Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.189.64/26"), netip.MustParsePrefix("fd00:10:244:1::/122")},
		Addrs:  []netip.Addr{netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("fd00:10:244:9::5")},
	}, {
		Node: "v4only", NodeIP: netip.MustParseAddr("10.4.7.60"), TunnelIP: netip.MustParseAddr("10.244.219.64"), TunnelMAC: mac4,
		Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.219.64/26")},
	}}
	p4, p6 := node.VXLANPeers(anns, false), node.VXLANPeers(anns, true)
	if len(p4) != 2 || len(p6) != 1 {
		t.Fatalf("peers: %d IPv4, %d IPv6", len(p4), len(p6))
	}
	d := p6[0]
	if d.Name != "dual" || d.NodeIP != anns[0].NodeIPv6 || d.TunnelIP != anns[0].TunnelIPv6 || d.TunnelMAC.String() != mac6.String() ||
		len(d.Blocks) != 1 || !d.Blocks[0].Addr().Is6() || len(d.Addrs) != 1 || !d.Addrs[0].Is6() {
		t.Errorf("IPv6 peer %+v", d)
	}
	if p4[0].TunnelMAC.String() != mac4.String() || len(p4[0].Blocks) != 1 || len(p4[0].Addrs) != 1 || !p4[0].Addrs[0].Is4() {
		t.Errorf("IPv4 peer %+v", p4[0])
	}
	p4[0].TunnelMAC[0] = 0xff
	if anns[0].TunnelMAC[0] == 0xff {
		t.Error("VXLANPeers shares memory with the announcements")
	}
}
