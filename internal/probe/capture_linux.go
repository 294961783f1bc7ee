//go:build linux

package probe

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/nsenter"
)

// Capture is an AF_PACKET capture on one interface of a namespace, the Go
// replacement for `tcpdump -i dev`. Its methods are safe for concurrent
// use; Stop it to release the socket and get the frames.
type Capture struct {
	fd     int
	done   chan struct{}
	exited chan struct{}
	mu     sync.Mutex
	frames []Frame
	err    error
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// StartCapture opens an AF_PACKET socket in the namespace at nsPath ("" for
// the caller's own) bound to the interface with index ifindex, and records
// every IPv4 and IPv6 frame (see DecodeEthernet) until Stop.
func StartCapture(nsPath string, ifindex int) (*Capture, error) {
	c := &Capture{fd: -1, done: make(chan struct{}), exited: make(chan struct{})}
	proto := htons(unix.ETH_P_ALL)
	err := nsenter.DoPath(nsPath, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex}); err != nil {
			unix.Close(fd)
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("probe: capture on ifindex %d: %w", ifindex, err)
	}
	// A receive timeout lets the reader notice Stop.
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	_ = unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	go c.read()
	return c, nil
}

func (c *Capture) read() {
	defer close(c.exited)
	buf := make([]byte, 65536)
	stopping := false
	for {
		if !stopping {
			select {
			case <-c.done:
				stopping = true // drain what is queued, then return
			default:
			}
		}
		flags := 0
		if stopping {
			flags = unix.MSG_DONTWAIT
		}
		nr, _, err := unix.Recvfrom(c.fd, buf, flags)
		if err == unix.EAGAIN || err == unix.EINTR {
			if stopping {
				return
			}
			continue
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		if f, ok := DecodeEthernet(buf[:nr]); ok {
			c.mu.Lock()
			c.frames = append(c.frames, f)
			c.mu.Unlock()
		}
	}
}

// Frames returns the frames recorded so far; the capture goes on.
func (c *Capture) Frames() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...)
}

// Stop ends the capture and returns every frame and the first read error.
// Calling it again returns the same frames.
func (c *Capture) Stop() ([]Frame, error) {
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
	default:
		close(c.done)
		c.mu.Unlock()
		<-c.exited // the reader wakes up at least every 50ms
		unix.Close(c.fd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...), c.err
}
