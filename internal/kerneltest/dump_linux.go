//go:build linux

package kerneltest

import (
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
)

// Dump returns `ip -d addr; ip route; ip neigh` equivalents for n, for
// failure messages.
func (n *NS) Dump() string {
	var b strings.Builder
	links, _ := n.Handle.LinkList()
	for _, l := range links {
		a := l.Attrs()
		fmt.Fprintf(&b, "%d: %s %s mtu %d %s %s\n", a.Index, a.Name, l.Type(), a.MTU, a.HardwareAddr, a.OperState)
		addrs, _ := n.Handle.AddrList(l, netlink.FAMILY_ALL)
		for _, ad := range addrs {
			fmt.Fprintf(&b, "    inet %s\n", ad.IPNet)
		}
	}
	routes, _ := n.Handle.RouteList(nil, netlink.FAMILY_V4)
	for _, r := range routes {
		fmt.Fprintf(&b, "route %s\n", r)
	}
	neighs, _ := n.Handle.NeighList(0, netlink.FAMILY_V4)
	for _, ne := range neighs {
		fmt.Fprintf(&b, "neigh %s lladdr %s dev %d state %#x\n", ne.IP, ne.HardwareAddr, ne.LinkIndex, ne.State)
	}
	return b.String()
}
