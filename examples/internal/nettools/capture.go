//go:build linux

package nettools

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/nsenter"
	"golang.org/x/sys/unix"
)

// Frame is one captured IPv4 packet (a plain value): outer addresses, protocol, UDP ports,
// and for VXLAN (UDP 4789) the VNI and the inner packet's addresses.
type Frame struct {
	Src, Dst         netip.Addr
	Proto            uint8 // 1 ICMP, 6 TCP, 17 UDP
	SrcPort, DstPort uint16
	VXLAN            bool
	VNI              uint32
	InnerSrc         netip.Addr
	InnerDst         netip.Addr
	InnerProto       uint8
}

func (f Frame) String() string {
	if f.VXLAN {
		return fmt.Sprintf("IP %s.%d > %s.%d: UDP, VXLAN vni %d: IP %s > %s proto %d", f.Src, f.SrcPort, f.Dst, f.DstPort, f.VNI, f.InnerSrc, f.InnerDst, f.InnerProto)
	}
	if f.Proto == 17 || f.Proto == 6 {
		return fmt.Sprintf("IP %s.%d > %s.%d proto %d", f.Src, f.SrcPort, f.Dst, f.DstPort, f.Proto)
	}
	return fmt.Sprintf("IP %s > %s proto %d", f.Src, f.Dst, f.Proto)
}

// Capture records IPv4 frames on one interface of a namespace. Stop may
// be called from any goroutine, more than once.
type Capture struct {
	fd     int
	done   chan struct{}
	exited chan struct{}
	mu     sync.Mutex
	frames []Frame
	err    error
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// StartCapture opens an AF_PACKET socket bound to the interface with
// index ifindex in the namespace at nsPath and records every IPv4 frame
// until Stop.
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
		return nil, fmt.Errorf("capture: %w", err)
	}
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
				stopping = true
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
		if f, ok := decodeEthernet(buf[:nr]); ok {
			c.mu.Lock()
			c.frames = append(c.frames, f)
			c.mu.Unlock()
		}
	}
}

// Stop ends the capture and returns the frames and the first read error.
func (c *Capture) Stop() ([]Frame, error) {
	select {
	case <-c.done:
	default:
		close(c.done)
		<-c.exited
		unix.Close(c.fd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...), c.err
}

func decodeEthernet(b []byte) (Frame, bool) {
	if len(b) < 14 || binary.BigEndian.Uint16(b[12:]) != unix.ETH_P_IP {
		return Frame{}, false
	}
	return decodeIPv4(b[14:])
}

func decodeIPv4(b []byte) (Frame, bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return Frame{}, false
	}
	ihl := int(b[0]&0xf) * 4
	if ihl < 20 || len(b) < ihl {
		return Frame{}, false
	}
	f := Frame{Src: netip.AddrFrom4([4]byte(b[12:16])), Dst: netip.AddrFrom4([4]byte(b[16:20])), Proto: b[9]}
	p := b[ihl:]
	if (f.Proto == 17 || f.Proto == 6) && len(p) >= 4 {
		f.SrcPort, f.DstPort = binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:])
	}
	if f.Proto == 17 && f.DstPort == 4789 && len(p) >= 16 {
		vx := p[8:]
		if vx[0]&0x08 != 0 {
			f.VXLAN = true
			f.VNI = uint32(vx[4])<<16 | uint32(vx[5])<<8 | uint32(vx[6])
			if inner, ok := decodeEthernet(vx[8:]); ok {
				f.InnerSrc, f.InnerDst, f.InnerProto = inner.Src, inner.Dst, inner.Proto
			}
		}
	}
	return f, true
}
