package vxlan

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// ParseKernelRelease extracts major and minor from a kernel release string
// such as "5.4.0-42-generic" or "6.18.44-fc".
func ParseKernelRelease(s string) (major, minor int, err error) {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '_' })
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("vxlan: kernel release %q: want major.minor", s)
	}
	major, err = strconv.Atoi(f[0])
	if err != nil || major < 0 {
		return 0, 0, fmt.Errorf("vxlan: kernel release %q: bad major", s)
	}
	minor, err = strconv.Atoi(f[1])
	if err != nil || minor < 0 {
		return 0, 0, fmt.Errorf("vxlan: kernel release %q: bad minor", s)
	}
	return major, minor, nil
}

// needsChecksumOff says whether ChecksumAuto turns TX checksum offload off
// on a kernel of this release: kernels up to 5.7 mis-handle checksum offload
// for VXLAN-encapsulated packets.
func needsChecksumOff(release string) (bool, error) {
	major, minor, err := ParseKernelRelease(release)
	if err != nil {
		return false, err
	}
	return major < 5 || (major == 5 && minor <= 7), nil
}

// checksumWorkaround applies the configured checksum-offload mode to the
// device once per device incarnation (ifindex).
func (m *Manager) checksumWorkaround(dev netlink.Link) error {
	idx := dev.Attrs().Index
	if m.offloadDone == idx {
		return nil
	}
	var on bool
	switch m.cfg.ChecksumOffload {
	case ChecksumOn:
		on = true
	case ChecksumOff:
		on = false
	case ChecksumAuto:
		rel := m.cfg.KernelRelease
		if r, ok := m.nl.(interface{ KernelRelease() string }); rel == "" && ok {
			rel = r.KernelRelease() // a fake kernel's, not the host's
		}
		if rel == "" {
			var err error
			if rel, err = kernelRelease(); err != nil {
				return fmt.Errorf("vxlan: checksum offload: %w", err)
			}
		}
		off, err := needsChecksumOff(rel)
		if err != nil {
			return fmt.Errorf("vxlan: checksum offload: %w", err)
		}
		if !off {
			m.offloadDone = idx
			return nil
		}
	}
	o := m.cfg.Offloader
	if no, ok := m.nl.(Offloader); o == nil && ok {
		o = no // the Netlink seam has its own (netlinktest): never the host's ioctl
	}
	if o == nil {
		o = ethtoolOffloader{ns: m.cfg.Namespace}
	}
	if err := o.SetTxChecksum(m.cfg.Device, on); err != nil {
		return fmt.Errorf("vxlan: set tx checksum offload %v on %s: %w", on, m.cfg.Device, err)
	}
	m.log.Info("vxlan: tx checksum offload set", "device", m.cfg.Device, "on", on, "mode", m.cfg.ChecksumOffload)
	m.offloadDone = idx
	return nil
}
