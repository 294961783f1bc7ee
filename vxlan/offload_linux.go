//go:build linux

package vxlan

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/nsenter"
)

func kernelRelease() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// ethtoolOffloader sets TX checksum offload with the SIOCETHTOOL ioctl
// (ETHTOOL_STXCSUM), the call `ethtool -K dev tx off` makes, from a socket
// opened in namespace ns ("" = the caller's).
type ethtoolOffloader struct{ ns string }

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with ifr_data set.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

func (e ethtoolOffloader) SetTxChecksum(dev string, on bool) error {
	return nsenter.DoPath(e.ns, func() error { return setTxChecksum(dev, on) })
}

func setTxChecksum(dev string, on bool) error {
	if len(dev) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", dev)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	v := ethtoolValue{cmd: unix.ETHTOOL_STXCSUM}
	if on {
		v.data = 1
	}
	var ifr ifreqData
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(&v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.SIOCETHTOOL), uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&v)
	if errno != 0 {
		return fmt.Errorf("ioctl SIOCETHTOOL ETHTOOL_STXCSUM: %w", errno)
	}
	return nil
}

// txChecksum reads TX checksum offload (ETHTOOL_GTXCSUM); for tests.
func txChecksum(dev string) (bool, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	v := ethtoolValue{cmd: unix.ETHTOOL_GTXCSUM}
	var ifr ifreqData
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(&v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.SIOCETHTOOL), uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&v)
	if errno != 0 {
		return false, errno
	}
	return v.data != 0, nil
}
