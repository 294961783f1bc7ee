//go:build linux

package proxyarp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/nsenter"
)

// requestFilter passes incoming ARP requests only: EtherType ARP, operation
// 1, and not a frame this host sends or one addressed to another host.
// Frames too short to hold the operation are dropped by the kernel too.
var requestFilter = []bpf.Instruction{
	bpf.LoadAbsolute{Off: offEtherType, Size: 2},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeARP, SkipTrue: 6},
	bpf.LoadAbsolute{Off: offOp, Size: 2},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: opRequest, SkipTrue: 4},
	bpf.LoadExtension{Num: bpf.ExtType},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 2},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OTHERHOST, SkipTrue: 1},
	bpf.RetConstant{Val: readBufLen},
	bpf.RetConstant{Val: 0},
}

// RequestFilter returns the classic BPF program attached to every packet
// socket, assembled.
func RequestFilter() ([]bpf.RawInstruction, error) { return bpf.Assemble(requestFilter) }

// ListenPacket returns the default ListenFunc: an AF_PACKET socket bound to
// the interface and to ETH_P_ARP in the namespace at netnsPath (empty: the
// caller's), with RequestFilter attached before bind.
//
// The socket is created and bound by github.com/mdlayher/packet. It is then
// served outside Go's netpoller: the Conn's Read blocks its own OS thread
// in poll(2) on the socket and an eventfd (Close writes the eventfd), so an
// arriving request wakes exactly the thread that answers it, which reads,
// answers and goes back to sleep without involving Go's scheduler. In
// bench/proxyarp this answers back-to-back requests in 9–11 µs on average
// where the same responder reading through the netpoller took 11–34 µs
// (kernel proxy ARP: 2.4 µs). Idle interfaces cost no CPU: nothing wakes up
// until a request or Close.
func ListenPacket(netnsPath string) ListenFunc {
	return func(ctx context.Context, l Link) (Conn, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var c Conn
		err := nsenter.DoPath(netnsPath, func() error {
			var err error
			c, err = openPacket(l)
			return err
		})
		return c, err
	}
}

func openPacket(l Link) (*packetConn, error) {
	filter, err := RequestFilter()
	if err != nil {
		return nil, err
	}
	ifi := &net.Interface{Index: l.Index, Name: l.Name, HardwareAddr: l.MAC}
	pc, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: filter})
	if err != nil {
		return nil, err
	}
	defer pc.Close() // deregisters from the netpoller; our duplicate stays open
	rc, err := pc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
		if derr != nil {
			return
		}
		// Drop our own transmissions before they are even filtered
		// (Linux 4.20+; the filter covers older kernels).
		_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("fcntl", derr)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	c := &packetConn{fd: fd, efd: efd}
	c.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	c.pfd[1] = unix.PollFd{Fd: int32(efd), Events: unix.POLLIN}
	return c, nil
}

// packetConn is a Conn over a non-blocking packet socket served by blocking
// poll(2) calls on the reading goroutine's thread.
type packetConn struct {
	fd, efd int
	pfd     [2]unix.PollFd // only the reader touches it

	closed atomic.Bool
	once   sync.Once
	mu     sync.RWMutex // Read and Write hold it shared; the fds close under it exclusively
}

func (c *packetConn) Read(b []byte) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for {
		if c.closed.Load() {
			return 0, net.ErrClosed
		}
		n, err := unix.Read(c.fd, b)
		switch err {
		case nil:
			return n, nil
		case unix.EAGAIN, unix.EINTR:
		default:
			return 0, os.NewSyscallError("read", err)
		}
		if err == unix.EINTR {
			continue
		}
		c.pfd[0].Revents, c.pfd[1].Revents = 0, 0
		if _, err := unix.Poll(c.pfd[:], -1); err != nil && err != unix.EINTR {
			return 0, os.NewSyscallError("poll", err)
		}
	}
}

func (c *packetConn) Write(b []byte) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	for {
		n, err := unix.Write(c.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, os.NewSyscallError("write", err)
		}
		return n, nil
	}
}

// Drops implements DropCounter: the frames the kernel dropped for this
// socket (receive buffer full) since the previous call, from
// PACKET_STATISTICS, which resets the kernel's counters on every read.
func (c *packetConn) Drops() (uint64, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0, os.NewSyscallError("getsockopt PACKET_STATISTICS", err)
	}
	return uint64(st.Drops), nil
}

// Close wakes a pending Read, waits for it to return and closes the
// socket. Calling it more than once is harmless.
func (c *packetConn) Close() error {
	var err error
	c.once.Do(func() {
		c.closed.Store(true)
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		if _, werr := unix.Write(c.efd, one[:]); werr != nil {
			err = fmt.Errorf("proxyarp: wake reader: %w", werr)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		err = errors.Join(err, unix.Close(c.fd), unix.Close(c.efd))
	})
	return err
}

// setRealtime puts the calling thread under SCHED_FIFO at prio.
func setRealtime(prio int) error {
	attr := unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: uint32(prio)}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		return os.NewSyscallError("sched_setattr", err)
	}
	return nil
}
