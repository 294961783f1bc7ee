package proxyarp

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// Reason says why a frame that reached the responder was not answered.
// The zero value is invalid. A plain value, safe to share.
type Reason int

// Reasons for ignoring a frame. Every frame the responder reads is either
// answered, counted as a write error, or ignored for exactly one Reason.
const (
	_ Reason = iota
	// ReasonTruncated: shorter than an Ethernet header, or than the ARP
	// packet its header lengths announce.
	ReasonTruncated
	// ReasonNotARP: the EtherType is not ARP (0x0806).
	ReasonNotARP
	// ReasonHardware: the ARP hardware type is not Ethernet (1) or the
	// hardware address length is not 6.
	ReasonHardware
	// ReasonProtocol: the ARP protocol type is not IPv4 (0x0800) or the
	// protocol address length is not 4.
	ReasonProtocol
	// ReasonNotRequest: an ARP reply or another operation.
	ReasonNotRequest
	// ReasonBadSender: the sender hardware address is zero, multicast or
	// broadcast, so there is nobody to answer.
	ReasonBadSender
	// ReasonProbe: the sender address is 0.0.0.0 (an RFC 5227 duplicate
	// address probe).
	ReasonProbe
	// ReasonSelfTarget: the target is the sender's own address (a
	// gratuitous ARP or an announcement).
	ReasonSelfTarget
	// ReasonNotServed: the target is not a gateway address this responder
	// answers for (or, when answering every target, not a unicast address).
	ReasonNotServed
	// ReasonRateLimited: a request that would have been answered, but the
	// interface's token bucket was empty (see RateLimit).
	ReasonRateLimited

	numReasons
)

var reasonNames = [numReasons]string{
	ReasonTruncated:  "truncated",
	ReasonNotARP:     "not-arp",
	ReasonHardware:   "not-ethernet",
	ReasonProtocol:   "not-ipv4",
	ReasonNotRequest: "not-request",
	ReasonBadSender:  "bad-sender",
	ReasonProbe:      "probe",
	ReasonSelfTarget: "self-target",
	ReasonNotServed:  "not-served",

	ReasonRateLimited: "rate-limited",
}

// String returns a short label for r, suitable as a metric label value.
func (r Reason) String() string {
	if r <= 0 || r >= numReasons {
		return "invalid"
	}
	return reasonNames[r]
}

// Reasons lists every valid Reason, for callers that export one counter per
// reason.
func Reasons() []Reason {
	rs := make([]Reason, 0, numReasons-1)
	for r := Reason(1); r < numReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// Frame layout of an Ethernet/IPv4 ARP packet (RFC 826) without VLAN tags.
const (
	ethHeaderLen = 14
	arpLen       = 28
	frameLen     = ethHeaderLen + arpLen // 42; replies are padded to the 60-byte Ethernet minimum

	offEtherType = 12
	offHType     = 14
	offPType     = 16
	offHLen      = 18
	offPLen      = 19
	offOp        = 20
	offSHA       = 22
	offSPA       = 28
	offTHA       = 32
	offTPA       = 38

	etherTypeARP  = 0x0806
	etherTypeIPv4 = 0x0800
	hwEthernet    = 1
	opRequest     = 1
	opReply       = 2
)

// policy decides which requests are answered. It is immutable once built
// and shared by all interface servers.
type policy struct {
	gateways []uint32 // big-endian IPv4, small: a linear scan beats a map
	all      bool
}

func (p *policy) serves(tpa uint32) bool {
	if p.all {
		a := netip.AddrFrom4([4]byte{byte(tpa >> 24), byte(tpa >> 16), byte(tpa >> 8), byte(tpa)})
		return a.IsGlobalUnicast() || a.IsLinkLocalUnicast()
	}
	for _, g := range p.gateways {
		if g == tpa {
			return true
		}
	}
	return false
}

// replyTemplate returns the 42-byte ARP reply frame sent from mac, with the
// per-request fields (destinations, addresses) left zero. It is built once
// per interface with mdlayher/arp and mdlayher/ethernet; the hot path only
// patches it.
func replyTemplate(mac net.HardwareAddr) ([]byte, error) {
	zero4 := netip.AddrFrom4([4]byte{})
	zeroMAC := make(net.HardwareAddr, 6)
	p := &arp.Packet{
		HardwareType:       hwEthernet,
		ProtocolType:       uint16(ethernet.EtherTypeIPv4),
		HardwareAddrLength: 6,
		IPLength:           4,
		Operation:          arp.OperationReply,
		SenderHardwareAddr: mac,
		SenderIP:           zero4,
		TargetHardwareAddr: zeroMAC,
		TargetIP:           zero4,
	}
	payload, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f := &ethernet.Frame{
		Destination: zeroMAC,
		Source:      mac,
		EtherType:   ethernet.EtherTypeARP,
		Payload:     payload,
	}
	return f.MarshalBinary()
}

// handle decides what to do with one received frame. When the frame is to
// be answered it writes the complete reply into out (a copy of the
// interface's reply template, len(out) >= 42) and returns 0; otherwise it
// returns the Reason and leaves out's per-request fields unspecified. It
// never allocates and never reads beyond len(frame).
func (p *policy) handle(frame, out []byte) Reason {
	if len(frame) < ethHeaderLen {
		return ReasonTruncated
	}
	if binary.BigEndian.Uint16(frame[offEtherType:]) != etherTypeARP {
		return ReasonNotARP
	}
	if len(frame) < offSHA {
		return ReasonTruncated
	}
	if binary.BigEndian.Uint16(frame[offHType:]) != hwEthernet || frame[offHLen] != 6 {
		return ReasonHardware
	}
	if binary.BigEndian.Uint16(frame[offPType:]) != etherTypeIPv4 || frame[offPLen] != 4 {
		return ReasonProtocol
	}
	if len(frame) < frameLen {
		return ReasonTruncated
	}
	if binary.BigEndian.Uint16(frame[offOp:]) != opRequest {
		return ReasonNotRequest
	}
	sha := frame[offSHA : offSHA+6]
	if sha[0]&1 != 0 || (sha[0]|sha[1]|sha[2]|sha[3]|sha[4]|sha[5]) == 0 {
		return ReasonBadSender
	}
	spa := binary.BigEndian.Uint32(frame[offSPA:])
	tpa := binary.BigEndian.Uint32(frame[offTPA:])
	if spa == 0 {
		return ReasonProbe
	}
	if spa == tpa {
		return ReasonSelfTarget
	}
	if !p.serves(tpa) {
		return ReasonNotServed
	}
	// Reply: to the requester, from the interface (already in the
	// template), "tpa is at <interface MAC>".
	copy(out[0:6], sha)
	copy(out[offSPA:offSPA+4], frame[offTPA:offTPA+4])
	copy(out[offTHA:offTHA+6], sha)
	copy(out[offTPA:offTPA+4], frame[offSPA:offSPA+4])
	return 0
}
