//go:build linux

package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/tabbynet/tabby/vxlan"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// directRoutes is VXLAN mode Never, which package vxlan does not have (it
// always makes its device): peers on the local underlay subnet get
// "<block> via <node ip> dev <uplink> proto 80", peers elsewhere cannot be
// reached, local blocks get blackhole routes. It owns the same routes as
// package vxlan (protocol 80 with a gateway, or blackhole) and removes a
// vxlan.calico left by an earlier run in another mode. Used by one
// goroutine.
type directRoutes struct {
	nl     Netlink
	uplink string
	local  netip.Prefix
}

func routeKey(dst netip.Prefix, gw netip.Addr, link int, typ int) string {
	return fmt.Sprintf("%v|%v|%d|%d", dst, gw, link, typ)
}

func (d *directRoutes) sync(peers []vxlan.Peer, local []netip.Prefix) (int, error) {
	writes := 0
	var errs []error
	if l, err := d.nl.LinkByName(vxlan.DefaultDevice); err == nil {
		if err := d.nl.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("node: delete %s (mode Never): %w", vxlan.DefaultDevice, err))
		} else {
			writes++
		}
	}
	up, err := d.nl.LinkByName(d.uplink)
	if err != nil {
		return writes, fmt.Errorf("node: uplink %s: %w", d.uplink, err)
	}
	idx := up.Attrs().Index
	want := map[string]*netlink.Route{}
	add := func(dst netip.Prefix, gw netip.Addr) {
		r := &netlink.Route{Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)}, Protocol: RouteProtocol}
		if gw.IsValid() {
			r.Gw, r.LinkIndex = gw.AsSlice(), idx
			want[routeKey(dst, gw, idx, unix.RTN_UNICAST)] = r
		} else {
			r.Type = unix.RTN_BLACKHOLE
			want[routeKey(dst, netip.Addr{}, 0, unix.RTN_BLACKHOLE)] = r
		}
	}
	for _, b := range local {
		add(b, netip.Addr{})
	}
	for _, p := range peers {
		if !d.local.Contains(p.NodeIP) {
			continue
		}
		for _, b := range p.Blocks {
			add(b, p.NodeIP)
		}
		for _, x := range p.Addrs {
			add(netip.PrefixFrom(x, 32), p.NodeIP)
		}
	}
	have, err := d.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return writes, errors.Join(append(errs, fmt.Errorf("node: list routes: %w", err))...)
	}
	seen := map[string]bool{}
	var stale []netlink.Route
	for _, r := range have {
		if r.Dst == nil || (r.Gw == nil && r.Type != unix.RTN_BLACKHOLE) {
			continue // a pod's /32 on its veth: veth's
		}
		dst, _ := netip.AddrFromSlice(r.Dst.IP.To4())
		ones, _ := r.Dst.Mask.Size()
		gw, _ := netip.AddrFromSlice(r.Gw.To4())
		link := r.LinkIndex
		if r.Type == unix.RTN_BLACKHOLE {
			link = 0
		}
		k := routeKey(netip.PrefixFrom(dst, ones), gw, link, r.Type)
		if _, ok := want[k]; ok && !seen[k] {
			seen[k] = true
			continue
		}
		stale = append(stale, r)
	}
	for k, r := range want { // create or replace before delete
		if seen[k] {
			continue
		}
		if err := d.nl.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("node: route %v: %w", r.Dst, err))
		} else {
			writes++
		}
	}
	for _, r := range stale {
		if _, ok := want[routeKeyOf(r)]; ok {
			continue // replaced above
		}
		if err := d.nl.RouteDel(&r); err != nil {
			errs = append(errs, fmt.Errorf("node: delete route %v: %w", r.Dst, err))
		} else {
			writes++
		}
	}
	return writes, errors.Join(errs...)
}

func routeKeyOf(r netlink.Route) string {
	dst, _ := netip.AddrFromSlice(r.Dst.IP.To4())
	ones, _ := r.Dst.Mask.Size()
	gw, _ := netip.AddrFromSlice(r.Gw.To4())
	link := r.LinkIndex
	if r.Type == unix.RTN_BLACKHOLE {
		link = 0
	}
	return routeKey(netip.PrefixFrom(dst, ones), gw, link, r.Type)
}
