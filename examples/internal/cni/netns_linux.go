package cni

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/veth"
)

// hostNetNSPaths are the namespaces no pod may be given: the plugin's own
// (the host's, where the runtime runs it) and init's.
var hostNetNSPaths = [...]string{"/proc/self/ns/net", "/proc/1/ns/net"}

// CheckNetNS is the default Env.CheckNetNS on Linux. It opens path and
// returns an error wrapping veth.ErrInvalidNetNS (CNI code 4) when it does
// not exist or is not a network namespace (nsfs with NS_GET_NSTYPE =
// CLONE_NEWNET), and one wrapping ErrHostNetNS (code 107) when it is the
// plugin's own network namespace or init's (same device and inode as
// /proc/self/ns/net or /proc/1/ns/net). It writes nothing.
func CheckNetNS(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", veth.ErrInvalidNetNS, path, &os.PathError{Op: "open", Path: path, Err: err})
	}
	defer unix.Close(fd)
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return fmt.Errorf("%w: %s: statfs: %w", veth.ErrInvalidNetNS, path, err)
	}
	if fs.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("%w: %s: %w", veth.ErrInvalidNetNS, path, veth.ErrNotNamespace)
	}
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	switch {
	case err == nil && t != unix.CLONE_NEWNET:
		return fmt.Errorf("%w: %s: %w (a namespace of another type)", veth.ErrInvalidNetNS, path, veth.ErrNotNamespace)
	case err != nil && !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%w: %s: NS_GET_NSTYPE: %w", veth.ErrInvalidNetNS, path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%w: %s: stat: %w", veth.ErrInvalidNetNS, path, err)
	}
	for _, h := range hostNetNSPaths {
		var hs unix.Stat_t
		if err := unix.Stat(h, &hs); err != nil {
			if h == hostNetNSPaths[0] {
				// Without our own namespace to compare with, nothing
				// can be proven safe.
				return fmt.Errorf("%w: stat %s: %w", ErrHostNetNS, h, err)
			}
			continue // init's may be hidden from us (hidepid)
		}
		if hs.Dev == st.Dev && hs.Ino == st.Ino {
			return fmt.Errorf("%w: %s is the same namespace as %s", ErrHostNetNS, path, h)
		}
	}
	return nil
}
