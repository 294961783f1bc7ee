package veth

import (
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// family holds everything that differs between IPv4 and IPv6 plumbing;
// create and diff loop over the families of a pod's addresses.
type family struct {
	name string
	nl   int        // netlink.FAMILY_V4 / FAMILY_V6
	any  netip.Addr // 0.0.0.0 / ::, for the default route
	// gateway is the pod's next hop: 169.254.1.1 (owned by nobody, the
	// host interface answers ARP for it) or, for IPv6, the host
	// interface's own link-local address (EUI-64 of its MAC), as Calico.
	gateway netip.Addr
	// gatewayRoute: the pod needs "<gateway> dev eth0 scope link" (IPv4);
	// IPv6 link-local gateways are on-link by definition.
	gatewayRoute bool
	// hostGateway: the host interface carries the gateway address itself
	// (IPv6; added explicitly, without DAD, so it does not depend on the
	// namespace's addr_gen_mode and is usable at once).
	hostGateway bool
	// hostScope is the scope of the host route to the pod.
	hostScope netlink.Scope
	// addrFlags of the pod address (IFA_F_NODAD for IPv6: the address is
	// the pod's alone and usable at once).
	addrFlags int
}

func (p *Plumber) familyOf(a netip.Addr) family {
	if a.Is4() {
		return family{name: "IPv4", nl: netlink.FAMILY_V4, any: netip.IPv4Unspecified(),
			gateway: Gateway4(), gatewayRoute: true, hostScope: netlink.SCOPE_LINK}
	}
	return family{name: "IPv6", nl: netlink.FAMILY_V6, any: netip.IPv6Unspecified(),
		gateway: LinkLocal(p.mac), hostGateway: true, hostScope: netlink.SCOPE_UNIVERSE,
		addrFlags: unix.IFA_F_NODAD}
}

// families returns the families of s's addresses, IPv4 first.
func (p *Plumber) families(s *spec) []family {
	var v4, v6 bool
	for _, a := range s.addrs {
		v4 = v4 || a.Addr().Is4()
		v6 = v6 || a.Addr().Is6()
	}
	var fs []family
	if v4 {
		fs = append(fs, p.familyOf(netip.IPv4Unspecified()))
	}
	if v6 {
		fs = append(fs, p.familyOf(netip.IPv6Unspecified()))
	}
	return fs
}
