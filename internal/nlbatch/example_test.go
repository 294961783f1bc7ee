package nlbatch_test

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/nlbatch"
)

// recorder stands in for a netlink handle: it records the writes.
type recorder struct{ got []string }

func (r *recorder) RouteAdd(rt *netlink.Route) error {
	r.got = append(r.got, "add "+rt.Dst.String())
	return nil
}
func (r *recorder) RouteReplace(rt *netlink.Route) error {
	r.got = append(r.got, "replace "+rt.Dst.String())
	return nil
}
func (r *recorder) RouteDel(rt *netlink.Route) error {
	r.got = append(r.got, "del "+rt.Dst.String())
	return nil
}
func (r *recorder) NeighSet(n *netlink.Neigh) error {
	r.got = append(r.got, "neigh "+n.IP.String())
	return nil
}
func (r *recorder) NeighDel(n *netlink.Neigh) error { return nil }

// Sequential performs a batch one call at a time (what a Conn does in one
// send on a real kernel): the answers come back one per write, in order.
func ExampleSequential() {
	_, dst, _ := net.ParseCIDR("10.244.1.0/26")
	ws := []nlbatch.Write{
		{Op: nlbatch.NeighSet, Neigh: &netlink.Neigh{IP: net.ParseIP("10.244.1.0")}},
		{Op: nlbatch.RouteAdd, Route: &netlink.Route{Dst: dst, Gw: net.ParseIP("10.244.1.0")}},
	}
	r := &recorder{}
	errs := nlbatch.Sequential(r, ws)
	fmt.Println(r.got, errs)
	// Output: [neigh 10.244.1.0 add 10.244.1.0/26] [<nil> <nil>]
}
