package veth

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/sysctl"
)

var _ Netlink = (*netlink.Handle)(nil)

// SysctlAt returns the /proc/sys tree of the network namespace bound at
// path; "" is this process's own namespace. Writes in another namespace
// run on a dedicated thread that joins it (the thread of the caller is
// never moved).
func SysctlAt(path string) Sysctl { return sysctl.At(path) }

// nsHandle is a pod namespace opened by OpenNetNS.
type nsHandle struct {
	*netlink.Handle
	ns netns.NsHandle
}

func (h *nsHandle) Fd() int { return int(h.ns) }

func (h *nsHandle) Close() {
	h.Handle.Close()
	h.ns.Close()
}

// OpenNetNS is the default OpenFunc: it opens path, makes sure it is a
// network namespace (nsfs, NS_GET_NSTYPE = CLONE_NEWNET) and returns a
// route-netlink handle inside it.
func OpenNetNS(path string) (PodNetNS, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if err := isNetNS(int(ns)); err != nil {
		ns.Close()
		return nil, err
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	return &nsHandle{Handle: h, ns: ns}, nil
}

func isNetNS(fd int) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return ErrNotNamespace
	}
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
		return nil // kernel older than 4.11: nsfs is all we can check
	}
	if err != nil {
		return fmt.Errorf("NS_GET_NSTYPE: %w", err)
	}
	if t != unix.CLONE_NEWNET {
		return ErrNotNamespace
	}
	return nil
}
