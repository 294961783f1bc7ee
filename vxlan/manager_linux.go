//go:build linux

package vxlan

import "github.com/vishvananda/netlink"

var _ routeIterator = (*netlink.Handle)(nil)
