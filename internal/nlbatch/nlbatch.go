package nlbatch

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// Op is the kind of a Write. The zero value is invalid.
type Op int

const (
	// RouteAdd creates a route; it fails with EEXIST if one is there.
	RouteAdd Op = iota + 1
	// RouteReplace creates or replaces a route.
	RouteReplace
	// RouteDel deletes a route.
	RouteDel
	// NeighSet creates or replaces a neighbour (or FDB, Family AF_BRIDGE)
	// entry.
	NeighSet
	// NeighDel deletes a neighbour (or FDB) entry.
	NeighDel
)

func (o Op) String() string {
	switch o {
	case RouteAdd:
		return "route add"
	case RouteReplace:
		return "route replace"
	case RouteDel:
		return "route del"
	case NeighSet:
		return "neigh set"
	case NeighDel:
		return "neigh del"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Write is one request: Route for the route operations, Neigh for the
// neighbour ones.
type Write struct {
	Op    Op
	Route *netlink.Route
	Neigh *netlink.Neigh
}

// ErrUnsupported reports a Write this package does not encode (a route or
// neighbour field it would otherwise drop).
var ErrUnsupported = errors.New("nlbatch: unsupported write")

// ErrNoAck reports a write the kernel did not acknowledge (the socket
// failed mid-batch); whether it took effect is unknown.
var ErrNoAck = errors.New("nlbatch: no acknowledgement")

// Netlink is what Sequential needs: the write methods of
// *netlink.Handle.
type Netlink interface {
	RouteAdd(*netlink.Route) error
	RouteReplace(*netlink.Route) error
	RouteDel(*netlink.Route) error
	NeighSet(*netlink.Neigh) error
	NeighDel(*netlink.Neigh) error
}

// Sequential performs ws through nl one call at a time and returns one
// error per write, in order: what a batch does, for values without a
// socket of their own (fakes).
func Sequential(nl Netlink, ws []Write) []error {
	errs := make([]error, len(ws))
	for i, w := range ws {
		errs[i] = do(nl, w)
	}
	return errs
}

func do(nl Netlink, w Write) error {
	switch w.Op {
	case RouteAdd:
		return nl.RouteAdd(w.Route)
	case RouteReplace:
		return nl.RouteReplace(w.Route)
	case RouteDel:
		return nl.RouteDel(w.Route)
	case NeighSet:
		return nl.NeighSet(w.Neigh)
	case NeighDel:
		return nl.NeighDel(w.Neigh)
	}
	return fmt.Errorf("%w: %v", ErrUnsupported, w.Op)
}

// check refuses what encode would not carry.
func check(w Write) error {
	switch w.Op {
	case RouteAdd, RouteReplace, RouteDel:
		r := w.Route
		switch {
		case r == nil:
			return fmt.Errorf("%w: %v without a route", ErrUnsupported, w.Op)
		case r.Dst == nil || r.Dst.IP == nil:
			return fmt.Errorf("%w: route without a destination", ErrUnsupported)
		case r.Src != nil || r.MultiPath != nil || r.Encap != nil || r.Via != nil || r.NewDst != nil || r.MPLSDst != nil ||
			r.Priority != 0 || r.Tos != 0 || r.Realm != 0 || r.MTU != 0 || r.AdvMSS != 0 || r.Hoplimit != 0 ||
			r.Window != 0 || r.Rtt != 0 || r.RttVar != 0 || r.Ssthresh != 0 || r.Cwnd != 0 || r.Reordering != 0 ||
			r.InitCwnd != 0 || r.Features != 0 || r.RtoMin != 0 || r.InitRwnd != 0 || r.QuickACK != 0 ||
			r.Congctl != "" || r.FastOpenNoCookie != 0 || r.ILinkIndex != 0 || r.MTULock || r.RtoMinLock ||
			(r.Family != 0 && r.Family != family(r.Dst.IP)):
			return fmt.Errorf("%w: route %v has fields this encoder does not carry", ErrUnsupported, r.Dst)
		case r.Gw != nil && family(r.Gw) != family(r.Dst.IP):
			return fmt.Errorf("%w: route %v: gateway of another family", ErrUnsupported, r.Dst)
		}
	case NeighSet, NeighDel:
		n := w.Neigh
		switch {
		case n == nil:
			return fmt.Errorf("%w: %v without a neighbour", ErrUnsupported, w.Op)
		case n.IP == nil:
			return fmt.Errorf("%w: neighbour without an address", ErrUnsupported)
		case n.LLIPAddr != nil || n.FlagsExt != 0 || n.Vlan != 0 || n.VNI != 0 || n.MasterIndex != 0:
			return fmt.Errorf("%w: neighbour %v has fields this encoder does not carry", ErrUnsupported, n.IP)
		}
	default:
		return fmt.Errorf("%w: %v", ErrUnsupported, w.Op)
	}
	return nil
}

const (
	familyV4 = 2
	familyV6 = 10
)

func family(ip net.IP) int {
	if ip.To4() != nil {
		return familyV4
	}
	return familyV6
}
