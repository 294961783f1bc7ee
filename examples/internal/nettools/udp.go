//go:build linux

package nettools

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/nsenter"
)

// EchoServer answers every UDP datagram on addr in the namespace at nsPath
// with "from <source address>": what a host on the internet sees.
// Close the returned connection to stop it.
func EchoServer(nsPath string, addr netip.AddrPort) (net.PacketConn, error) {
	var pc net.PacketConn
	err := nsenter.DoPath(nsPath, func() error {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
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
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
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
