package netlinktest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/netlinktest/internal/abi"
)

const (
	kindLoopback = "loopback" // netlink reports it as *netlink.Device
	kindVeth     = "veth"
	kindDummy    = "dummy"
	kindVxlan    = "vxlan"
	kindBridge   = "bridge"

	vxlanHeadroom4 = 50 // VXLAN_HEADROOM
	vxlanHeadroom6 = 70 // VXLAN6_HEADROOM
	vxlanPortLinux = 8472
	ifNameMax      = 15 // IFNAMSIZ - 1
	minMTU         = 68 // ETH_MIN_MTU
	maxMTU         = 65535
)

// link is one network device.
type link struct {
	ns     *namespace
	index  int
	kind   string
	name   string
	mtu    int
	txqlen int
	hw     net.HardwareAddr
	up     bool
	alias  string
	master int
	peer   *link      // veth only
	vx     *vxlanConf // vxlan only
	addrs  []*addr
	sysctl map[string]string // per-link keys that differ from the defaults, by template ("net/ipv4/conf/%s/forwarding")
	// autoconf is set once IPv6 autoconfiguration ran since the link
	// last went up.
	autoconf bool
	// Bridges: whether it ever had a port, whether its MTU was set by a
	// user (then ports do not change it).
	hadPorts, mtuByUser bool
	// txCsumOff: TX checksum offload turned off (SetTxChecksum).
	txCsumOff bool
}

// vxlanConf holds the vxlan attributes the kernel keeps and reports.
type vxlanConf struct {
	id                               int
	vtepDev                          int
	src, group                       net.IP
	ttl, tos                         int
	learning, proxy, rsc             bool
	l2miss, l3miss, udpCSum          bool
	udp6ZeroTx, udp6ZeroRx, gbp      bool
	flowBased                        bool
	age, limit, port, portLo, portHi int
}

// carrier reports whether the device has carrier (IFF_LOWER_UP when up).
func (l *link) carrier() bool {
	switch l.kind {
	case kindVeth:
		return l.up && l.peer != nil && l.peer.up
	case kindBridge:
		// A bridge has carrier while one of its ports has; before it
		// ever had a port it keeps the carrier it was born with.
		ports := l.ns.ports(l)
		if len(ports) == 0 {
			return l.up && !l.hadPorts
		}
		for _, p := range ports {
			if p.carrier() {
				return l.up
			}
		}
		return false
	}
	return l.up
}

// ports lists the links enslaved to br.
func (ns *namespace) ports(br *link) []*link {
	var out []*link
	for _, l := range ns.links {
		if l.master == br.index && l != br {
			out = append(out, l)
		}
	}
	return out
}

// bridgeUpdate follows a change of the ports of bridge index i: its MTU
// tracks the smallest port MTU unless a user set it (br_mtu_auto_adjust),
// and carrier may have come.
func (ns *namespace) bridgeUpdate(i int) {
	br := ns.links[i]
	if br == nil || br.kind != kindBridge {
		return
	}
	if !br.mtuByUser {
		mtu := 1500
		for j, p := range ns.ports(br) {
			if j == 0 || p.mtu < mtu {
				mtu = p.mtu
			}
		}
		if br.mtu != mtu {
			br.mtu = mtu
			delete(br.sysctl, ipv6MTUKey)
		}
	}
	ns.notifyLink(br, abi.RTM_NEWLINK)
	ns.autoconf(br)
}

// rawFlags are the ifinfomsg flags the kernel reports.
func (l *link) rawFlags() uint32 {
	var f uint32
	switch l.kind {
	case kindLoopback:
		f = abi.IFF_LOOPBACK
	case kindDummy:
		f = abi.IFF_BROADCAST | abi.IFF_NOARP
	default:
		f = abi.IFF_BROADCAST | abi.IFF_MULTICAST
	}
	if l.up {
		f |= abi.IFF_UP
		if l.carrier() {
			f |= abi.IFF_RUNNING | abi.IFF_LOWER_UP
		}
	}
	return f
}

func (l *link) operState() netlink.LinkOperState {
	if !l.up {
		return netlink.OperDown
	}
	if l.kind == kindBridge {
		if len(l.ns.ports(l)) == 0 && !l.hadPorts {
			return netlink.OperUnknown
		}
		if l.carrier() {
			return netlink.OperUp
		}
		return netlink.OperDown
	}
	if l.kind == kindVeth {
		if l.carrier() {
			return netlink.OperUp
		}
		// rfc2863_policy: LOWERLAYERDOWN when the device has a lower
		// link (iflink, the peer's index) with another index than its
		// own; two ends in different namespaces may share an index.
		if l.peer != nil && l.peer.index != l.index {
			return netlink.OperLowerLayerDown
		}
		return netlink.OperDown
	}
	return netlink.OperUnknown
}

// view builds what netlink's LinkDeserialize returns for l.
func (l *link) view() netlink.Link {
	raw := l.rawFlags()
	a := netlink.LinkAttrs{
		Index:          l.index,
		MTU:            l.mtu,
		TxQLen:         l.txqlen,
		Name:           l.name,
		RawFlags:       raw,
		Flags:          netFlags(raw),
		MasterIndex:    l.master,
		Alias:          l.alias,
		Statistics:     &netlink.LinkStatistics{},
		Xdp:            &netlink.LinkXdp{},
		EncapType:      "ether",
		OperState:      l.operState(),
		NetNsID:        -1,
		NumTxQueues:    1,
		NumRxQueues:    1,
		TSOMaxSegs:     65535,
		TSOMaxSize:     65536,
		GSOMaxSegs:     65535,
		GSOMaxSize:     65536,
		GROMaxSize:     65536,
		GSOIPv4MaxSize: 65536,
		GROIPv4MaxSize: 65536,
	}
	if raw&abi.IFF_MULTICAST != 0 {
		a.Multi = 1
	}
	if len(l.hw) > 0 && !allZero(l.hw) {
		a.HardwareAddr = append(net.HardwareAddr(nil), l.hw...)
	}
	switch l.kind {
	case kindLoopback:
		a.EncapType = "loopback"
		return &netlink.Device{LinkAttrs: a}
	case kindDummy:
		return &netlink.Dummy{LinkAttrs: a}
	case kindBridge:
		return &netlink.Bridge{LinkAttrs: a}
	case kindVeth:
		if l.peer != nil {
			a.ParentIndex = l.peer.index
			if l.peer.ns != l.ns {
				a.NetNsID = l.ns.nsid(l.peer.ns)
			}
		}
		return &netlink.Veth{LinkAttrs: a}
	case kindVxlan:
		c := l.vx
		v := &netlink.Vxlan{
			LinkAttrs:      a,
			VxlanId:        c.id,
			VtepDevIndex:   c.vtepDev,
			SrcAddr:        cloneIP(c.src),
			Group:          cloneIP(c.group),
			TTL:            c.ttl,
			TOS:            c.tos,
			Learning:       c.learning,
			Proxy:          c.proxy,
			RSC:            c.rsc,
			L2miss:         c.l2miss,
			L3miss:         c.l3miss,
			UDPCSum:        c.udpCSum,
			UDP6ZeroCSumTx: c.udp6ZeroTx,
			UDP6ZeroCSumRx: c.udp6ZeroRx,
			GBP:            c.gbp,
			FlowBased:      c.flowBased,
			Age:            c.age,
			NoAge:          c.age == 0,
			Limit:          c.limit,
			Port:           c.port,
			PortLow:        c.portLo,
			PortHigh:       c.portHi,
		}
		return v
	}
	panic("netlinktest: unknown link kind " + l.kind)
}

func netFlags(raw uint32) net.Flags {
	var f net.Flags
	if raw&abi.IFF_UP != 0 {
		f |= net.FlagUp
	}
	if raw&abi.IFF_BROADCAST != 0 {
		f |= net.FlagBroadcast
	}
	if raw&abi.IFF_LOOPBACK != 0 {
		f |= net.FlagLoopback
	}
	if raw&abi.IFF_POINTOPOINT != 0 {
		f |= net.FlagPointToPoint
	}
	if raw&abi.IFF_MULTICAST != 0 {
		f |= net.FlagMulticast
	}
	if raw&abi.IFF_RUNNING != 0 {
		f |= net.FlagRunning
	}
	return f
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func cloneIP(ip net.IP) net.IP {
	if ip == nil {
		return nil
	}
	return append(net.IP(nil), ip...)
}

// linkNotFound builds the error netlink returns from LinkByName and
// LinkByIndex for a missing link. netlink.LinkNotFoundError has a single
// unexported embedded error field; a struct with the same single field has
// the same memory layout.
func linkNotFound(msg string) error {
	v := struct{ error }{errors.New(msg)}
	return *(*netlink.LinkNotFoundError)(unsafe.Pointer(&v))
}

// validName reports the kernel's verdict on an interface name: ERANGE when
// too long (the netlink attribute policy), EINVAL when dev_valid_name
// rejects it.
func validName(name string) error {
	if len(name) > ifNameMax {
		return abi.ERANGE
	}
	if name == "" || name == "." || name == ".." {
		return abi.EINVAL
	}
	if strings.ContainsAny(name, "/:") {
		return abi.EINVAL
	}
	for _, r := range name {
		if r == ' ' || r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r' {
			return abi.EINVAL
		}
	}
	return nil
}

// validMAC mirrors eth_prepare_mac_addr_change / is_valid_ether_addr.
func validMAC(hw net.HardwareAddr) error {
	if len(hw) != 6 {
		return abi.EINVAL
	}
	if hw[0]&1 != 0 || allZero(hw) {
		return abi.EADDRNOTAVAIL
	}
	return nil
}

// mtuRange is the device's [min, max] MTU.
func (ns *namespace) mtuRange(kind string, vx *vxlanConf) (int, int) {
	switch kind {
	case kindDummy:
		return 0, 1<<31 - 1
	case kindLoopback:
		return 0, 1<<31 - 1
	case kindVxlan:
		hi := maxMTU
		if vx != nil && vx.vtepDev != 0 {
			if lower := ns.links[vx.vtepDev]; lower != nil {
				hi = lower.mtu - vx.headroom()
				if hi < minMTU {
					hi = minMTU
				}
			}
		}
		return minMTU, hi
	}
	return minMTU, maxMTU
}

func (c *vxlanConf) headroom() int {
	if (c.src != nil && c.src.To4() == nil) || (c.group != nil && c.group.To4() == nil) {
		return vxlanHeadroom6
	}
	return vxlanHeadroom4
}

// register gives l an index in ns (want if free, else the next free one
// cyclically, like the kernel's xa_alloc_cyclic) and creates its sysctls.
func (ns *namespace) register(l *link, want int) {
	l.ns = ns
	if want > 0 && ns.links[want] == nil {
		l.index = want
	} else {
		i := ns.nextIndex
		for ns.links[i] != nil {
			i++
		}
		l.index = i
		ns.nextIndex = i + 1
	}
	ns.links[l.index] = l
	ns.addLinkSysctls(l)
	ns.notifyLink(l, abi.RTM_NEWLINK)
	ns.autoconf(l)
}

// unregister removes l from ns with everything that depends on it: its
// routes, addresses, neighbours, sysctls, vxlan devices using it as lower
// device, and its veth peer (wherever that is).
func (ns *namespace) unregister(l *link) {
	ns.detach(l)
	ns.notifyLink(l, abi.RTM_DELLINK)
	if p := l.peer; p != nil {
		l.peer = nil
		p.peer = nil
		if p.ns.links[p.index] == p {
			p.ns.unregister(p)
		}
	}
}

// detach removes l and its dependent state from ns without notifying or
// touching the peer.
func (ns *namespace) detach(l *link) {
	ns.flushRoutes(l, true)
	ns.flushNeighs(l, true)
	l.addrs = nil
	delete(ns.links, l.index)
	if l.master != 0 {
		defer ns.bridgeUpdate(l.master)
	}
	for _, o := range ns.sortedLinks() {
		if o.master == l.index {
			o.master = 0
			ns.notifyLink(o, abi.RTM_NEWLINK)
		}
		if o.kind == kindVxlan && o.vx.vtepDev == l.index {
			if ns.links[o.index] == o {
				ns.unregister(o)
			}
		}
	}
}

// resolve finds the link netlink would address for a request about lk:
// netlink first fills a zero Index by looking the name up in the handle's
// namespace (and stores it in lk); index 0 gives EINVAL, an unknown index
// ENODEV.
func (ns *namespace) resolve(lk netlink.Link) (*link, error) {
	if lk == nil || lk.Attrs() == nil {
		return nil, abi.EINVAL
	}
	a := lk.Attrs()
	ns.ensureIndex(a)
	if a.Index == 0 {
		return nil, abi.EINVAL
	}
	l := ns.links[a.Index]
	if l == nil {
		return nil, abi.ENODEV
	}
	return l, nil
}

func (ns *namespace) ensureIndex(a *netlink.LinkAttrs) {
	if a != nil && a.Index == 0 {
		if l := ns.linkByName(a.Name); l != nil {
			a.Index = l.index
		}
	}
}

// LinkByName returns the link called name, or netlink.LinkNotFoundError.
func (k *Kernel) LinkByName(name string) (netlink.Link, error) {
	var out netlink.Link
	err := k.read("LinkByName", func() error {
		l := k.ns.linkByName(name)
		if l == nil {
			return linkNotFound("Link not found")
		}
		out = l.view()
		return nil
	})
	return out, err
}

// LinkByIndex returns the link with index i, or netlink.LinkNotFoundError.
func (k *Kernel) LinkByIndex(i int) (netlink.Link, error) {
	var out netlink.Link
	err := k.read("LinkByIndex", func() error {
		l := k.ns.links[i]
		if l == nil {
			if i <= 0 {
				return abi.EINVAL
			}
			return linkNotFound("Link not found")
		}
		out = l.view()
		return nil
	})
	return out, err
}

// LinkList returns every link of the namespace in index order.
func (k *Kernel) LinkList() ([]netlink.Link, error) {
	var out []netlink.Link
	err := k.read("LinkList", func() error {
		for _, l := range k.ns.sortedLinks() {
			out = append(out, l.view())
		}
		return nil
	})
	return out, err
}

// LinkAdd creates a veth pair, dummy, vxlan or bridge device.
func (k *Kernel) LinkAdd(lk netlink.Link) error {
	if lk == nil || lk.Attrs() == nil {
		return abi.EINVAL
	}
	base := lk.Attrs()
	if base.Name == "" {
		return fmt.Errorf("LinkAttrs.Name cannot be empty") // netlink's own check
	}
	err := k.do("LinkAdd", func() error { return k.linkAdd(lk) })
	if err != nil {
		return err
	}
	k.m.mu.Lock()
	k.ns.ensureIndex(base)
	k.m.mu.Unlock()
	if base.MasterIndex != 0 {
		return k.setMaster(lk, base.MasterIndex, "LinkSetMaster")
	}
	return nil
}

func (k *Kernel) linkAdd(lk netlink.Link) error {
	base := lk.Attrs()
	ns := k.ns
	if base.Namespace != nil {
		t, err := k.m.nsByFd(base.Namespace)
		if err != nil {
			return err
		}
		ns = t
	}
	if err := validName(base.Name); err != nil {
		return err
	}
	if ns.linkByName(base.Name) != nil {
		return abi.EEXIST
	}
	if base.HardwareAddr != nil {
		if err := validMAC(base.HardwareAddr); err != nil {
			return err
		}
	}
	txq := 1000
	if base.TxQLen >= 0 {
		txq = base.TxQLen
	}
	l := &link{name: base.Name, txqlen: txq, mtu: 1500, alias: base.Alias,
		hw: append(net.HardwareAddr(nil), base.HardwareAddr...),
		up: base.Flags&net.FlagUp != 0}
	want := base.Index
	if want > 0 && ns.links[want] != nil {
		return abi.EBUSY
	}
	switch v := lk.(type) {
	case *netlink.Veth:
		l.kind = kindVeth
		return k.addVeth(ns, l, v, want)
	case *netlink.Dummy:
		l.kind = kindDummy
	case *netlink.Bridge:
		l.kind = kindBridge
	case *netlink.Vxlan:
		l.kind = kindVxlan
		if err := ns.vxlanConf(l, v); err != nil {
			return err
		}
	default:
		return abi.EOPNOTSUPP
	}
	if base.MTU > 0 {
		lo, hi := ns.mtuRange(l.kind, l.vx)
		if base.MTU < lo {
			return abi.EINVAL
		}
		l.mtu = base.MTU
		l.mtuByUser = true
		if l.kind == kindVxlan && l.mtu > hi {
			l.mtu = hi // vxlan_config_apply clamps to the lower device
		} else if l.mtu > hi {
			return abi.EINVAL
		}
	}
	if len(l.hw) == 0 {
		l.hw = k.m.newMAC()
	}
	ns.register(l, want)
	return nil
}

func (ns *namespace) vxlanConf(l *link, v *netlink.Vxlan) error {
	c := &vxlanConf{
		id:         v.VxlanId,
		vtepDev:    v.VtepDevIndex,
		ttl:        v.TTL,
		tos:        v.TOS,
		learning:   v.Learning,
		proxy:      v.Proxy,
		rsc:        v.RSC,
		l2miss:     v.L2miss,
		l3miss:     v.L3miss,
		udpCSum:    true, // the kernel's default; netlink never sends false
		udp6ZeroTx: v.UDP6ZeroCSumTx,
		udp6ZeroRx: v.UDP6ZeroCSumRx,
		gbp:        v.GBP,
		flowBased:  v.FlowBased,
		age:        300,
		limit:      v.Limit,
		port:       v.Port,
		portLo:     v.PortLow,
		portHi:     v.PortHigh,
	}
	if v.FlowBased {
		c.id = 0
	}
	if c.id < 0 || c.id >= 1<<24 {
		return abi.ERANGE
	}
	if v.SrcAddr != nil {
		c.src = normIP(v.SrcAddr)
	}
	if v.Group != nil {
		c.group = normIP(v.Group)
	}
	if v.NoAge {
		c.age = 0
	} else if v.Age > 0 {
		c.age = v.Age
	}
	if c.port == 0 {
		c.port = vxlanPortLinux
	}
	if c.vtepDev != 0 && ns.links[c.vtepDev] == nil {
		return abi.ENODEV
	}
	v6 := c.headroom() == vxlanHeadroom6
	for _, o := range ns.links {
		if o.kind == kindVxlan && o.vx.id == c.id && o.vx.port == c.port &&
			(o.vx.headroom() == vxlanHeadroom6) == v6 {
			return abi.EEXIST
		}
	}
	l.vx = c
	if lower := ns.links[c.vtepDev]; lower != nil && c.vtepDev != 0 {
		l.mtu = lower.mtu - c.headroom()
		if l.mtu < minMTU {
			l.mtu = minMTU
		}
	}
	return nil
}

func normIP(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return append(net.IP(nil), v4...)
	}
	return append(net.IP(nil), ip.To16()...)
}

func (k *Kernel) addVeth(ns *namespace, l *link, v *netlink.Veth, want int) error {
	base := &v.LinkAttrs
	pns := k.ns
	if v.PeerNamespace != nil {
		t, err := k.m.nsByFd(v.PeerNamespace)
		if err != nil {
			return err
		}
		pns = t
	}
	if err := validName(v.PeerName); err != nil {
		return err
	}
	if pns.linkByName(v.PeerName) != nil || (pns == ns && v.PeerName == base.Name) {
		return abi.EEXIST
	}
	if base.MTU > 0 {
		if base.MTU < minMTU || base.MTU > maxMTU {
			return abi.EINVAL
		}
		l.mtu = base.MTU
	}
	p := &link{kind: kindVeth, name: v.PeerName, mtu: 1500, txqlen: 1000}
	switch {
	case v.PeerMTU > 0:
		p.mtu = int(v.PeerMTU)
	case base.MTU > 0:
		p.mtu = base.MTU
	}
	if p.mtu < minMTU || p.mtu > maxMTU {
		return abi.EINVAL
	}
	switch {
	case v.PeerTxQLen >= 0:
		p.txqlen = v.PeerTxQLen
	case base.TxQLen >= 0:
		p.txqlen = base.TxQLen
	}
	if v.PeerHardwareAddr != nil {
		if err := validMAC(v.PeerHardwareAddr); err != nil {
			return err
		}
		p.hw = append(net.HardwareAddr(nil), v.PeerHardwareAddr...)
	}
	// The kernel registers the peer first: it gets its index first.
	if len(p.hw) == 0 {
		p.hw = k.m.newMAC()
	}
	if len(l.hw) == 0 {
		l.hw = k.m.newMAC()
	}
	l.peer, p.peer = p, l
	pns.register(p, 0)
	ns.register(l, want)
	if pns != ns {
		// The kernel assigns the ids when it announces the new links.
		pns.nsid(ns)
		ns.nsid(pns)
	}
	return nil
}

// LinkDel deletes a link (a veth pair goes as a whole).
func (k *Kernel) LinkDel(lk netlink.Link) error {
	return k.do("LinkDel", func() error {
		l, err := k.ns.resolve(lk)
		if err != nil {
			return err
		}
		k.ns.unregister(l)
		return nil
	})
}

// LinkSetUp sets IFF_UP; the link's kernel routes appear.
func (k *Kernel) LinkSetUp(lk netlink.Link) error {
	return k.do("LinkSetUp", func() error {
		l, err := k.ns.resolve(lk)
		if err != nil {
			return err
		}
		k.ns.setUp(l, true)
		return nil
	})
}

// LinkSetDown clears IFF_UP; every route through the link except the
// local routes of its addresses vanishes, and so do its neighbours.
func (k *Kernel) LinkSetDown(lk netlink.Link) error {
	return k.do("LinkSetDown", func() error {
		l, err := k.ns.resolve(lk)
		if err != nil {
			return err
		}
		k.ns.setUp(l, false)
		return nil
	})
}

func (ns *namespace) setUp(l *link, up bool) {
	if l.up == up {
		return
	}
	l.up = up
	if up {
		if l.kind == kindLoopback {
			ns.addLoopbackAddrs(l)
		}
		for _, a := range l.addrs {
			ns.addAddrRoutes(l, a)
		}
	} else {
		ns.flushRoutes(l, false)
		ns.flushNeighs(l, false)
		// addrconf_ifdown: IPv6 addresses go too (keep_addr_on_down=0).
		ns.dropIPv6(l)
	}
	ns.notifyLink(l, abi.RTM_NEWLINK)
	ns.autoconf(l)
	ns.bridgeUpdate(l.master)
	if p := l.peer; p != nil {
		p.ns.notifyLink(p, abi.RTM_NEWLINK) // its carrier changed
		p.ns.autoconf(p)
		if !up && p.up {
			p.ns.neighCarrierDown(p)
		}
		p.ns.bridgeUpdate(p.master)
	}
}

// LinkSetMTU sets the MTU within the device's limits (EINVAL otherwise).
func (k *Kernel) LinkSetMTU(lk netlink.Link, mtu int) error {
	return k.do("LinkSetMTU", func() error {
		l, err := k.ns.resolve(lk)
		if err != nil {
			return err
		}
		lo, hi := k.ns.mtuRange(l.kind, l.vx)
		if mtu < lo || mtu > hi {
			return abi.EINVAL
		}
		if l.kind == kindBridge {
			l.mtuByUser = true
		}
		if l.mtu != mtu {
			l.mtu = mtu
			delete(l.sysctl, ipv6MTUKey) // addrconf follows the link MTU
			k.ns.notifyLink(l, abi.RTM_NEWLINK)
			k.ns.bridgeUpdate(l.master)
		}
		return nil
	})
}

// LinkSetHardwareAddr sets the MAC address (a valid unicast one).
func (k *Kernel) LinkSetHardwareAddr(lk netlink.Link, hw net.HardwareAddr) error {
	return k.do("LinkSetHardwareAddr", func() error {
		l, err := k.ns.resolve(lk)
		if err != nil {
			return err
		}
		if l.kind == kindLoopback {
			return abi.EOPNOTSUPP
		}
		if err := validMAC(hw); err != nil {
			return err
		}
		if !bytes.Equal(l.hw, hw) {
			l.hw = append(net.HardwareAddr(nil), hw...)
			k.ns.neighChangeAddr(l)
		}
		k.ns.notifyLink(l, abi.RTM_NEWLINK)
		return nil
	})
}

// LinkSetAlias sets (or with "" clears) the alias.
func (k *Kernel) LinkSetAlias(lk netlink.Link, alias string) error {
	return k.do("LinkSetAlias", func() error {
		l, err := k.ns.resolve(lk)
		if err != nil {
			return err
		}
		if len(alias) >= 256 { // longer than IFALIASZ-1: the attribute policy says ERANGE
			return abi.ERANGE
		}
		l.alias = alias
		k.ns.notifyLink(l, abi.RTM_NEWLINK)
		return nil
	})
}

// LinkSetName renames a link (the kernel allows it while up).
func (k *Kernel) LinkSetName(lk netlink.Link, name string) error {
	return k.do("LinkSetName", func() error {
		l, err := k.ns.resolve(lk)
		if err != nil {
			return err
		}
		if err := validName(name); err != nil {
			return err
		}
		if name == l.name {
			return nil
		}
		if k.ns.linkByName(name) != nil {
			return abi.EEXIST
		}
		// inetdev_changename: the first IPv4 address takes the new name,
		// the others keep their ":suffix" or get ":<position>".
		named := 0
		for _, a := range l.addrs {
			if !a.ip.Is4() {
				continue
			}
			old := a.label
			a.label = name
			named++
			if named == 1 {
				continue
			}
			dot := old[strings.IndexByte(old, ':')+1:]
			if !strings.Contains(old, ":") {
				dot = fmt.Sprint(named)
			}
			dot = ":" + dot
			if len(dot)+len(name) < ifNameMax+1 {
				a.label = name + dot
			} else {
				a.label = name[:ifNameMax-len(dot)] + dot
			}
		}
		l.name = name
		k.ns.notifyLink(l, abi.RTM_NEWLINK)
		return nil
	})
}

// LinkSetMaster enslaves lk to master (a bridge).
func (k *Kernel) LinkSetMaster(lk netlink.Link, master netlink.Link) error {
	idx := 0
	if master != nil && master.Attrs() != nil {
		k.m.mu.Lock()
		k.ns.ensureIndex(master.Attrs())
		k.m.mu.Unlock()
		idx = master.Attrs().Index
	}
	if idx <= 0 {
		return fmt.Errorf("Device does not exist") // netlink's own check
	}
	return k.setMaster(lk, idx, "LinkSetMaster")
}

// LinkSetNoMaster releases lk from its master, if any.
func (k *Kernel) LinkSetNoMaster(lk netlink.Link) error {
	return k.setMaster(lk, 0, "LinkSetNoMaster")
}

func (k *Kernel) setMaster(lk netlink.Link, idx int, op string) error {
	return k.do(op, func() error {
		l, err := k.ns.resolve(lk)
		if err != nil {
			return err
		}
		if idx == 0 {
			if old := l.master; old != 0 {
				l.master = 0
				k.ns.notifyLink(l, abi.RTM_NEWLINK)
				k.ns.bridgeUpdate(old)
			}
			return nil
		}
		m := k.ns.links[idx]
		if m == nil {
			return abi.ENODEV
		}
		if m == l {
			return abi.ELOOP
		}
		if m.kind != kindBridge {
			return abi.EOPNOTSUPP
		}
		if l.kind == kindLoopback || l.kind == kindBridge {
			return abi.EINVAL
		}
		if l.master == idx {
			return nil
		}
		if l.master != 0 {
			return abi.EBUSY
		}
		l.master = idx
		m.hadPorts = true
		k.ns.notifyLink(l, abi.RTM_NEWLINK)
		k.ns.bridgeUpdate(idx)
		return nil
	})
}

// LinkSetNsFd moves a link to the namespace named by the fake descriptor
// fd (see Fd). Like the kernel it goes down, loses its addresses, routes,
// neighbours and master, and keeps its index if that is free there.
func (k *Kernel) LinkSetNsFd(lk netlink.Link, fd int) error {
	return k.do("LinkSetNsFd", func() error {
		l, err := k.ns.resolve(lk)
		if err != nil {
			return err
		}
		to, ok := k.m.byFd[fd]
		if !ok {
			return abi.EBADF
		}
		if l.kind == kindLoopback || l.kind == kindBridge {
			return abi.EINVAL // NETIF_F_NETNS_LOCAL
		}
		if to == k.ns {
			return nil
		}
		if to.linkByName(l.name) != nil {
			return abi.EEXIST
		}
		from := k.ns
		if l.up {
			l.up = false
			if p := l.peer; p != nil {
				p.ns.notifyLink(p, abi.RTM_NEWLINK)
				if p.up {
					p.ns.neighCarrierDown(p)
				}
			}
		}
		from.detach(l)
		l.master = 0
		l.autoconf = false
		from.notifyLink(l, abi.RTM_DELLINK)
		to.register(l, l.index)
		if p := l.peer; p != nil && p.ns != to {
			to.nsid(p.ns)
			p.ns.nsid(to)
		}
		if p := l.peer; p != nil {
			p.ns.notifyLink(p, abi.RTM_NEWLINK) // its link-netnsid changed
		}
		return nil
	})
}
