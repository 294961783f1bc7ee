package veth_test

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// nopNetlink fails every call: validation must reject bad input before
// touching the kernel.
type nopNetlink struct{}

var errTouched = errors.New("kernel touched")

func (nopNetlink) LinkAdd(netlink.Link) error                         { return errTouched }
func (nopNetlink) LinkDel(netlink.Link) error                         { return errTouched }
func (nopNetlink) LinkByName(string) (netlink.Link, error)            { return nil, errTouched }
func (nopNetlink) LinkSetUp(netlink.Link) error                       { return errTouched }
func (nopNetlink) AddrAdd(netlink.Link, *netlink.Addr) error          { return errTouched }
func (nopNetlink) AddrList(netlink.Link, int) ([]netlink.Addr, error) { return nil, errTouched }
func (nopNetlink) RouteAdd(*netlink.Route) error                      { return errTouched }
func (nopNetlink) RouteReplace(*netlink.Route) error                  { return errTouched }
func (nopNetlink) RouteList(netlink.Link, int) ([]netlink.Route, error) {
	return nil, errTouched
}
func (nopNetlink) SetSysctl(string, string) error { return errTouched }
func (nopNetlink) Sysctl(string) (string, error)  { return "", errTouched }
