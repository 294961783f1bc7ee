//go:build linux

package nlbatch

import (
	"encoding/binary"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/nsenter"
)

// MaxBatch is how many requests go out in one send. Each acknowledgement
// is queued on the socket until read; the receive buffer is sized for
// this many with room to spare.
const MaxBatch = 128

// Conn is a NETLINK_ROUTE socket for batched writes, bound in a network
// namespace when it was dialled. It is not safe for concurrent use.
type Conn struct {
	fd   int
	seq  uint32
	buf  []byte
	rbuf []byte
}

// Dial opens a Conn in the network namespace at path ("" is the caller's
// own).
func Dial(path string) (*Conn, error) {
	var fd int
	open := func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		return err
	}
	var err error
	if path == "" {
		err = open()
	} else {
		err = nsenter.DoPath(path, open)
	}
	if err != nil {
		return nil, fmt.Errorf("nlbatch: socket: %w", err)
	}
	c := &Conn{fd: fd, buf: make([]byte, 0, 16<<10), rbuf: make([]byte, 64<<10)}
	// Acknowledgements carry only the header of the request (not its
	// whole body), and there is room for a whole batch of them.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("nlbatch: bind: %w", err)
	}
	return c, nil
}

// Close closes the socket.
func (c *Conn) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// WriteBatch performs ws in order, MaxBatch to a send, and returns one error
// per write (nil: done), as the kernel answered each: a syscall.Errno, as
// github.com/vishvananda/netlink returns. A write this package cannot
// encode fails with ErrUnsupported and is not sent; one whose answer never
// came (the socket failed) fails with ErrNoAck.
func (c *Conn) WriteBatch(ws []Write) []error {
	errs := make([]error, len(ws))
	for start := 0; start < len(ws); {
		end := min(start+MaxBatch, len(ws))
		c.batch(ws[start:end], errs[start:end])
		start = end
	}
	return errs
}

// batch sends one batch and collects its answers.
func (c *Conn) batch(ws []Write, errs []error) {
	c.buf = c.buf[:0]
	first := c.seq + 1
	pending := map[uint32]int{}
	for i, w := range ws {
		if err := check(w); err != nil {
			errs[i] = err
			continue
		}
		c.seq++
		pending[c.seq] = i
		c.buf = encode(c.buf, c.seq, w)
	}
	if len(pending) == 0 {
		return
	}
	fail := func(err error) {
		for _, i := range pending {
			errs[i] = fmt.Errorf("%w: %w", ErrNoAck, err)
		}
	}
	if err := unix.Sendto(c.fd, c.buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		fail(fmt.Errorf("send: %w", err))
		return
	}
	for len(pending) > 0 {
		n, from, err := unix.Recvfrom(c.fd, c.rbuf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			fail(fmt.Errorf("receive: %w", err))
			return
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue // not from the kernel
		}
		msgs, err := syscall.ParseNetlinkMessage(c.rbuf[:n])
		if err != nil {
			fail(fmt.Errorf("parse: %w", err))
			return
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || m.Header.Seq < first {
				continue
			}
			i, ok := pending[m.Header.Seq]
			if !ok || len(m.Data) < 4 {
				continue
			}
			delete(pending, m.Header.Seq)
			if e := int32(binary.NativeEndian.Uint32(m.Data[:4])); e != 0 {
				errs[i] = syscall.Errno(-e)
			}
		}
	}
}

// encode appends the request for w (checked) with sequence number seq.
func encode(b []byte, seq uint32, w Write) []byte {
	start := len(b)
	var typ, flags uint16
	switch w.Op {
	case RouteAdd:
		typ, flags = unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL
	case RouteReplace:
		typ, flags = unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE
	case RouteDel:
		typ = unix.RTM_DELROUTE
	case NeighSet:
		typ, flags = unix.RTM_NEWNEIGH, unix.NLM_F_CREATE|unix.NLM_F_REPLACE
	case NeighDel:
		typ = unix.RTM_DELNEIGH
	}
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set below
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel fills it
	if w.Route != nil && w.Op != NeighSet && w.Op != NeighDel {
		b = encodeRoute(b, w.Op, w.Route)
	} else {
		b = encodeNeigh(b, w.Neigh)
	}
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// encodeRoute is github.com/vishvananda/netlink's prepareRouteReq for the
// fields check lets through: rtmsg, RTA_DST, RTA_GATEWAY, RTA_TABLE (for
// tables above 255), RTA_OIF (always, as there).
func encodeRoute(b []byte, op Op, r *netlink.Route) []byte {
	fam := family(r.Dst.IP)
	ones, _ := r.Dst.Mask.Size()
	table, protocol, typ := uint8(unix.RT_TABLE_MAIN), uint8(unix.RTPROT_BOOT), uint8(unix.RTN_UNICAST)
	if op == RouteDel {
		protocol, typ = 0, 0 // nl.NewRtDelMsg
	}
	var bigTable bool
	if r.Table > 0 {
		if r.Table >= 256 {
			table, bigTable = unix.RT_TABLE_UNSPEC, true
		} else {
			table = uint8(r.Table)
		}
	}
	if r.Protocol > 0 {
		protocol = uint8(r.Protocol)
	}
	if r.Type > 0 {
		typ = uint8(r.Type)
	}
	b = append(b, uint8(fam), uint8(ones), 0, 0, table, protocol, uint8(r.Scope), typ)
	b = binary.NativeEndian.AppendUint32(b, uint32(r.Flags))
	b = attr(b, unix.RTA_DST, ipBytes(r.Dst.IP))
	if r.Gw != nil {
		b = attr(b, unix.RTA_GATEWAY, ipBytes(r.Gw))
	}
	if bigTable {
		b = attr(b, unix.RTA_TABLE, binary.NativeEndian.AppendUint32(nil, uint32(r.Table)))
	}
	return attr(b, unix.RTA_OIF, binary.NativeEndian.AppendUint32(nil, uint32(r.LinkIndex)))
}

// encodeNeigh is github.com/vishvananda/netlink's neighHandle for the
// fields check lets through: ndmsg, NDA_DST, NDA_LLADDR.
func encodeNeigh(b []byte, n *netlink.Neigh) []byte {
	fam := n.Family
	if fam <= 0 {
		fam = family(n.IP)
	}
	b = append(b, uint8(fam), 0, 0, 0)
	b = binary.NativeEndian.AppendUint32(b, uint32(n.LinkIndex))
	b = binary.NativeEndian.AppendUint16(b, uint16(n.State))
	b = append(b, uint8(n.Flags), uint8(n.Type))
	b = attr(b, unix.NDA_DST, ipBytes(n.IP))
	if n.HardwareAddr != nil {
		b = attr(b, unix.NDA_LLADDR, n.HardwareAddr)
	}
	return b
}

func ipBytes(ip net.IP) []byte {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip.To16()
}

// attr appends one rtattr, padded to 4 bytes.
func attr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
