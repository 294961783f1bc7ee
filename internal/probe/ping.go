package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/tabbynet/tabby/internal/nsenter"
)

// PingInterval is how often Ping repeats its echo request while waiting.
const PingInterval = 200 * time.Millisecond

// Ping sends ICMP echo requests (ICMPv6 for an IPv6 dst) from the
// namespace at nsPath ("" for the caller's own) to dst, one every
// PingInterval, until a reply arrives or ctx is done. It returns the address the reply came
// from. It is the Go replacement for `ip netns exec ns ping dst`.
func Ping(ctx context.Context, nsPath string, dst netip.Addr) (netip.Addr, error) {
	conn, err := listenICMP(nsPath, dst.Is6())
	if err != nil {
		return netip.Addr{}, err
	}
	defer conn.Close()
	id := uint16(rand.Uint32())
	buf := make([]byte, 1500)
	for seq := uint16(1); ctx.Err() == nil; seq++ {
		if _, err := conn.WriteToIP(echoFor(dst, id, seq, []byte("tabby-ping")), &net.IPAddr{IP: net.IP(dst.AsSlice())}); err != nil {
			return netip.Addr{}, fmt.Errorf("probe: ping %s: %w", dst, err)
		}
		until := time.Now().Add(PingInterval)
		if d, ok := ctx.Deadline(); ok && d.Before(until) {
			until = d
		}
		for {
			if err := conn.SetReadDeadline(until); err != nil {
				return netip.Addr{}, fmt.Errorf("probe: ping %s: %w", dst, err)
			}
			nr, from, err := conn.ReadFromIP(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return netip.Addr{}, fmt.Errorf("probe: ping %s: %w", dst, err)
			}
			if rid, _, ok := echoReplyFor(dst, buf[:nr]); !ok || rid != id {
				continue // not our echo reply
			}
			a, _ := netip.AddrFromSlice(from.IP)
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("probe: ping %s: no reply: %w", dst, ctx.Err())
}

// PingStream sends one ICMP echo request every interval from the namespace
// at nsPath to dst until ctx is done, then waits up to a second for the
// last replies. It returns how many requests were sent and how many
// distinct replies came back: a loss counter for tests and benchmarks that
// change things under a running flow.
func PingStream(ctx context.Context, nsPath string, dst netip.Addr, interval time.Duration) (sent, received int, err error) {
	conn, err := listenICMP(nsPath, dst.Is6())
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	id := uint16(rand.Uint32())
	got := make(chan uint16, 1024)
	go func() {
		defer close(got)
		buf := make([]byte, 1500)
		for {
			nr, _, err := conn.ReadFromIP(buf)
			if err != nil {
				return
			}
			if rid, seq, ok := echoReplyFor(dst, buf[:nr]); ok && rid == id {
				got <- seq
			}
		}
	}()
	seen := map[uint16]bool{}
	t := time.NewTicker(interval)
	defer t.Stop()
	done := ctx.Done()
	var drain <-chan time.Time
	recv := (<-chan uint16)(got)
	for {
		select {
		case <-done:
			done = nil
			t.Stop()
			drain = time.After(time.Second)
		case <-drain:
			conn.Close()
			if recv != nil {
				for s := range got {
					seen[s] = true
				}
			}
			return sent, len(seen), nil
		case <-t.C:
			sent++
			if _, err := conn.WriteToIP(echoFor(dst, id, uint16(sent), []byte("tabby-stream")), &net.IPAddr{IP: net.IP(dst.AsSlice())}); err != nil {
				return sent, len(seen), fmt.Errorf("probe: ping %s: %w", dst, err)
			}
		case s, ok := <-recv:
			if !ok {
				recv = nil
				continue
			}
			seen[s] = true
		}
	}
}

func listenICMP(nsPath string, v6 bool) (*net.IPConn, error) {
	var conn *net.IPConn
	proto := "ip4:icmp"
	if v6 {
		proto = "ip6:ipv6-icmp"
	}
	err := nsenter.DoPath(nsPath, func() error {
		c, err := net.ListenIP(proto, nil)
		conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("probe: ping: socket: %w", err)
	}
	return conn, nil
}

// Echo returns an ICMP echo request (type 8) with the given identifier,
// sequence number and payload, checksummed.
func Echo(id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = 8
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], payload)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// Echo6 returns an ICMPv6 echo request (type 128); the kernel fills in
// the checksum of an ip6:ipv6-icmp socket.
func Echo6(id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = 128
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], payload)
	return b
}

// EchoReply6 reports the identifier and sequence number of an ICMPv6 echo
// reply (type 129).
func EchoReply6(b []byte) (id, seq uint16, ok bool) {
	if len(b) < 8 || b[0] != 129 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), true
}

func echoFor(dst netip.Addr, id, seq uint16, payload []byte) []byte {
	if dst.Is6() {
		return Echo6(id, seq, payload)
	}
	return Echo(id, seq, payload)
}

func echoReplyFor(dst netip.Addr, b []byte) (id, seq uint16, ok bool) {
	if dst.Is6() {
		return EchoReply6(b)
	}
	return EchoReply(b)
}

// EchoReply decodes an ICMP message (as read from an ip4:icmp socket) and
// reports its identifier and sequence number if it is an echo reply.
func EchoReply(b []byte) (id, seq uint16, ok bool) {
	if len(b) < 8 || b[0] != 0 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), true
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
