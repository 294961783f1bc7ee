package vxlan

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// This file is the pure part of the Manager: desired and observed state as
// plain values and the diff that turns them into an ordered list of steps.
// Nothing here talks to the kernel.

type routeKind int

const (
	kindVXLAN     routeKind = iota + 1 // <dst> via <tunnel ip> dev <vxlan> onlink
	kindDirect                         // <dst> via <node ip> dev <parent>
	kindBlackhole                      // blackhole <dst>
)

func (k routeKind) String() string {
	switch k {
	case kindVXLAN:
		return "vxlan"
	case kindDirect:
		return "direct"
	case kindBlackhole:
		return "blackhole"
	}
	return "invalid"
}

type mac [6]byte

func macOf(h net.HardwareAddr) mac { var m mac; copy(m[:], h); return m }

func (m mac) String() string { return net.HardwareAddr(m[:]).String() }

// route is one route in the main table, desired or observed.
type route struct {
	Dst       netip.Prefix
	Kind      routeKind
	Gw        netip.Addr // invalid for blackhole
	LinkIndex int        // 0 for blackhole
	Onlink    bool
	Peer      string // desired only: the peer it serves ("" = local block)
}

func (r route) same(o route) bool {
	return r.Dst == o.Dst && r.Kind == o.Kind && r.Gw == o.Gw && r.LinkIndex == o.LinkIndex && r.Onlink == o.Onlink
}

func (r route) String() string {
	switch r.Kind {
	case kindBlackhole:
		return "blackhole " + r.Dst.String()
	case kindVXLAN:
		return fmt.Sprintf("%s via %s dev #%d onlink", r.Dst, r.Gw, r.LinkIndex)
	}
	return fmt.Sprintf("%s via %s dev #%d", r.Dst, r.Gw, r.LinkIndex)
}

// neigh is a neighbour entry on the VXLAN device: tunnel IP -> VTEP MAC.
type neigh struct {
	IP        netip.Addr
	MAC       mac
	Permanent bool
	Peer      string
}

// fdb is an FDB entry on the VXLAN device: VTEP MAC -> underlay address.
type fdb struct {
	MAC  mac
	Dst  netip.Addr
	Peer string
}

// state is a full set of routes, neighbours and FDB entries.
type state struct {
	Routes []route
	Neighs []neigh
	FDB    []fdb
}

// desiredState computes what the kernel should hold. vxlanIdx and parentIdx
// are the devices' ifindexes; subnet is the local underlay subnet (only
// used in CrossSubnet mode).
func desiredState(mode Mode, subnet netip.Prefix, peers []Peer, local []netip.Prefix, vxlanIdx, parentIdx int) state {
	var s state
	n := len(local)
	for _, p := range peers {
		n += len(p.Blocks) + len(p.Addrs)
	}
	s.Routes = make([]route, 0, n)
	s.Neighs = make([]neigh, 0, len(peers))
	s.FDB = make([]fdb, 0, len(peers))
	for _, p := range peers {
		direct := mode == ModeCrossSubnet && subnet.Contains(p.NodeIP)
		r := route{Kind: kindVXLAN, Gw: p.TunnelIP, LinkIndex: vxlanIdx, Onlink: true, Peer: p.Name}
		if direct {
			r = route{Kind: kindDirect, Gw: p.NodeIP, LinkIndex: parentIdx, Peer: p.Name}
		} else {
			s.Neighs = append(s.Neighs, neigh{IP: p.TunnelIP, MAC: macOf(p.TunnelMAC), Permanent: true, Peer: p.Name})
			s.FDB = append(s.FDB, fdb{MAC: macOf(p.TunnelMAC), Dst: p.NodeIP, Peer: p.Name})
		}
		for _, b := range p.Blocks {
			r.Dst = b
			s.Routes = append(s.Routes, r)
		}
		for _, a := range p.Addrs {
			r.Dst = netip.PrefixFrom(a, a.BitLen())
			s.Routes = append(s.Routes, r)
		}
	}
	for _, b := range local {
		if slices.ContainsFunc(s.Routes, func(r route) bool { return r.Dst == b }) {
			continue // a peer's route for the same prefix wins (SetLocalBlocks logs it)
		}
		s.Routes = append(s.Routes, route{Dst: b, Kind: kindBlackhole})
	}
	return s
}

type action int

const (
	setNeigh     action = iota + 1 // NeighSet (create or replace)
	setFDB                         // NeighSet AF_BRIDGE
	addRoute                       // RouteAdd
	replaceRoute                   // RouteReplace
	delRoute                       // RouteDel
	delNeigh                       // NeighDel
	delFDB                         // NeighDel AF_BRIDGE
)

func (a action) String() string {
	return [...]string{"invalid", "set neigh", "set fdb", "add route", "replace route", "del route", "del neigh", "del fdb"}[a]
}

// step is one kernel write.
type step struct {
	Action action
	Peer   string
	Route  route
	Neigh  neigh
	FDB    fdb
}

func (s step) String() string {
	switch s.Action {
	case setNeigh, delNeigh:
		return fmt.Sprintf("%s %s lladdr %s", s.Action, s.Neigh.IP, s.Neigh.MAC)
	case setFDB, delFDB:
		return fmt.Sprintf("%s %s dst %s", s.Action, s.FDB.MAC, s.FDB.Dst)
	}
	return fmt.Sprintf("%s %s", s.Action, s.Route)
}

// plan diffs want against have. Order: FDB entries, neighbours, then routes
// that need them (so the kernel never resolves a gateway by ARP), then
// deletions: stale routes first, then stale neighbours and FDB entries.
// Within each group steps are sorted, so plans are deterministic.
func plan(want, have state) []step {
	// Neighbours: keyed by IP. Only permanent ones are ours; a desired IP
	// held by a non-permanent (learned) entry is overwritten.
	haveN := make(map[netip.Addr]neigh, len(have.Neighs))
	for _, n := range have.Neighs {
		if prev, ok := haveN[n.IP]; ok && prev.Permanent {
			continue
		}
		haveN[n.IP] = n
	}
	// Steps are large (every kind's fields): they are allocated as found,
	// so that a resync with nothing to do, the common case, allocates none.
	wantN := make(map[netip.Addr]bool, len(want.Neighs))
	var neighSets []step
	for _, n := range want.Neighs {
		wantN[n.IP] = true
		if h, ok := haveN[n.IP]; ok && h.Permanent && h.MAC == n.MAC {
			continue
		}
		neighSets = append(neighSets, step{Action: setNeigh, Peer: n.Peer, Neigh: n})
	}
	sortSteps(neighSets)

	// FDB: keyed by (MAC, dst); a MAC may appear with several destinations.
	haveF := make(map[mac][]netip.Addr, len(have.FDB))
	for _, f := range have.FDB {
		haveF[f.MAC] = append(haveF[f.MAC], f.Dst)
	}
	wantF := make(map[mac]netip.Addr, len(want.FDB))
	var fdbSets, fdbDels []step
	for _, f := range want.FDB {
		wantF[f.MAC] = f.Dst
		dsts := haveF[f.MAC]
		if slices.Contains(dsts, f.Dst) {
			for _, d := range dsts {
				if d != f.Dst {
					fdbDels = append(fdbDels, step{Action: delFDB, Peer: f.Peer, FDB: fdb{MAC: f.MAC, Dst: d}})
				}
			}
			continue
		}
		// NeighSet replaces the first destination of an existing MAC; the
		// others are deleted afterwards.
		fdbSets = append(fdbSets, step{Action: setFDB, Peer: f.Peer, FDB: f})
		for i, d := range dsts {
			if i > 0 {
				fdbDels = append(fdbDels, step{Action: delFDB, Peer: f.Peer, FDB: fdb{MAC: f.MAC, Dst: d}})
			}
		}
	}
	sortSteps(fdbSets)

	// Routes: keyed by destination.
	haveR := make(map[netip.Prefix]route, len(have.Routes))
	for _, r := range have.Routes {
		haveR[r.Dst] = r
	}
	wantR := make(map[netip.Prefix]bool, len(want.Routes))
	var routeSets []step
	for _, r := range want.Routes {
		wantR[r.Dst] = true
		h, ok := haveR[r.Dst]
		switch {
		case !ok:
			routeSets = append(routeSets, step{Action: addRoute, Peer: r.Peer, Route: r})
		case !h.same(r):
			routeSets = append(routeSets, step{Action: replaceRoute, Peer: r.Peer, Route: r})
		}
	}
	sortSteps(routeSets)

	// Deletions.
	var dels []step
	for _, r := range have.Routes {
		if !wantR[r.Dst] {
			dels = append(dels, step{Action: delRoute, Route: r})
		}
	}
	for _, n := range have.Neighs {
		if n.Permanent && !wantN[n.IP] {
			dels = append(dels, step{Action: delNeigh, Neigh: n})
		}
	}
	for _, f := range have.FDB {
		if _, ok := wantF[f.MAC]; !ok {
			dels = append(dels, step{Action: delFDB, FDB: f})
		}
	}
	dels = append(dels, fdbDels...)
	sortSteps(dels)
	// FDB entries before neighbours: when a peer's MAC changes, the new
	// MAC is reachable before the neighbour entry points at it.
	n := len(fdbSets) + len(neighSets) + len(routeSets) + len(dels)
	if n == 0 {
		return nil
	}
	out := make([]step, 0, n)
	out = append(out, fdbSets...)
	out = append(out, neighSets...)
	out = append(out, routeSets...)
	return append(out, dels...)
}

// phases splits a plan into the runs that are written together: FDB and
// neighbour entries, then the routes that need them, then deletions. A
// route waits for the end of the phase before it, so that a peer whose
// neighbour or FDB entry failed gets no route.
func phases(steps []step) [][]step {
	phase := func(a action) int {
		switch a {
		case setFDB, setNeigh:
			return 0
		case addRoute, replaceRoute:
			return 1
		}
		return 2
	}
	var out [][]step
	for i := 0; i < len(steps); {
		j := i + 1
		for j < len(steps) && phase(steps[j].Action) == phase(steps[i].Action) {
			j++
		}
		out = append(out, steps[i:j])
		i = j
	}
	return out
}

func sortSteps(s []step) {
	slices.SortFunc(s, func(a, b step) int {
		if c := cmp.Compare(a.Action, b.Action); c != 0 {
			return c
		}
		switch a.Action {
		case setNeigh, delNeigh:
			return a.Neigh.IP.Compare(b.Neigh.IP)
		case setFDB, delFDB:
			if c := slices.Compare(a.FDB.MAC[:], b.FDB.MAC[:]); c != 0 {
				return c
			}
			return a.FDB.Dst.Compare(b.FDB.Dst)
		}
		if c := a.Route.Dst.Addr().Compare(b.Route.Dst.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Route.Dst.Bits(), b.Route.Dst.Bits())
	})
}
