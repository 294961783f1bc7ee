package veth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Setup plumbs the pod: it creates the veth pair with the host end (named
// HostIfName(key)) in the host namespace and the pod end (pod.IfName)
// directly in the pod's namespace, then configures
//
//	host: MAC, MTU, sysctls, up, "<podIP>/32 dev caliX scope link proto 80"
//	pod:  MTU, up, <podIP>/32, "169.254.1.1 dev eth0 scope link",
//	      "default via 169.254.1.1 dev eth0"
//
// and for IPv6 addresses: host fe80::ecee:eeff:feee:eeee/64 (nodad),
// "<podIP>/128 dev caliX proto 80"; pod <podIP>/128 (nodad),
// "default via fe80::ecee:eeff:feee:eeee dev eth0".
//
// Setup is idempotent: when everything is already as it would make it,
// it writes nothing and returns the same Result. Otherwise a stale host
// interface of that name is deleted (with its peer) and the pair is made
// again. An interface called pod.IfName in the pod that is not the peer
// of the workload's host interface is an ErrConflict and changes nothing.
//
// If any step fails, Setup deletes the host interface it created, which
// removes the peer, the routes through it and its sysctls: nothing is
// left behind. Bad input gives an *InputError and changes nothing.
func (p *Plumber) Setup(ctx context.Context, pod Pod) (*Result, error) {
	s, err := p.validate(pod)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("veth: setup %s: %w", s.host, err)
	}
	ns, err := p.openNS(s.netns)
	if err != nil {
		return nil, err
	}
	defer ns.Close()

	host, err := linkByName(p.host, s.host)
	if err != nil {
		return nil, fmt.Errorf("veth: setup: host interface %s: %w", s.host, err)
	}
	if host != nil {
		res, derr := p.diff(s, ns, host)
		if derr == nil {
			p.log.DebugContext(ctx, "veth: already set up", "key", s.key, "host", s.host)
			return res, nil
		}
		if !errors.Is(derr, ErrMismatch) {
			return nil, fmt.Errorf("veth: setup %s: %w", s.host, derr)
		}
		p.log.DebugContext(ctx, "veth: replacing stale interface", "key", s.key, "host", s.host, "diff", derr)
	}
	podl, err := linkByName(ns, s.ifname)
	if err != nil {
		return nil, fmt.Errorf("veth: setup: pod interface %s: %w", s.ifname, err)
	}
	if podl != nil && (host == nil || podl.Type() != "veth" || podl.Attrs().ParentIndex != host.Attrs().Index) {
		return nil, fmt.Errorf("%w: %s in %s is a %s that is not the peer of %s",
			ErrConflict, s.ifname, s.netns, podl.Type(), s.host)
	}
	if host != nil {
		if err := p.host.LinkDel(host); err != nil && !notFound(err) {
			return nil, fmt.Errorf("veth: setup: delete stale %s: %w", s.host, err)
		}
	}

	res, hostIdx, err := p.create(ctx, s, ns)
	if err != nil {
		if hostIdx < 0 {
			return nil, err // nothing was created
		}
		return nil, p.undo(s, hostIdx, err)
	}
	p.log.DebugContext(ctx, "veth: set up", "key", s.key, "host", s.host, "index", res.HostIndex, "netns", s.netns)
	return res, nil
}

// create makes the pair and configures both ends. hostIdx is -1 when
// nothing was created, else the host interface index (0 if unknown).
func (p *Plumber) create(ctx context.Context, s *spec, ns PodNetNS) (_ *Result, hostIdx int, _ error) {
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: s.host, MTU: s.mtu, HardwareAddr: p.mac},
		PeerName:      s.ifname,
		PeerNamespace: netlink.NsFd(ns.Fd()),
	}
	if err := p.host.LinkAdd(v); err != nil {
		return nil, -1, fmt.Errorf("veth: add %s (peer %s in %s): %w", s.host, s.ifname, s.netns, err)
	}
	// *netlink.Handle's LinkAdd fills in the index (it looks the link up
	// itself); look it up only when the Netlink did not.
	var host netlink.Link = v
	if v.Index == 0 {
		var err error
		if host, err = p.host.LinkByName(s.host); err != nil {
			return nil, 0, fmt.Errorf("veth: get %s: %w", s.host, err)
		}
	}
	hostIdx = host.Attrs().Index
	step := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("veth: setup %s: %s: %w", s.host, what, err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("veth: setup %s: after %s: %w", s.host, what, err)
		}
		return nil
	}
	podl, err := ns.LinkByName(s.ifname)
	if err := step("get pod interface "+s.ifname, err); err != nil {
		return nil, hostIdx, err
	}
	for _, kv := range p.sysctls(s) {
		err := p.sysctl.SetSysctl(kv.key, kv.value)
		if kv.optional && errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		if err := step("sysctl "+kv.key+"="+kv.value, err); err != nil {
			return nil, hostIdx, err
		}
	}
	// The host end's IPv6 gateway address goes on before the link is up,
	// without DAD: address autoconfiguration on up would otherwise make the
	// same address tentative for the duration of DAD.
	for _, f := range p.families(s) {
		if f.hostGateway {
			err := p.host.AddrAdd(host, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(f.gateway, 64)), Flags: unix.IFA_F_NODAD})
			if err := step("host address "+f.gateway.String(), err); err != nil {
				return nil, hostIdx, err
			}
		}
	}
	if err := step("host interface up", p.host.LinkSetUp(host)); err != nil {
		return nil, hostIdx, err
	}
	if err := step("pod interface up", ns.LinkSetUp(podl)); err != nil {
		return nil, hostIdx, err
	}
	res := &Result{
		HostIfName: s.host, HostIndex: hostIdx, HostMAC: p.mac,
		PodIfName: s.ifname, PodIndex: podl.Attrs().Index, PodMAC: podl.Attrs().HardwareAddr,
		Sandbox: s.netns, MTU: s.mtu,
	}
	for _, a := range s.addrs {
		f := p.familyOf(a.Addr())
		err := ns.AddrAdd(podl, &netlink.Addr{IPNet: ipNet(a), Flags: f.addrFlags})
		if err := step("pod address "+a.String(), err); err != nil {
			return nil, hostIdx, err
		}
		res.IPs = append(res.IPs, IPConfig{Address: a, Gateway: f.gateway})
	}
	for _, f := range p.families(s) {
		gw := netip.PrefixFrom(f.gateway, f.gateway.BitLen())
		if f.gatewayRoute {
			err := ns.RouteAdd(&netlink.Route{LinkIndex: podl.Attrs().Index, Dst: ipNet(gw),
				Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_BOOT})
			if err := step("pod route "+gw.String(), err); err != nil {
				return nil, hostIdx, err
			}
		}
		err := ns.RouteAdd(&netlink.Route{LinkIndex: podl.Attrs().Index, Dst: ipNet(netip.PrefixFrom(f.any, 0)),
			Gw: net.IP(f.gateway.AsSlice()), Protocol: unix.RTPROT_BOOT})
		if err := step("pod default route via "+f.gateway.String(), err); err != nil {
			return nil, hostIdx, err
		}
	}
	for _, a := range s.addrs {
		err := p.host.RouteReplace(p.hostRoute(hostIdx, a))
		if err := step("host route "+a.String(), err); err != nil {
			return nil, hostIdx, err
		}
	}
	return res, hostIdx, nil
}

func (p *Plumber) hostRoute(idx int, a netip.Prefix) *netlink.Route {
	return &netlink.Route{LinkIndex: idx, Dst: ipNet(a), Scope: p.familyOf(a.Addr()).hostScope,
		Protocol: netlink.RouteProtocol(p.proto)}
}

// undo deletes the host interface Setup created (and with it the peer,
// routes and sysctls) and joins any failure to cause.
func (p *Plumber) undo(s *spec, idx int, cause error) error {
	var l netlink.Link
	if idx > 0 {
		l = &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: s.host, Index: idx}}
	} else {
		var err error
		if l, err = linkByName(p.host, s.host); err != nil {
			return errors.Join(cause, fmt.Errorf("veth: undo: find %s: %w", s.host, err))
		}
		if l == nil {
			return cause
		}
	}
	if err := p.host.LinkDel(l); err != nil && !notFound(err) {
		return errors.Join(cause, fmt.Errorf("veth: undo: delete %s: %w", s.host, err))
	}
	return cause
}

// Check reports whether the pod is plumbed exactly as Setup would do it.
// It returns nil, an error wrapping ErrMismatch that names the first
// difference ("veth: state differs from the expected: host cali...: mtu
// 1500, want 1450"), an *InputError for bad input (including a missing
// namespace) or the kernel's error. It changes nothing.
func (p *Plumber) Check(ctx context.Context, pod Pod) error {
	s, err := p.validate(pod)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ns, err := p.openNS(s.netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	host, err := linkByName(p.host, s.host)
	if err != nil {
		return fmt.Errorf("veth: check: host interface %s: %w", s.host, err)
	}
	if host == nil {
		return fmt.Errorf("%w: host interface %s missing", ErrMismatch, s.host)
	}
	_, err = p.diff(s, ns, host)
	return err
}

// diff compares the kernel with s and returns the Result if they agree.
func (p *Plumber) diff(s *spec, ns PodNetNS, host netlink.Link) (*Result, error) {
	mismatch := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrMismatch}, args...)...)
	}
	ha := host.Attrs()
	switch {
	case host.Type() != "veth":
		return nil, mismatch("host %s is a %s, not a veth", s.host, host.Type())
	case ha.MTU != s.mtu:
		return nil, mismatch("host %s: mtu %d, want %d", s.host, ha.MTU, s.mtu)
	case !bytes.Equal(ha.HardwareAddr, p.mac):
		return nil, mismatch("host %s: mac %s, want %s", s.host, ha.HardwareAddr, p.mac)
	case ha.Flags&net.FlagUp == 0:
		return nil, mismatch("host %s is down", s.host)
	}
	podl, err := linkByName(ns, s.ifname)
	if err != nil {
		return nil, fmt.Errorf("pod interface %s: %w", s.ifname, err)
	}
	if podl == nil {
		return nil, mismatch("pod interface %s missing in %s", s.ifname, s.netns)
	}
	pa := podl.Attrs()
	switch {
	case podl.Type() != "veth":
		return nil, mismatch("pod %s is a %s, not a veth", s.ifname, podl.Type())
	case pa.ParentIndex != ha.Index:
		return nil, mismatch("pod %s: peer index %d, want %d (%s)", s.ifname, pa.ParentIndex, ha.Index, s.host)
	case ha.ParentIndex != pa.Index:
		return nil, mismatch("host %s: peer index %d, want %d (pod %s)", s.host, ha.ParentIndex, pa.Index, s.ifname)
	case pa.MTU != s.mtu:
		return nil, mismatch("pod %s: mtu %d, want %d", s.ifname, pa.MTU, s.mtu)
	case pa.Flags&net.FlagUp == 0:
		return nil, mismatch("pod %s is down", s.ifname)
	}
	res := &Result{
		HostIfName: s.host, HostIndex: ha.Index, HostMAC: ha.HardwareAddr,
		PodIfName: s.ifname, PodIndex: pa.Index, PodMAC: pa.HardwareAddr,
		Sandbox: s.netns, MTU: s.mtu,
	}
	for _, a := range s.addrs {
		res.IPs = append(res.IPs, IPConfig{Address: a, Gateway: p.familyOf(a.Addr()).gateway})
	}
	for _, f := range p.families(s) {
		if err := p.diffFamily(f, s, ns, host, podl); err != nil {
			return nil, err
		}
	}
	for _, kv := range p.sysctls(s) {
		v, err := p.sysctl.Sysctl(kv.key)
		if kv.optional && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("host sysctl: %w", err)
		}
		if v != kv.value {
			return nil, mismatch("host sysctl %s = %s, want %s", kv.key, v, kv.value)
		}
	}
	return res, nil
}

// diffFamily compares the addresses and routes of one family.
func (p *Plumber) diffFamily(f family, s *spec, ns PodNetNS, host, podl netlink.Link) error {
	mismatch := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrMismatch}, args...)...)
	}
	addrs, err := list(func() ([]netlink.Addr, error) { return ns.AddrList(podl, f.nl) })
	if err != nil {
		return fmt.Errorf("pod %s %s addresses: %w", s.ifname, f.name, err)
	}
	have := map[netip.Prefix]bool{}
	for _, a := range addrs {
		if pr, ok := prefixOf(a.IPNet); ok {
			have[pr] = true
		}
	}
	want := map[netip.Prefix]bool{}
	for _, a := range s.addrs {
		if p.familyOf(a.Addr()).nl != f.nl {
			continue
		}
		if !have[a] {
			return mismatch("pod %s: address %s missing", s.ifname, a)
		}
		want[a] = true
	}
	for pr := range have {
		if !want[pr] && !pr.Addr().IsLinkLocalUnicast() {
			return mismatch("pod %s: unexpected address %s", s.ifname, pr)
		}
	}
	routes, err := list(func() ([]netlink.Route, error) { return ns.RouteList(podl, f.nl) })
	if err != nil {
		return fmt.Errorf("pod %s %s routes: %w", s.ifname, f.name, err)
	}
	if f.gatewayRoute && !hasRoute(routes, netip.PrefixFrom(f.gateway, f.gateway.BitLen()), netip.Addr{}, netlink.SCOPE_LINK, -1) {
		return mismatch("pod %s: route %s dev %s scope link missing", s.ifname, f.gateway, s.ifname)
	}
	if !hasRoute(routes, netip.PrefixFrom(f.any, 0), f.gateway, netlink.SCOPE_UNIVERSE, -1) {
		return mismatch("pod %s: route default via %s dev %s missing", s.ifname, f.gateway, s.ifname)
	}
	if f.hostGateway {
		haddrs, err := list(func() ([]netlink.Addr, error) { return p.host.AddrList(host, f.nl) })
		if err != nil {
			return fmt.Errorf("host %s %s addresses: %w", s.host, f.name, err)
		}
		found := false
		for _, a := range haddrs {
			if pr, ok := prefixOf(a.IPNet); ok && pr.Addr() == f.gateway {
				found = true
			}
		}
		if !found {
			return mismatch("host %s: gateway address %s missing", s.host, f.gateway)
		}
	}
	hroutes, err := list(func() ([]netlink.Route, error) { return p.host.RouteList(host, f.nl) })
	if err != nil {
		return fmt.Errorf("host %s %s routes: %w", s.host, f.name, err)
	}
	for _, a := range s.addrs {
		if p.familyOf(a.Addr()).nl != f.nl {
			continue
		}
		if !hasRoute(hroutes, a, netip.Addr{}, f.hostScope, p.proto) {
			return mismatch("host: route %s dev %s scope %s proto %d missing", a, s.host, f.hostScope, p.proto)
		}
	}
	return nil
}

func hasRoute(rs []netlink.Route, dst netip.Prefix, gw netip.Addr, scope netlink.Scope, proto int) bool {
	for _, r := range rs {
		d := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if dst.Addr().Is6() {
			d = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		if r.Dst != nil {
			var ok bool
			if d, ok = prefixOf(r.Dst); !ok {
				continue
			}
		}
		g, _ := netip.AddrFromSlice(r.Gw)
		if d != dst || g.Unmap() != gw || r.Scope != scope || (proto >= 0 && int(r.Protocol) != proto) {
			continue
		}
		if r.Table != 0 && r.Table != unix.RT_TABLE_MAIN {
			continue
		}
		return true
	}
	return false
}

// Teardown removes the workload's veth pair by deleting its host
// interface; the kernel removes the peer, the routes through it and its
// sysctls. It needs neither the pod namespace nor anything but the key,
// and succeeds when there is nothing to remove (namespace already gone,
// interface missing, key never set up). An empty key is an *InputError.
//
// The key names the interface, not a sandbox: when a pod is recreated
// under the same "<namespace>.<pod>" key, a late Teardown for the old
// sandbox removes the new one's interface. Callers that can see such a
// late DEL guard it (Calico compares container IDs in its datastore).
//
// On Linux the kernel's unregistering of the pair dominates: about one
// RCU grace period (≈20 ms on a loaded VM), the same as `ip link del`.
func (p *Plumber) Teardown(ctx context.Context, key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	name := p.HostIfName(key)
	l, err := linkByName(p.host, name)
	if err != nil {
		return fmt.Errorf("veth: teardown: get %s: %w", name, err)
	}
	if l == nil {
		return nil
	}
	if err := p.host.LinkDel(l); err != nil && !notFound(err) {
		return fmt.Errorf("veth: teardown: delete %s: %w", name, err)
	}
	p.log.DebugContext(ctx, "veth: torn down", "key", key, "host", name)
	return nil
}

func (p *Plumber) openNS(path string) (PodNetNS, error) {
	ns, err := p.open(path)
	switch {
	case err == nil:
		return ns, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, &InputError{Field: "netns", Value: path, Reason: "does not exist", Err: ErrInvalidNetNS, Cause: err}
	case errors.Is(err, ErrNotNamespace):
		return nil, &InputError{Field: "netns", Value: path, Reason: "not a network namespace", Err: ErrInvalidNetNS, Cause: err}
	}
	return nil, fmt.Errorf("veth: open netns %s: %w", path, err)
}

type sysctlKV struct {
	key, value string
	optional   bool // missing is fine (IPv6 disabled)
}

// sysctls lists the host-side sysctls for s, per family.
func (p *Plumber) sysctls(s *spec) []sysctlKV {
	h := s.host
	var kv []sysctlKV
	for _, f := range p.families(s) {
		switch f.nl {
		case netlink.FAMILY_V4:
			kv = append(kv, sysctlKV{key: "net/ipv4/conf/" + h + "/forwarding", value: "1"})
			if p.arp == ARPKernel {
				kv = append(kv,
					sysctlKV{key: "net/ipv4/conf/" + h + "/proxy_arp", value: "1"},
					sysctlKV{key: "net/ipv4/neigh/" + h + "/proxy_delay", value: "0"})
			}
			if p.strict {
				kv = append(kv, sysctlKV{key: "net/ipv4/conf/" + h + "/rp_filter", value: "1"})
			}
		case netlink.FAMILY_V6:
			// Router behaviour on the interface. IPv6 forwarding itself
			// needs net/ipv6/conf/all/forwarding=1, a host-wide setting
			// that is the host's to make.
			kv = append(kv, sysctlKV{key: "net/ipv6/conf/" + h + "/forwarding", value: "1"})
		}
	}
	// The host end never takes router advertisements, whatever the pod's
	// families; absent when IPv6 is disabled.
	kv = append(kv, sysctlKV{key: "net/ipv6/conf/" + h + "/accept_ra", value: "0", optional: true})
	return kv
}

func linkByName(h Netlink, name string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if notFound(err) {
		return nil, nil
	}
	return l, err
}

func notFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return err != nil && (errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT))
}

// list retries a dump the kernel interrupted (NLM_F_DUMP_INTR).
func list[T any](f func() ([]T, error)) ([]T, error) {
	var (
		v   []T
		err error
	)
	for range 5 {
		if v, err = f(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return v, err
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits == 0 || (bits == 128 && a.Is4()) {
		if bits == 128 && a.Is4() {
			ones -= 96
		} else {
			return netip.Prefix{}, false
		}
	}
	return netip.PrefixFrom(a, ones), true
}
