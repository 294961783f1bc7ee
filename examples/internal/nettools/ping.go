//go:build linux

package nettools

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/nsenter"
)

// Ping sends ICMP echo requests from the namespace at nsPath to dst, one
// every 200ms until a reply arrives or timeout passes. It returns the
// address the reply came from.
func Ping(nsPath string, dst netip.Addr, timeout time.Duration) (netip.Addr, error) {
	var conn *net.IPConn
	err := nsenter.DoPath(nsPath, func() error {
		c, err := net.ListenIP("ip4:icmp", nil)
		conn = c
		return err
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("ping: socket: %w", err)
	}
	defer conn.Close()
	id := uint16(rand.Uint32())
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		req := echo(8, id, seq, []byte("tabby-demo"))
		if _, err := conn.WriteToIP(req, &net.IPAddr{IP: net.IP(dst.AsSlice())}); err != nil {
			return netip.Addr{}, fmt.Errorf("ping %s: %w", dst, err)
		}
		until := earliest(deadline, time.Now().Add(200*time.Millisecond))
		for {
			if err := conn.SetReadDeadline(until); err != nil {
				return netip.Addr{}, err
			}
			nr, from, err := conn.ReadFromIP(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return netip.Addr{}, err
			}
			b := buf[:nr]
			if len(b) < 8 || b[0] != 0 || binary.BigEndian.Uint16(b[4:]) != id {
				continue
			}
			a, _ := netip.AddrFromSlice(from.IP)
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("ping %s: no reply within %v", dst, timeout)
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

// EchoServer answers every UDP datagram on addr in the namespace at nsPath
// with "from <source address>": what a host on the internet sees.
// Close the returned connection to stop it.
func EchoServer(nsPath string, addr netip.AddrPort) (net.PacketConn, error) {
	var pc net.PacketConn
	err := nsenter.DoPath(nsPath, func() error {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		pc = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("echo server %v: %w", addr, err)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ua := from.(*net.UDPAddr)
			pc.WriteTo([]byte("from "+ua.AddrPort().Addr().Unmap().String()), from)
		}
	}()
	return pc, nil
}

// AskEcho sends a datagram to an EchoServer from the namespace at nsPath
// and returns the source address the server saw.
func AskEcho(nsPath string, server netip.AddrPort, timeout time.Duration) (netip.Addr, error) {
	var c *net.UDPConn
	err := nsenter.DoPath(nsPath, func() error {
		var err error
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(server))
		return err
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("udp to %v: %w", server, err)
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 256)
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte("who am i")); err != nil {
			return netip.Addr{}, err
		}
		c.SetReadDeadline(earliest(deadline, time.Now().Add(300*time.Millisecond)))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		s, ok := strings.CutPrefix(string(buf[:n]), "from ")
		if !ok {
			continue
		}
		return netip.ParseAddr(s)
	}
	return netip.Addr{}, fmt.Errorf("udp to %v: no answer within %v", server, timeout)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// PingStream sends one ICMP echo request every interval from the namespace
// at nsPath to dst until stop is closed, then waits up to a second for the
// last replies. It returns how many requests were sent and how many distinct
// replies came back: a loss counter for tests that change things under a
// running flow.
func PingStream(nsPath string, dst netip.Addr, interval time.Duration, stop <-chan struct{}) (sent, received int, err error) {
	var conn *net.IPConn
	err = nsenter.DoPath(nsPath, func() error {
		c, err := net.ListenIP("ip4:icmp", nil)
		conn = c
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("ping: socket: %w", err)
	}
	defer conn.Close()
	id := uint16(rand.Uint32())
	got := make(chan uint16, 1024)
	go func() {
		buf := make([]byte, 1500)
		for {
			nr, _, err := conn.ReadFromIP(buf)
			if err != nil {
				close(got)
				return
			}
			b := buf[:nr]
			if len(b) >= 8 && b[0] == 0 && binary.BigEndian.Uint16(b[4:]) == id {
				got <- binary.BigEndian.Uint16(b[6:])
			}
		}
	}()
	seen := map[uint16]bool{}
	t := time.NewTicker(interval)
	defer t.Stop()
	var drain <-chan time.Time
	recv, closed := (<-chan uint16)(got), false
	for {
		select {
		case <-stop:
			if drain == nil {
				drain = time.After(time.Second)
				stop = nil
				t.Stop()
			}
		case <-drain:
			conn.Close()
			if !closed {
				for s := range got {
					seen[s] = true
				}
			}
			return sent, len(seen), nil
		case <-t.C:
			sent++
			if _, err := conn.WriteToIP(echo(8, id, uint16(sent), []byte("tabby-stream")), &net.IPAddr{IP: net.IP(dst.AsSlice())}); err != nil {
				return sent, len(seen), fmt.Errorf("ping %s: %w", dst, err)
			}
		case s, ok := <-recv:
			if !ok {
				recv, closed = nil, true
				continue
			}
			seen[s] = true
		}
	}
}
