package probe

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// ethIPv4 builds an Ethernet header and a 20-byte IPv4 header.
func ethIPv4(proto byte, src, dst [4]byte) []byte {
	b := make([]byte, 14+20)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0], ip[9] = 0x45, proto
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	return b
}

// vxlanFrame builds Ethernet/IPv4/UDP 4789/VXLAN/Ethernet/IPv4 ICMP.
func vxlanFrame(vni uint32) []byte {
	inner := ethIPv4(ProtoICMP, [4]byte{10, 244, 2, 1}, [4]byte{10, 244, 88, 1})
	vx := make([]byte, 8)
	vx[0] = 0x08
	vx[4], vx[5], vx[6] = byte(vni>>16), byte(vni>>8), byte(vni)
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp, 40000)
	binary.BigEndian.PutUint16(udp[2:], 4789)
	outer := ethIPv4(ProtoUDP, [4]byte{10, 4, 7, 61}, [4]byte{10, 4, 7, 62})
	return append(append(append(outer, udp...), vx...), inner...)
}

func TestDecodeVXLAN(t *testing.T) {
	f, ok := DecodeEthernet(vxlanFrame(4096))
	if !ok || !f.VXLAN || f.VNI != 4096 || f.DstPort != 4789 || f.Src != netip.MustParseAddr("10.4.7.61") ||
		f.InnerSrc != netip.MustParseAddr("10.244.2.1") || f.InnerDst != netip.MustParseAddr("10.244.88.1") || f.InnerProto != 1 {
		t.Fatalf("decoded %+v ok=%v", f, ok)
	}
	if s := f.String(); s != "IP 10.4.7.61.40000 > 10.4.7.62.4789: UDP, VXLAN vni 4096: IP 10.244.2.1 > 10.244.88.1 proto 1" {
		t.Errorf("String() = %q", s)
	}
}

func TestDecodeRejects(t *testing.T) {
	arp := vxlanFrame(1)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	badIHL := vxlanFrame(1)
	badIHL[14] = 0x44
	for name, b := range map[string][]byte{
		"empty": nil, "short": vxlanFrame(1)[:20], "arp": arp, "ihl<20": badIHL,
	} {
		if f, ok := DecodeEthernet(b); ok {
			t.Errorf("%s: decoded %v", name, f)
		}
	}
	// VXLAN without the I flag is plain UDP.
	noI := vxlanFrame(7)
	noI[14+20+8] = 0
	if f, ok := DecodeEthernet(noI); !ok || f.VXLAN || f.DstPort != VXLANPort {
		t.Errorf("no I flag: %+v ok=%v", f, ok)
	}
}

func TestFrameString(t *testing.T) {
	src, dst := netip.MustParseAddr("10.4.7.1"), netip.MustParseAddr("10.4.7.2")
	for f, want := range map[Frame]string{
		{Src: src, Dst: dst, Proto: ProtoICMP}:                         "IP 10.4.7.1 > 10.4.7.2 proto 1",
		{Src: src, Dst: dst, Proto: ProtoTCP, SrcPort: 1, DstPort: 80}: "IP 10.4.7.1.1 > 10.4.7.2.80 proto 6",
	} {
		if got := f.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}

func FuzzDecodeEthernet(f *testing.F) {
	f.Add(vxlanFrame(4096))
	f.Add(vxlanFrame(1)[:40])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, ok := DecodeEthernet(b)
		if ok && (!fr.Src.Is4() || !fr.Dst.Is4()) {
			t.Fatalf("decoded addresses %v %v", fr.Src, fr.Dst)
		}
		if !ok && fr != (Frame{}) {
			t.Fatalf("rejected frame but returned %+v", fr)
		}
		_ = fr.String()
	})
}

// A VXLAN-over-IPv6 frame carrying an inner ICMPv6 packet decodes with
// both layers' addresses.
func TestDecodeVXLANOverIPv6(t *testing.T) {
	ip6 := func(src, dst string, next byte, payload []byte) []byte {
		h := make([]byte, 40, 40+len(payload))
		h[0] = 6 << 4
		h[4], h[5] = byte(len(payload)>>8), byte(len(payload))
		h[6], h[7] = next, 64
		s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
		copy(h[8:], s[:])
		copy(h[24:], d[:])
		return append(h, payload...)
	}
	eth := func(p []byte) []byte {
		return append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd}, p...)
	}
	inner := eth(ip6("fd00:10:244:1::1", "fd00:10:244:2::1", 58, []byte{128, 0, 0, 0, 0, 1, 0, 1}))
	udp := append([]byte{0x9c, 0x40, 0x12, 0xb5, 0, 0, 0, 0}, append([]byte{0x08, 0, 0, 0, 0, 0x10, 0, 0}, inner...)...)
	f, ok := DecodeEthernet(eth(ip6("2001:db8:4:7::61", "2001:db8:4:7::62", ProtoUDP, udp)))
	if !ok || !f.VXLAN || f.VNI != 4096 || f.DstPort != 4789 || f.Src != netip.MustParseAddr("2001:db8:4:7::61") ||
		f.InnerSrc != netip.MustParseAddr("fd00:10:244:1::1") || f.InnerDst != netip.MustParseAddr("fd00:10:244:2::1") || f.InnerProto != 58 {
		t.Fatalf("decoded %+v ok=%v", f, ok)
	}
	if _, ok := DecodeIPv6(make([]byte, 39)); ok {
		t.Error("a truncated header decoded")
	}
}
