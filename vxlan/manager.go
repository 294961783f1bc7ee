package vxlan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/nlbatch"
)

// Netlink is the part of *netlink.Handle the Manager uses. Both
// *netlink.Handle and *netlinktest.Kernel satisfy it. The Manager calls it
// from Sync only, one call at a time.
type Netlink interface {
	LinkByName(name string) (netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkDel(link netlink.Link) error
	LinkSetUp(link netlink.Link) error
	LinkSetMTU(link netlink.Link, mtu int) error
	LinkSetHardwareAddr(link netlink.Link, hwaddr net.HardwareAddr) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteAdd(route *netlink.Route) error
	RouteReplace(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
	NeighList(linkIndex, family int) ([]netlink.Neigh, error)
	NeighSet(neigh *netlink.Neigh) error
	NeighDel(neigh *netlink.Neigh) error
}

var _ Netlink = (*netlink.Handle)(nil)

// batcher is optional: when the Netlink value has it, Sync sends its
// neighbour, FDB and route writes in batches, many to a system call, with
// the same results as one call at a time (node.OpenKernel's Netlink and
// *netlinktest.Kernel have it).
type batcher interface {
	WriteBatch(ws []nlbatch.Write) []error
}

// routeIterator is optional: when the Netlink value has it (as
// *netlink.Handle does), routes are listed without materialising them all.
type routeIterator interface {
	RouteListFilteredIter(family int, filter *netlink.Route, filterMask uint64, f func(netlink.Route) bool) error
}

// Result describes the last Sync: what it wrote and what is in place. It is a
// copy, safe to keep and read from any goroutine.
type Result struct {
	// Writes is the number of successful kernel writes.
	Writes int
	// Routes, Neighbours and FDB count the owned entries in place after the
	// Sync (observed before it, plus successful writes).
	Routes, Neighbours, FDB int
	// Failed lists the peers (by name; "" for local blocks and stale
	// entries) with at least one failed step.
	Failed []string
	// DeviceIndex is the VXLAN device's ifindex (0 if it could not be
	// ensured).
	DeviceIndex int
}

// Manager programs the VXLAN device and the routes, neighbours and FDB
// entries for a set of peers, for one address family.
//
// What a Manager owns: the device Config.Device (every attribute, every
// address and every permanent neighbour and FDB entry on it), and the routes
// in the main table with protocol Config.RouteProtocol that are blackhole
// routes, go through the device, or have a gateway. Routes with that
// protocol and no gateway on other devices (veth's pod routes) are never
// touched.
//
// A Manager is safe for concurrent use; Syncs are serialised.
type Manager struct {
	nl  Netlink
	cfg Config
	log *slog.Logger

	mu    sync.Mutex // guards peers, local
	peers []Peer
	local []netip.Prefix

	syncMu      sync.Mutex // serialises Sync; guards fields below
	offloadDone int        // ifindex the checksum workaround was applied to
	devIdx      int        // the device's ifindex during a Sync
	lastRoutes  int        // owned routes seen by the last Sync (capacity hint)
	last        Result
}

// New returns a Manager working through nl. Nothing is written until Sync.
func New(nl Netlink, cfg *Config) (*Manager, error) {
	if nl == nil {
		return nil, fmt.Errorf("%w: nil Netlink", ErrInvalidConfig)
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Manager{nl: nl, cfg: c, log: c.Logger}, nil
}

// MAC returns the VTEP MAC the Manager gives its device.
func (m *Manager) MAC() net.HardwareAddr { return slices.Clone(m.cfg.MAC) }

// Device returns the VXLAN device name.
func (m *Manager) Device() string { return m.cfg.Device }

// SetPeers replaces the desired set of peers (memory only). A bad peer
// returns an error wrapping ErrInvalidPeer and keeps the previous set.
func (m *Manager) SetPeers(peers []Peer) error {
	ps, err := validatePeers(m.cfg.TunnelAddr.Is6(), peers)
	if err != nil {
		return err
	}
	slices.SortFunc(ps, func(a, b Peer) int { return cmpString(a.Name, b.Name) })
	m.mu.Lock()
	m.peers = ps
	m.mu.Unlock()
	return nil
}

// SetLocalBlocks replaces the node's own affine blocks, which get blackhole
// routes (memory only).
func (m *Manager) SetLocalBlocks(blocks []netip.Prefix) error {
	seen := make(map[netip.Prefix]bool, len(blocks))
	out := make([]netip.Prefix, 0, len(blocks))
	for _, b := range blocks {
		if !b.IsValid() || b.Addr().Is6() != m.cfg.TunnelAddr.Is6() || b.Masked() != b {
			return fmt.Errorf("%w: local block %v", ErrInvalidPeer, b)
		}
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	m.mu.Lock()
	m.local = out
	m.mu.Unlock()
	return nil
}

// LastResult returns the Result of the last Sync.
func (m *Manager) LastResult() Result {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	r := m.last
	r.Failed = slices.Clone(r.Failed)
	return r
}

// Sync makes the kernel match the desired state: it ensures the device,
// lists the owned routes, neighbours and FDB entries, and adds, replaces
// and deletes only what differs. After a partial failure it returns the
// joined errors; LastResult says what is in place, and the next Sync
// finishes the job.
func (m *Manager) Sync(ctx context.Context) error {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	m.mu.Lock()
	peers, local := m.peers, m.local
	m.mu.Unlock()

	res := Result{}
	defer func() { m.last = res }()
	if err := ctx.Err(); err != nil {
		return err
	}
	dev, parent, writes, err := m.ensureDevice()
	res.Writes += writes
	if err != nil {
		return err
	}
	res.DeviceIndex = dev.Attrs().Index
	m.devIdx = res.DeviceIndex
	var errs []error
	if err := m.checksumWorkaround(dev); err != nil {
		errs = append(errs, err)
	}
	have, err := m.observe(dev.Attrs().Index)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, b := range local {
		for _, p := range peers {
			if slices.Contains(p.Blocks, b) {
				m.log.Warn("vxlan: local block also announced by a peer; no blackhole route", "block", b, "peer", p.Name)
			}
		}
	}
	want := desiredState(m.cfg.Mode, m.cfg.LocalAddr.Masked(), peers, local, dev.Attrs().Index, parent.Attrs().Index)
	steps := plan(want, have)
	res.Routes, res.Neighbours, res.FDB = len(have.Routes), countPermanent(have.Neighs), len(have.FDB)

	failed := map[string]bool{}
	haveNeigh := make(map[netip.Addr]bool, len(have.Neighs))
	for _, n := range have.Neighs {
		if n.Permanent {
			haveNeigh[n.IP] = true
		}
	}
	haveFDB := make(map[mac]bool, len(have.FDB))
	for _, f := range have.FDB {
		haveFDB[f.MAC] = true
	}
	for _, run := range phases(steps) {
		if len(failed) > 0 {
			var keep []step
			for _, s := range run {
				if s.Peer != "" && failed[s.Peer] && (s.Action == addRoute || s.Action == replaceRoute) {
					// Its neighbour or FDB entry is missing: a route now would
					// send traffic into the tunnel with nowhere to go.
					errs = append(errs, fmt.Errorf("vxlan: %s for peer %s skipped: its neighbour or FDB entry failed", s, s.Peer))
					continue
				}
				keep = append(keep, s)
			}
			run = keep
		}
		for len(run) > 0 {
			if err := ctx.Err(); err != nil {
				errs = append(errs, err)
				break
			}
			chunk := run[:min(len(run), writeChunk)]
			run = run[len(chunk):]
			for i, err := range m.write(chunk) {
				s := chunk[i]
				if err != nil {
					failed[s.Peer] = true
					errs = append(errs, err)
					continue
				}
				res.Writes++
				switch s.Action {
				case setNeigh:
					if !haveNeigh[s.Neigh.IP] {
						haveNeigh[s.Neigh.IP] = true
						res.Neighbours++
					}
				case setFDB:
					if !haveFDB[s.FDB.MAC] {
						haveFDB[s.FDB.MAC] = true
						res.FDB++
					}
				case addRoute:
					res.Routes++
				case delRoute:
					res.Routes--
				case delNeigh:
					res.Neighbours--
				case delFDB:
					res.FDB--
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	for p := range failed {
		res.Failed = append(res.Failed, p)
	}
	slices.Sort(res.Failed)
	if len(errs) > 0 {
		m.log.Warn("vxlan: sync incomplete", "errors", len(errs), "writes", res.Writes, "failed", res.Failed)
	} else if res.Writes > 0 {
		m.log.Debug("vxlan: synced", "writes", res.Writes, "routes", res.Routes)
	}
	return errors.Join(errs...)
}

func countPermanent(ns []neigh) int {
	n := 0
	for _, x := range ns {
		if x.Permanent {
			n++
		}
	}
	return n
}

func (m *Manager) family() int {
	if m.cfg.TunnelAddr.Is6() {
		return afInet6
	}
	return afInet
}

// observe lists what the kernel holds that the Manager owns.
func (m *Manager) observe(devIdx int) (state, error) {
	var s state
	filter, mask := &netlink.Route{Protocol: m.cfg.RouteProtocol, Table: rtTableMain}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE
	if it, ok := m.nl.(routeIterator); ok {
		// Streaming avoids holding every netlink.Route (large structs) at
		// once: a third less garbage per Sync at 5,000 peers.
		s.Routes = make([]route, 0, m.lastRoutes)
		err := it.RouteListFilteredIter(m.family(), filter, mask, func(r netlink.Route) bool {
			if o, ok := m.ownedRoute(&r, devIdx); ok {
				s.Routes = append(s.Routes, o)
			}
			return true
		})
		if err != nil {
			return s, fmt.Errorf("vxlan: list routes: %w", err)
		}
	} else {
		rs, err := m.nl.RouteListFiltered(m.family(), filter, mask)
		if err != nil {
			return s, fmt.Errorf("vxlan: list routes: %w", err)
		}
		s.Routes = make([]route, 0, len(rs))
		for i := range rs {
			if r, ok := m.ownedRoute(&rs[i], devIdx); ok {
				s.Routes = append(s.Routes, r)
			}
		}
	}
	m.lastRoutes = len(s.Routes)
	ns, err := m.nl.NeighList(devIdx, m.family())
	if err != nil {
		return s, fmt.Errorf("vxlan: list neighbours: %w", err)
	}
	s.Neighs = make([]neigh, 0, len(ns))
	for _, n := range ns {
		ip, ok := netip.AddrFromSlice(n.IP)
		if n.LinkIndex != devIdx || !ok || len(n.HardwareAddr) != 6 {
			continue
		}
		s.Neighs = append(s.Neighs, neigh{IP: ip.Unmap(), MAC: macOf(n.HardwareAddr), Permanent: n.State&nudPermanent != 0})
	}
	fs, err := m.nl.NeighList(devIdx, afBridge)
	if err != nil {
		return s, fmt.Errorf("vxlan: list fdb: %w", err)
	}
	s.FDB = make([]fdb, 0, len(fs))
	for _, f := range fs {
		dst, ok := netip.AddrFromSlice(f.IP)
		// The device's own multicast/unicast list shows up as permanent
		// self entries without a destination: not ours.
		if f.LinkIndex != devIdx || !ok || len(f.HardwareAddr) != 6 || f.State&nudPermanent == 0 {
			continue
		}
		s.FDB = append(s.FDB, fdb{MAC: macOf(f.HardwareAddr), Dst: dst.Unmap()})
	}
	return s, nil
}

// ownedRoute converts a listed route if the Manager owns it.
func (m *Manager) ownedRoute(r *netlink.Route, devIdx int) (route, bool) {
	if r.Protocol != m.cfg.RouteProtocol || r.Dst == nil || (r.Table != 0 && r.Table != rtTableMain) {
		return route{}, false
	}
	dst, ok := prefixOf(r.Dst)
	if !ok {
		return route{}, false
	}
	if r.Type == rtnBlackhole {
		return route{Dst: dst, Kind: kindBlackhole}, true
	}
	gw, _ := netip.AddrFromSlice(r.Gw)
	gw = gw.Unmap()
	if r.Type != rtnUnicast || len(r.MultiPath) > 0 || (!gw.IsValid() && r.LinkIndex != devIdx) {
		return route{}, false
	}
	out := route{Dst: dst, Gw: gw, LinkIndex: r.LinkIndex, Onlink: r.Flags&rtnhFOnlink != 0, Kind: kindDirect}
	if r.LinkIndex == devIdx {
		out.Kind = kindVXLAN
	}
	return out, true
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (m *Manager) nlRoute(r route) *netlink.Route {
	nr := &netlink.Route{
		Dst:      ipNet(r.Dst),
		Protocol: m.cfg.RouteProtocol,
		Table:    rtTableMain,
	}
	switch r.Kind {
	case kindBlackhole:
		nr.Type = rtnBlackhole
	default:
		nr.Type = rtnUnicast
		nr.LinkIndex = r.LinkIndex
		nr.Gw = net.IP(r.Gw.AsSlice())
		if r.Onlink {
			nr.Flags = rtnhFOnlink
		}
	}
	return nr
}

// writeChunk bounds the writes between two looks at the context.
const writeChunk = 1024

// write performs steps in order, batched when the Netlink value can (see
// Netlink), and returns one error per step.
func (m *Manager) write(steps []step) []error {
	ws := make([]nlbatch.Write, len(steps))
	for i, s := range steps {
		ws[i] = m.toWrite(s)
	}
	var errs []error
	if b, ok := m.nl.(batcher); ok {
		errs = b.WriteBatch(ws)
	} else {
		errs = nlbatch.Sequential(m.nl, ws)
	}
	for i, s := range steps {
		errs[i] = m.outcome(s, errs[i])
	}
	return errs
}

// toWrite is the kernel request for one step.
func (m *Manager) toWrite(s step) nlbatch.Write {
	switch s.Action {
	case setNeigh, delNeigh:
		w := nlbatch.Write{Op: nlbatch.NeighSet, Neigh: &netlink.Neigh{
			LinkIndex:    m.devIdx,
			Family:       m.family(),
			State:        nudPermanent,
			IP:           net.IP(s.Neigh.IP.AsSlice()),
			HardwareAddr: net.HardwareAddr(s.Neigh.MAC[:]),
		}}
		if s.Action == delNeigh {
			w.Op = nlbatch.NeighDel
		}
		return w
	case setFDB, delFDB:
		w := nlbatch.Write{Op: nlbatch.NeighSet, Neigh: &netlink.Neigh{
			LinkIndex:    m.devIdx,
			Family:       afBridge,
			State:        nudPermanent,
			Flags:        ntfSelf,
			IP:           net.IP(s.FDB.Dst.AsSlice()),
			HardwareAddr: net.HardwareAddr(s.FDB.MAC[:]),
		}}
		if s.Action == delFDB {
			w.Op = nlbatch.NeighDel
		}
		return w
	case addRoute:
		return nlbatch.Write{Op: nlbatch.RouteAdd, Route: m.nlRoute(s.Route)}
	case replaceRoute:
		return nlbatch.Write{Op: nlbatch.RouteReplace, Route: m.nlRoute(s.Route)}
	default: // delRoute
		return nlbatch.Write{Op: nlbatch.RouteDel, Route: m.nlRoute(s.Route)}
	}
}

// outcome turns the kernel's answer to a step into the Manager's error:
// deleting what is already gone is success, adding a route someone else
// holds is ErrRouteConflict.
func (m *Manager) outcome(s step, err error) error {
	switch {
	case err == nil:
		return nil
	case (s.Action == delNeigh || s.Action == delFDB || s.Action == delRoute) && isGone(err):
		return nil
	case s.Action == addRoute && isErrno(err, errExist):
		err = fmt.Errorf("%w: %w", ErrRouteConflict, err)
	}
	if s.Peer != "" {
		return fmt.Errorf("vxlan: %s (peer %s): %w", s, s.Peer, err)
	}
	return fmt.Errorf("vxlan: %s: %w", s, err)
}

func isGone(err error) bool {
	return isErrno(err, errNoEnt, errSrch, errNoDev)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
