package proxyarp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

var (
	ifMAC  = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	podMAC = net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0xeb, 0x87}
	podIP  = netip.MustParseAddr("10.244.235.135")
	gw     = netip.MustParseAddr("169.254.1.1")
)

func request(sha net.HardwareAddr, spa, tpa netip.Addr) []byte {
	p := &arp.Packet{HardwareType: 1, ProtocolType: 0x0800, HardwareAddrLength: 6, IPLength: 4,
		Operation: arp.OperationRequest, SenderHardwareAddr: sha, SenderIP: spa,
		TargetHardwareAddr: make(net.HardwareAddr, 6), TargetIP: tpa}
	pb, _ := p.MarshalBinary()
	f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: sha, EtherType: ethernet.EtherTypeARP, Payload: pb}
	b, _ := f.MarshalBinary()
	return b
}

func defaultPolicy() *policy { return &policy{gateways: []uint32{0xa9fe0101}} }

func TestHandle(t *testing.T) {
	good := request(podMAC, podIP, gw)
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name  string
		pol   *policy
		frame []byte
		want  Reason // 0: answered
	}{
		{"gateway", defaultPolicy(), good, 0},
		{"padded to 60 bytes", defaultPolicy(), append(append([]byte(nil), good...), make([]byte, 18)...), 0},
		{"other target", defaultPolicy(), request(podMAC, podIP, netip.MustParseAddr("10.244.235.140")), ReasonNotServed},
		{"all: other target", &policy{all: true}, request(podMAC, podIP, netip.MustParseAddr("10.244.235.140")), 0},
		{"all: own address", &policy{all: true}, request(podMAC, podIP, podIP), ReasonSelfTarget},
		{"all: broadcast target", &policy{all: true}, request(podMAC, podIP, netip.MustParseAddr("255.255.255.255")), ReasonNotServed},
		{"all: multicast target", &policy{all: true}, request(podMAC, podIP, netip.MustParseAddr("224.0.0.1")), ReasonNotServed},
		{"gratuitous for the gateway", defaultPolicy(), request(podMAC, gw, gw), ReasonSelfTarget},
		{"duplicate address probe", defaultPolicy(), request(podMAC, netip.IPv4Unspecified(), gw), ReasonProbe},
		{"empty", defaultPolicy(), nil, ReasonTruncated},
		{"13 bytes", defaultPolicy(), good[:13], ReasonTruncated},
		{"header only", defaultPolicy(), good[:14], ReasonTruncated},
		{"41 bytes", defaultPolicy(), good[:41], ReasonTruncated},
		{"ipv4 ethertype", defaultPolicy(), mut(func(b []byte) []byte { b[12], b[13] = 0x08, 0x00; return b }), ReasonNotARP},
		{"vlan tagged", defaultPolicy(), mut(func(b []byte) []byte { b[12], b[13] = 0x81, 0x00; return b }), ReasonNotARP},
		{"reply", defaultPolicy(), mut(func(b []byte) []byte { b[offOp+1] = 2; return b }), ReasonNotRequest},
		{"rarp op", defaultPolicy(), mut(func(b []byte) []byte { b[offOp+1] = 3; return b }), ReasonNotRequest},
		{"ieee802 hardware", defaultPolicy(), mut(func(b []byte) []byte { b[offHType+1] = 6; return b }), ReasonHardware},
		{"hlen 8", defaultPolicy(), mut(func(b []byte) []byte { b[offHLen] = 8; return b }), ReasonHardware},
		{"ipv6 protocol", defaultPolicy(), mut(func(b []byte) []byte { b[offPType], b[offPType+1] = 0x86, 0xdd; return b }), ReasonProtocol},
		{"plen 16", defaultPolicy(), mut(func(b []byte) []byte { b[offPLen] = 16; return b }), ReasonProtocol},
		{"multicast sender", defaultPolicy(), request(net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}, podIP, gw), ReasonBadSender},
		{"zero sender", defaultPolicy(), request(make(net.HardwareAddr, 6), podIP, gw), ReasonBadSender},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := replyTemplate(ifMAC)
			if err != nil {
				t.Fatal(err)
			}
			got := tt.pol.handle(tt.frame, tmpl)
			if got != tt.want {
				t.Fatalf("handle = %v, want %v", got, tt.want)
			}
			if got != 0 {
				return
			}
			checkReply(t, tt.frame, tmpl)
		})
	}
}

// checkReply decodes reply with mdlayher/ethernet and mdlayher/arp and
// checks it answers req from ifMAC.
func checkReply(t testing.TB, req, reply []byte) {
	t.Helper()
	var rf, qf ethernet.Frame
	var rp, qp arp.Packet
	if err := rf.UnmarshalBinary(reply); err != nil {
		t.Fatal(err)
	}
	if err := rp.UnmarshalBinary(rf.Payload); err != nil {
		t.Fatal(err)
	}
	if err := qf.UnmarshalBinary(req); err != nil {
		t.Fatal(err)
	}
	if err := qp.UnmarshalBinary(qf.Payload); err != nil {
		t.Fatal(err)
	}
	if len(reply) != 60 || rf.EtherType != ethernet.EtherTypeARP || !bytes.Equal(rf.Source, ifMAC) ||
		!bytes.Equal(rf.Destination, qp.SenderHardwareAddr) {
		t.Fatalf("reply frame %x", reply)
	}
	if rp.Operation != arp.OperationReply || rp.HardwareType != 1 || rp.ProtocolType != 0x0800 ||
		rp.HardwareAddrLength != 6 || rp.IPLength != 4 ||
		!bytes.Equal(rp.SenderHardwareAddr, ifMAC) || rp.SenderIP != qp.TargetIP ||
		!bytes.Equal(rp.TargetHardwareAddr, qp.SenderHardwareAddr) || rp.TargetIP != qp.SenderIP {
		t.Fatalf("reply %+v to request %+v", rp, qp)
	}
}

func TestHandleAllocatesNothing(t *testing.T) {
	p := defaultPolicy()
	req := request(podMAC, podIP, gw)
	tmpl, _ := replyTemplate(ifMAC)
	if n := testing.AllocsPerRun(1000, func() { p.handle(req, tmpl) }); n != 0 {
		t.Fatalf("%v allocations per frame", n)
	}
	all := &policy{all: true}
	if n := testing.AllocsPerRun(1000, func() { all.handle(req, tmpl) }); n != 0 {
		t.Fatalf("answer-all: %v allocations per frame", n)
	}
}

func TestReasonString(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reasons() {
		s := r.String()
		if s == "invalid" || seen[s] {
			t.Fatalf("reason %d: %q", r, s)
		}
		seen[s] = true
	}
	if Reason(0).String() != "invalid" || numReasons.String() != "invalid" {
		t.Fatal("invalid reasons have names")
	}
}

// FuzzHandle: any frame is either answered with a well-formed reply or
// ignored for a reason; the decision agrees with mdlayher/arp's decoding.
func FuzzHandle(f *testing.F) {
	good := request(podMAC, podIP, gw)
	f.Add(good, false)
	f.Add(good[:30], false)
	f.Add(request(podMAC, podIP, netip.MustParseAddr("10.244.1.1")), true)
	f.Add(request(podMAC, podIP, podIP), true)
	f.Add(request(podMAC, netip.IPv4Unspecified(), gw), false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, frame []byte, all bool) {
		p := defaultPolicy()
		p.all = all
		tmpl, _ := replyTemplate(ifMAC)
		orig := append([]byte(nil), frame...)
		why := p.handle(frame, tmpl)
		if !bytes.Equal(frame, orig) {
			t.Fatal("handle modified the frame")
		}
		if why < 0 || why >= numReasons {
			t.Fatalf("reason %d", why)
		}
		if why != 0 {
			return
		}
		// Answered: it must be a well-formed Ethernet/IPv4 ARP request
		// for a served target from another address.
		var ef ethernet.Frame
		var ap arp.Packet
		if err := ef.UnmarshalBinary(frame); err != nil {
			t.Fatalf("answered an undecodable frame: %v", err)
		}
		if err := ap.UnmarshalBinary(ef.Payload); err != nil {
			t.Fatalf("answered an undecodable packet: %v", err)
		}
		if ef.EtherType != ethernet.EtherTypeARP || ap.Operation != arp.OperationRequest ||
			ap.HardwareType != 1 || ap.ProtocolType != 0x0800 || ap.HardwareAddrLength != 6 || ap.IPLength != 4 {
			t.Fatalf("answered %+v", ap)
		}
		if ap.SenderIP == ap.TargetIP || ap.SenderIP.IsUnspecified() {
			t.Fatalf("answered sender %v target %v", ap.SenderIP, ap.TargetIP)
		}
		if !all && ap.TargetIP != gw {
			t.Fatalf("answered for %v", ap.TargetIP)
		}
		checkReply(t, frame, tmpl)
	})
}

func TestReplyTemplate(t *testing.T) {
	b, err := replyTemplate(ifMAC)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 60 || binary.BigEndian.Uint16(b[offOp:]) != opReply || !bytes.Equal(b[offSHA:offSHA+6], ifMAC) {
		t.Fatalf("template %x", b)
	}
}
