package kerneltest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

// Ping sends one ICMP echo request from namespace n to dst and waits up to
// timeout for the matching reply. It returns the address the reply came
// from. It is the Go replacement for `ip netns exec n ping -c1 dst`.
func (n *NS) Ping(dst netip.Addr, timeout time.Duration) (netip.Addr, error) {
	var conn *net.IPConn
	err := n.Do(func() error {
		c, err := net.ListenIP("ip4:icmp", nil)
		conn = c
		return err
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("ping from %s: socket: %w", n.Name, err)
	}
	defer conn.Close()
	id := uint16(os.Getpid()) ^ uint16(time.Now().UnixNano())
	const seq = 1
	req := echo(8, id, seq, []byte("tabby-ping"))
	if _, err := conn.WriteToIP(req, &net.IPAddr{IP: IP(dst)}); err != nil {
		return netip.Addr{}, fmt.Errorf("ping %s from %s: %w", dst, n.Name, err)
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for {
		if err := conn.SetReadDeadline(deadline); err != nil {
			return netip.Addr{}, err
		}
		nr, from, err := conn.ReadFromIP(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return netip.Addr{}, fmt.Errorf("ping %s from %s: no reply within %v", dst, n.Name, timeout)
			}
			return netip.Addr{}, err
		}
		b := buf[:nr]
		if len(b) < 8 || b[0] != 0 || binary.BigEndian.Uint16(b[4:]) != id || binary.BigEndian.Uint16(b[6:]) != seq {
			continue // not our echo reply
		}
		a, _ := netip.AddrFromSlice(from.IP)
		return a.Unmap(), nil
	}
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

func echo(typ byte, id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], payload)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
