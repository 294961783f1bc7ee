//go:build linux

package nettools

import (
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/tabbynet/tabby/internal/nsenter"
)

// TCPSink listens on addr in the namespace at nsPath and discards what
// every connection sends; each connection's byte count is sent on the
// returned channel when it ends. Close the listener to stop.
func TCPSink(nsPath string, addr netip.AddrPort) (net.Listener, <-chan int64, error) {
	var ln net.Listener
	err := nsenter.DoPath(nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("tcp sink %v: %w", addr, err)
	}
	counts := make(chan int64, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				n, _ := io.Copy(io.Discard, c)
				c.Close()
				counts <- n
			}()
		}
	}()
	return ln, counts, nil
}

// TCPSend connects from the namespace at nsPath to dst and sends n bytes.
func TCPSend(nsPath string, dst netip.AddrPort, n int64) error {
	var c net.Conn
	err := nsenter.DoPath(nsPath, func() error {
		var err error
		c, err = net.Dial("tcp4", dst.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("tcp to %v: %w", dst, err)
	}
	buf := make([]byte, 256<<10)
	for n > 0 {
		w := min(n, int64(len(buf)))
		if _, err := c.Write(buf[:w]); err != nil {
			c.Close()
			return fmt.Errorf("tcp to %v: %w", dst, err)
		}
		n -= w
	}
	return c.Close()
}
