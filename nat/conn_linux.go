//go:build linux

package nat

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Conn lists the few *nftables.Conn methods the Manager calls, with the same
// signatures, so that *nftables.Conn satisfies it with no adapter and tests
// can pass the in-memory nattest.Conn instead.
//
// Writes (Add*, Del*, Set*Elements) are only queued; Flush sends everything
// queued since the previous Flush to the kernel as one nftables transaction,
// which the kernel applies entirely or not at all. A Conn therefore serves
// one Manager.
type Conn interface {
	ListTablesOfFamily(family nftables.TableFamily) ([]*nftables.Table, error)
	ListChainsOfTableFamily(family nftables.TableFamily) ([]*nftables.Chain, error)
	GetSets(t *nftables.Table) ([]*nftables.Set, error)
	GetSetElements(s *nftables.Set) ([]nftables.SetElement, error)
	GetRules(t *nftables.Table, c *nftables.Chain) ([]*nftables.Rule, error)

	AddTable(t *nftables.Table) *nftables.Table
	DelTable(t *nftables.Table)
	AddSet(s *nftables.Set, vals []nftables.SetElement) error
	SetAddElements(s *nftables.Set, vals []nftables.SetElement) error
	SetDeleteElements(s *nftables.Set, vals []nftables.SetElement) error
	AddChain(c *nftables.Chain) *nftables.Chain
	AddRule(r *nftables.Rule) *nftables.Rule
	Flush() error
}

var _ Conn = (*nftables.Conn)(nil)

// Dial opens a lasting nftables connection in the network namespace referred
// to by the open file descriptor netnsFd (for example the Fd of a
// netns.NsHandle or of /var/run/netns/<name>). netnsFd 0 means the caller's
// own namespace. The caller closes the connection with CloseLasting.
//
// The namespace is a value: no thread of the caller changes namespace.
//
// The socket's send buffer is raised to SendBuffer bytes: a transaction is
// sent in one sendmsg, and the default buffer (about 200 KiB) holds only
// some 7,000 address elements.
func Dial(netnsFd int) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigSendBuffer)}
	if netnsFd != 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nat: dial nftables (netns fd %d): %w", netnsFd, err)
	}
	return c, nil
}

// SendBuffer is the send buffer Dial asks for: room for a transaction of
// about 250,000 address elements.
const SendBuffer = 8 << 20

// bigSendBuffer sets SO_SNDBUFFORCE (allowed with CAP_NET_ADMIN, which
// writing nftables needs anyway), falling back to SO_SNDBUF, which the
// kernel caps at net.core.wmem_max.
func bigSendBuffer(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("nat: netlink socket: %w", err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, SendBuffer)
		if serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, SendBuffer)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("nat: netlink send buffer: %w", err)
	}
	return nil
}
