//go:build linux

package netlinktest_test

import (
	"net"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/netlinktest"
)

// handle lists every *netlink.Handle method the fake implements; both the
// real handle and the fake must satisfy it with identical signatures.
type handle interface {
	LinkAdd(netlink.Link) error
	LinkDel(netlink.Link) error
	LinkByName(string) (netlink.Link, error)
	LinkByIndex(int) (netlink.Link, error)
	LinkList() ([]netlink.Link, error)
	LinkSetUp(netlink.Link) error
	LinkSetDown(netlink.Link) error
	LinkSetMTU(netlink.Link, int) error
	LinkSetHardwareAddr(netlink.Link, net.HardwareAddr) error
	LinkSetAlias(netlink.Link, string) error
	LinkSetName(netlink.Link, string) error
	LinkSetMaster(netlink.Link, netlink.Link) error
	LinkSetNoMaster(netlink.Link) error
	LinkSetNsFd(netlink.Link, int) error
	AddrAdd(netlink.Link, *netlink.Addr) error
	AddrReplace(netlink.Link, *netlink.Addr) error
	AddrDel(netlink.Link, *netlink.Addr) error
	AddrList(netlink.Link, int) ([]netlink.Addr, error)
	RouteAdd(*netlink.Route) error
	RouteReplace(*netlink.Route) error
	RouteDel(*netlink.Route) error
	RouteList(netlink.Link, int) ([]netlink.Route, error)
	RouteListFiltered(int, *netlink.Route, uint64) ([]netlink.Route, error)
	RouteListFilteredIter(int, *netlink.Route, uint64, func(netlink.Route) bool) error
	NeighAdd(*netlink.Neigh) error
	NeighSet(*netlink.Neigh) error
	NeighAppend(*netlink.Neigh) error
	NeighDel(*netlink.Neigh) error
	NeighList(int, int) ([]netlink.Neigh, error)
	Close()
}

var (
	_ handle = (*netlink.Handle)(nil)
	_ handle = (*netlinktest.Kernel)(nil)
)
