package netlinktest

import (
	"fmt"

	"github.com/tabbynet/tabby/netlinktest/internal/abi"
)

// Release is the kernel release the fake reports (KernelRelease): the
// version whose behaviour it models.
const Release = "6.18.0-netlinktest"

// KernelRelease returns Release, the fake's `uname -r`. Code that picks a
// workaround by kernel version (vxlan's checksum-offload step) asks the
// fake instead of the host when handed one.
func (k *Kernel) KernelRelease() string { return Release }

// SetTxChecksum sets TX checksum offload on a device of this namespace, as
// the SIOCETHTOOL ioctl (ETHTOOL_STXCSUM) does on the kernel; ENODEV if
// there is no such device. It has the signature of vxlan.Offloader, so a
// vxlan.Manager handed a Kernel never sends the ioctl to the host. Devices
// start with offload on, as veth and vxlan devices do; TxChecksum reads it.
// It counts as a write.
func (k *Kernel) SetTxChecksum(device string, on bool) error {
	return k.do("SetTxChecksum", func() error {
		l := k.ns.linkByName(device)
		if l == nil {
			return fmt.Errorf("netlinktest: ethtool %s: %w", device, abi.ENODEV)
		}
		l.txCsumOff = !on
		return nil
	})
}

// TxChecksum reports TX checksum offload of a device (ETHTOOL_GTXCSUM);
// ENODEV if there is no such device.
func (k *Kernel) TxChecksum(device string) (bool, error) {
	var on bool
	err := k.read("TxChecksum", func() error {
		l := k.ns.linkByName(device)
		if l == nil {
			return fmt.Errorf("netlinktest: ethtool %s: %w", device, abi.ENODEV)
		}
		on = !l.txCsumOff
		return nil
	})
	return on, err
}
