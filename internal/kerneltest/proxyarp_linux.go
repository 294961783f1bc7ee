//go:build linux

package kerneltest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ARPClient sends ARP requests out of one interface of a namespace and
// times the replies, like arping. It uses a blocking AF_PACKET socket
// (no netpoller) so that its own overhead in a round trip is two system
// calls. Not safe for concurrent use.
type ARPClient struct {
	fd     int
	mac    net.HardwareAddr
	src    netip.Addr
	req    [42]byte
	buf    [128]byte
	oob    [128]byte
	closed bool
}

// NewARPClient opens a client on the interface called ifname in n that
// asks as src (the interface's MAC is the sender hardware address).
func NewARPClient(n *NS, ifname string, src netip.Addr) (*ARPClient, error) {
	l, err := n.Handle.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("arp client: %s: %w", ifname, err)
	}
	c := &ARPClient{fd: -1, mac: l.Attrs().HardwareAddr, src: src}
	err = n.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(arpHtons(unix.ETH_P_ARP)))
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		c.fd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return os.NewSyscallError("setsockopt SO_TIMESTAMPNS", err)
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: arpHtons(unix.ETH_P_ARP), Ifindex: l.Attrs().Index})
	})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("arp client on %s in %s: %w", ifname, n.Name, err)
	}
	// Request template: broadcast, who-has ? tell src.
	r := c.req[:]
	copy(r[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(r[6:12], c.mac)
	binary.BigEndian.PutUint16(r[12:], 0x0806)
	binary.BigEndian.PutUint16(r[14:], 1)
	binary.BigEndian.PutUint16(r[16:], 0x0800)
	r[18], r[19] = 6, 4
	binary.BigEndian.PutUint16(r[20:], 1)
	copy(r[22:28], c.mac)
	s4 := src.As4()
	copy(r[28:32], s4[:])
	return c, nil
}

// MAC is the sending interface's address.
func (c *ARPClient) MAC() net.HardwareAddr { return c.mac }

// ErrNoARPReply is returned by Query when no reply arrives in time.
var ErrNoARPReply = errors.New("no ARP reply")

// RTT is one ARP round trip measured two ways from just before the request
// is sent: Wire ends when the reply reaches the namespace's stack (its
// kernel receive timestamp), which is what a pod's own neighbour
// resolution waits for; App ends when the client has read the reply, so
// it adds the client's wake-up when the reply did not arrive within its
// send call.
type RTT struct{ Wire, App time.Duration }

// Query asks for target and waits up to timeout for the matching reply. It
// returns the MAC announced and the round trip.
func (c *ARPClient) Query(target netip.Addr, timeout time.Duration) (net.HardwareAddr, RTT, error) {
	t4 := target.As4()
	copy(c.req[38:42], t4[:])
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, RTT{}, err
	}
	start := time.Now()
	deadline := start.Add(timeout)
	if _, err := unix.Write(c.fd, c.req[:]); err != nil {
		return nil, RTT{}, os.NewSyscallError("write", err)
	}
	for {
		n, oobn, _, _, err := unix.Recvmsg(c.fd, c.buf[:], c.oob[:], 0)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				return nil, RTT{}, fmt.Errorf("%w for %v within %v", ErrNoARPReply, target, timeout)
			}
			return nil, RTT{}, os.NewSyscallError("read", err)
		}
		b := c.buf[:n]
		if n >= 42 && binary.BigEndian.Uint16(b[12:]) == 0x0806 && binary.BigEndian.Uint16(b[20:]) == 2 &&
			[4]byte(b[28:32]) == t4 && [4]byte(b[38:42]) == c.src.As4() {
			rtt := RTT{App: time.Since(start)}
			if msgs, err := unix.ParseSocketControlMessage(c.oob[:oobn]); err == nil {
				for _, m := range msgs {
					if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
						sec := int64(binary.NativeEndian.Uint64(m.Data[0:]))
						nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
						rtt.Wire = time.Unix(sec, nsec).Sub(start)
					}
				}
			}
			return net.HardwareAddr(append([]byte(nil), b[22:28]...)), rtt, nil
		}
		if time.Now().After(deadline) {
			return nil, RTT{}, fmt.Errorf("%w for %v within %v", ErrNoARPReply, target, timeout)
		}
	}
}

// Close closes the socket.
func (c *ARPClient) Close() error {
	if c.closed || c.fd < 0 {
		return nil
	}
	c.closed = true
	return unix.Close(c.fd)
}

func arpHtons(v uint16) uint16 { return v<<8 | v>>8 }
