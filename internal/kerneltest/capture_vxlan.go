//go:build linux

package kerneltest

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Frame is one captured IPv4 packet, decoded far enough for tabby's
// tests: outer addresses and protocol, UDP ports, and for VXLAN (UDP 4789)
// the VNI and the inner IPv4 packet's addresses and protocol.
type Frame struct {
	Src, Dst         netip.Addr
	Proto            uint8 // 1 ICMP, 17 UDP, ...
	SrcPort, DstPort uint16
	VXLAN            bool
	VNI              uint32
	InnerSrc         netip.Addr
	InnerDst         netip.Addr
	InnerProto       uint8
}

func (f Frame) String() string {
	if f.VXLAN {
		return fmt.Sprintf("%s:%d > %s:%d vxlan vni %d [%s > %s proto %d]", f.Src, f.SrcPort, f.Dst, f.DstPort, f.VNI, f.InnerSrc, f.InnerDst, f.InnerProto)
	}
	if f.Proto == 17 || f.Proto == 6 {
		return fmt.Sprintf("%s:%d > %s:%d proto %d", f.Src, f.SrcPort, f.Dst, f.DstPort, f.Proto)
	}
	return fmt.Sprintf("%s > %s proto %d", f.Src, f.Dst, f.Proto)
}

// Capture is an AF_PACKET capture on one interface of a namespace, the Go
// replacement for `tcpdump -i dev`. Stop it to get the frames.
type Capture struct {
	fd     int
	done   chan struct{}
	exited chan struct{}
	mu     sync.Mutex
	frames []Frame
	err    error
}

// StartCapture opens an AF_PACKET socket in n bound to the interface called
// dev and records every IPv4 frame until Stop.
func (n *NS) StartCapture(dev string) (*Capture, error) {
	l, err := n.Handle.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("capture %s/%s: %w", n.Name, dev, err)
	}
	c := &Capture{fd: -1, done: make(chan struct{}), exited: make(chan struct{})}
	proto := htons(unix.ETH_P_ALL)
	err = n.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: l.Attrs().Index}); err != nil {
			unix.Close(fd)
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("capture %s/%s: %w", n.Name, dev, err)
	}
	// A receive timeout lets the reader notice Stop.
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	_ = unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	go c.read()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

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
		if f, ok := decodeEthernet(buf[:nr]); ok {
			c.mu.Lock()
			c.frames = append(c.frames, f)
			c.mu.Unlock()
		}
	}
}

func (c *Capture) Frames() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...)
}

// Stop ends the capture and returns every frame and the first read error.
func (c *Capture) Stop() ([]Frame, error) {
	select {
	case <-c.done:
	default:
		close(c.done)
		<-c.exited // the reader wakes up at least every 50ms
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
	f := Frame{
		Src:   netip.AddrFrom4([4]byte(b[12:16])),
		Dst:   netip.AddrFrom4([4]byte(b[16:20])),
		Proto: b[9],
	}
	p := b[ihl:]
	if (f.Proto == 17 || f.Proto == 6) && len(p) >= 4 {
		f.SrcPort, f.DstPort = binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:])
	}
	if f.Proto == 17 && f.DstPort == 4789 && len(p) >= 8+8 {
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
