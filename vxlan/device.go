package vxlan

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// ensureDevice makes sure the VXLAN device exists with the configured
// attributes, address and MTU, and is up. An incompatible device (other
// type, VNI, port, parent, source address, learning on) is deleted and
// created again; MTU, MAC, addresses and a down state are repaired in
// place. It returns the device, the parent and the number of writes.
func (m *Manager) ensureDevice() (netlink.Link, netlink.Link, int, error) {
	writes := 0
	parent, err := m.nl.LinkByName(m.cfg.Parent)
	if err != nil {
		if isNotFound(err) {
			return nil, nil, 0, fmt.Errorf("%w: %s: %w", ErrNoParent, m.cfg.Parent, err)
		}
		return nil, nil, 0, fmt.Errorf("vxlan: parent %s: %w", m.cfg.Parent, err)
	}
	mtu := m.cfg.MTU
	if mtu == 0 {
		over := Overhead
		if m.cfg.LocalAddr.Addr().Is6() {
			over = OverheadV6
		}
		mtu = parent.Attrs().MTU - over
	}
	link, err := m.nl.LinkByName(m.cfg.Device)
	switch {
	case err == nil:
		if why := m.incompatible(link, parent); why != "" {
			m.log.Info("vxlan: replacing incompatible device", "device", m.cfg.Device, "reason", why)
			if err := m.nl.LinkDel(link); err != nil && !isNotFound(err) {
				return nil, nil, writes, fmt.Errorf("vxlan: delete incompatible %s (%s): %w", m.cfg.Device, why, err)
			}
			writes++
			link = nil
		}
	case isNotFound(err):
		link = nil
	default:
		return nil, nil, writes, fmt.Errorf("vxlan: get %s: %w", m.cfg.Device, err)
	}
	if link == nil {
		v := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{
				Name:         m.cfg.Device,
				MTU:          mtu,
				HardwareAddr: m.cfg.MAC,
			},
			VxlanId:      m.cfg.VNI,
			VtepDevIndex: parent.Attrs().Index,
			SrcAddr:      net.IP(m.cfg.LocalAddr.Addr().AsSlice()),
			Port:         m.cfg.Port,
			Learning:     false,
		}
		if err := m.nl.LinkAdd(v); err != nil {
			return nil, nil, writes, fmt.Errorf("vxlan: add device %s: %w", m.cfg.Device, err)
		}
		writes++
		m.log.Info("vxlan: created device", "device", m.cfg.Device, "vni", m.cfg.VNI, "parent", m.cfg.Parent, "mac", m.cfg.MAC, "mtu", mtu)
		if link, err = m.nl.LinkByName(m.cfg.Device); err != nil {
			return nil, nil, writes, fmt.Errorf("vxlan: get %s after add: %w", m.cfg.Device, err)
		}
	}
	a := link.Attrs()
	if a.MTU != mtu {
		if err := m.nl.LinkSetMTU(link, mtu); err != nil {
			return nil, nil, writes, fmt.Errorf("vxlan: set mtu %d on %s: %w", mtu, m.cfg.Device, err)
		}
		writes++
	}
	if !bytes.Equal(a.HardwareAddr, m.cfg.MAC) {
		if err := m.nl.LinkSetHardwareAddr(link, m.cfg.MAC); err != nil {
			return nil, nil, writes, fmt.Errorf("vxlan: set mac %s on %s: %w", m.cfg.MAC, m.cfg.Device, err)
		}
		writes++
	}
	n, err := m.ensureAddr(link)
	writes += n
	if err != nil {
		return nil, nil, writes, err
	}
	if a.Flags&net.FlagUp == 0 {
		if err := m.nl.LinkSetUp(link); err != nil {
			return nil, nil, writes, fmt.Errorf("vxlan: set %s up: %w", m.cfg.Device, err)
		}
		writes++
	}
	return link, parent, writes, nil
}

// incompatible says why link cannot be repaired in place ("" if it can).
func (m *Manager) incompatible(link, parent netlink.Link) string {
	v, ok := link.(*netlink.Vxlan)
	if !ok {
		return "type " + link.Type()
	}
	src, _ := netip.AddrFromSlice(v.SrcAddr)
	switch {
	case v.VxlanId != m.cfg.VNI:
		return fmt.Sprintf("vni %d", v.VxlanId)
	case v.Port != m.cfg.Port:
		return fmt.Sprintf("port %d", v.Port)
	case v.VtepDevIndex != parent.Attrs().Index:
		return fmt.Sprintf("parent ifindex %d", v.VtepDevIndex)
	case src.Unmap() != m.cfg.LocalAddr.Addr():
		return fmt.Sprintf("local %s", src)
	case v.Learning:
		return "learning on"
	case v.FlowBased:
		return "external (flow based)"
	case len(v.Group) > 0 && !v.Group.IsUnspecified():
		return "group " + v.Group.String()
	}
	return ""
}

// ensureAddr makes the tunnel address the only global address of the
// device's family on it.
func (m *Manager) ensureAddr(link netlink.Link) (int, error) {
	writes := 0
	want := netip.PrefixFrom(m.cfg.TunnelAddr, m.cfg.TunnelAddr.BitLen())
	addrs, err := m.nl.AddrList(link, m.family())
	if err != nil {
		return 0, fmt.Errorf("vxlan: list addresses of %s: %w", m.cfg.Device, err)
	}
	found := false
	var errs []error
	for _, a := range addrs {
		p, ok := prefixOfAddr(a.IPNet)
		if !ok {
			continue
		}
		if p == want {
			found = true
			continue
		}
		if p.Addr().IsLinkLocalUnicast() {
			continue
		}
		if err := m.nl.AddrDel(link, &a); err != nil && !isErrno(err, errAddrNotAvail) {
			errs = append(errs, fmt.Errorf("vxlan: remove stale address %s from %s: %w", p, m.cfg.Device, err))
			continue
		}
		writes++
	}
	if !found {
		a := &netlink.Addr{IPNet: ipNet(want)}
		if want.Addr().Is6() {
			// IFA_F_NODAD: usable as a source at once, not tentative for
			// the second duplicate address detection takes (the address
			// is the node's own by IPAM, as veth's link-local is).
			a.Flags = ifaFNoDAD
		}
		if err := m.nl.AddrAdd(link, a); err != nil && !isErrno(err, errExist) {
			errs = append(errs, fmt.Errorf("vxlan: add address %s to %s: %w", want, m.cfg.Device, err))
		} else if err == nil {
			writes++
		}
	}
	return writes, errors.Join(errs...)
}

// prefixOfAddr is prefixOf without masking (an address with its length).
func prefixOfAddr(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || isErrno(err, errNoDev, errNoEnt)
}

// ifaFNoDAD is Linux's IFA_F_NODAD (if_addr.h); the package builds
// everywhere.
const ifaFNoDAD = 0x02
