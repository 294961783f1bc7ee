package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// IP protocol numbers found in Frame.Proto and Frame.InnerProto.
const (
	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17
)

// VXLANPort is the IANA VXLAN UDP port; UDP frames to it are decoded as VXLAN.
const VXLANPort = 4789

const etherTypeIPv4 = 0x0800

// Frame is one captured IPv4 or IPv6 packet, decoded far enough for tabby's tests
// and demo: outer addresses and protocol, UDP/TCP ports, and for VXLAN (UDP
// 4789, over either family) the VNI and the inner packet's addresses and
// protocol.
// It is a plain value, safe to copy and share.
type Frame struct {
	Src, Dst         netip.Addr
	Proto            uint8 // ProtoICMP, ProtoTCP, ProtoUDP, ...
	SrcPort, DstPort uint16
	VXLAN            bool
	VNI              uint32
	InnerSrc         netip.Addr
	InnerDst         netip.Addr
	InnerProto       uint8
}

// String formats f the way tcpdump would, roughly.
func (f Frame) String() string {
	if f.VXLAN {
		return fmt.Sprintf("IP %s.%d > %s.%d: UDP, VXLAN vni %d: IP %s > %s proto %d", f.Src, f.SrcPort, f.Dst, f.DstPort, f.VNI, f.InnerSrc, f.InnerDst, f.InnerProto)
	}
	if f.Proto == ProtoUDP || f.Proto == ProtoTCP {
		return fmt.Sprintf("IP %s.%d > %s.%d proto %d", f.Src, f.SrcPort, f.Dst, f.DstPort, f.Proto)
	}
	return fmt.Sprintf("IP %s > %s proto %d", f.Src, f.Dst, f.Proto)
}

// DecodeEthernet decodes an Ethernet frame carrying IPv4 or IPv6. It reports false
// for anything else (other EtherTypes, truncated or malformed headers).
func DecodeEthernet(b []byte) (Frame, bool) {
	if len(b) < 14 {
		return Frame{}, false
	}
	switch binary.BigEndian.Uint16(b[12:]) {
	case etherTypeIPv4:
		return DecodeIPv4(b[14:])
	case etherTypeIPv6:
		return DecodeIPv6(b[14:])
	}
	return Frame{}, false
}

const etherTypeIPv6 = 0x86dd

// DecodeIPv6 decodes an IPv6 packet (no link-layer header, no extension
// headers: the next header must be the transport). It reports false unless
// b starts with a well-formed IPv6 header.
func DecodeIPv6(b []byte) (Frame, bool) {
	if len(b) < 40 || b[0]>>4 != 6 {
		return Frame{}, false
	}
	f := Frame{Src: netip.AddrFrom16([16]byte(b[8:24])), Dst: netip.AddrFrom16([16]byte(b[24:40])), Proto: b[6]}
	f.transport(b[40:])
	return f, true
}

// transport decodes ports and VXLAN from the transport payload p.
func (f *Frame) transport(p []byte) {
	if (f.Proto == ProtoUDP || f.Proto == ProtoTCP) && len(p) >= 4 {
		f.SrcPort, f.DstPort = binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:])
	}
	if f.Proto == ProtoUDP && f.DstPort == VXLANPort && len(p) >= 8+8 {
		vx := p[8:]
		if vx[0]&0x08 != 0 { // I flag: the VNI is valid
			f.VXLAN = true
			f.VNI = uint32(vx[4])<<16 | uint32(vx[5])<<8 | uint32(vx[6])
			if inner, ok := DecodeEthernet(vx[8:]); ok {
				f.InnerSrc, f.InnerDst, f.InnerProto = inner.Src, inner.Dst, inner.Proto
			}
		}
	}
}

// DecodeIPv4 decodes an IPv4 packet (no link-layer header). It reports
// false unless b starts with a well-formed IPv4 header.
func DecodeIPv4(b []byte) (Frame, bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return Frame{}, false
	}
	ihl := int(b[0]&0xf) * 4
	if ihl < 20 || len(b) < ihl {
		return Frame{}, false
	}
	f := Frame{
		Src:   netip.AddrFrom4([4]byte(b[12:16])),
		Dst:   netip.AddrFrom4([4]byte(b[16:20])),
		Proto: b[9],
	}
	f.transport(b[ihl:])
	return f, true
}
