package netlinktest

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tabbynet/tabby/netlinktest/internal/abi"
)

// Dump returns a deterministic text description of the whole machine for
// golden tests: every live namespace (sorted by path, the initial one
// first) with its links (index, name, kind, state, MTU, MAC, veth peer,
// vxlan attributes, master, alias) and their addresses, then its routes
// (every table), neighbours, FDB entries and the sysctls that differ from
// a fresh namespace. MAC addresses the fake generated are deterministic.
// What IPv6 autoconfiguration adds by itself (the EUI-64 link-local address
// of every link with carrier, its routes and the ff00::/8 route) is left
// out to keep golden files short; AddrList and RouteList report it.
//
// The grammar, one item per line; [x] is optional, {a|b} a choice, words in
// capitals are values (indentation is part of the grammar):
//
//	netns {PATH|""}                              one block per namespace, sorted by path
//	  link INDEX NAME KIND {down|up,lower_up|up,no-carrier} mtu MTU [mac MAC]
//	       [txqlen N] [peer INDEX:NAME[@NETNS]] [master NAME] [alias "TEXT"]
//	    vxlan id VNI port PORT [dev NAME] [local IP] [group IP] {learning|nolearning}
//	          [ttl N] [tos N] [ageing SECONDS] [proxy] [rsc] [l2miss] [l3miss]
//	          [noudpcsum] [gbp] [external]          (vxlan links only)
//	    addr IP/BITS [brd IP] scope SCOPE [secondary] [label NAME]
//	         [valid_lft N preferred_lft N]          (one per address, kernel order)
//	  route [TYPE ]{default|IP|PREFIX} [via IP] [dev NAME] table TABLE proto PROTO
//	        scope SCOPE [src IP] [metric N] [tos 0xN] [mtu N] [onlink] [linkdown]
//	  neigh IP dev NAME lladdr MAC STATE [flags 0xN]
//	  fdb MAC dev NAME [dst IP] STATE [flags 0xN]
//	  sysctl KEY=VALUE                             (only keys that differ from a fresh namespace)
//
// KIND is loopback, veth, vxlan, bridge or dummy; TYPE is left out for unicast
// routes (local, broadcast, blackhole, unreachable, prohibit, throw,
// multicast otherwise); TABLE, PROTO and SCOPE are names where `ip route`
// has one (main, local; kernel, boot, static; host, link, universe) else
// numbers; STATE is the NUD state (PERMANENT, REACHABLE, NOARP, ...).
// Routes are in table then fib order, neighbours and FDB entries sorted.
func (k *Kernel) Dump() string {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	var nss []*namespace
	for _, ns := range k.m.byPath {
		nss = append(nss, ns)
	}
	sort.Slice(nss, func(i, j int) bool { return nss[i].path < nss[j].path })
	var b strings.Builder
	for _, ns := range nss {
		ns.dump(&b)
	}
	return b.String()
}

func nsName(ns *namespace) string {
	if ns.path == "" {
		return `""`
	}
	return ns.path
}

func (ns *namespace) dump(b *strings.Builder) {
	fmt.Fprintf(b, "netns %s\n", nsName(ns))
	for _, l := range ns.sortedLinks() {
		state := "down"
		if l.up {
			state = "up"
			if l.carrier() {
				state += ",lower_up"
			} else {
				state += ",no-carrier"
			}
		}
		fmt.Fprintf(b, "  link %d %s %s %s mtu %d", l.index, l.name, l.kind, state, l.mtu)
		if l.kind != kindLoopback {
			fmt.Fprintf(b, " mac %s", l.hw)
		}
		if l.txqlen != 1000 {
			fmt.Fprintf(b, " txqlen %d", l.txqlen)
		}
		if p := l.peer; p != nil {
			fmt.Fprintf(b, " peer %d:%s", p.index, p.name)
			if p.ns != ns {
				fmt.Fprintf(b, "@%s", nsName(p.ns))
			}
		}
		if l.master != 0 {
			fmt.Fprintf(b, " master %s", ns.linkName(l.master))
		}
		if l.alias != "" {
			fmt.Fprintf(b, " alias %q", l.alias)
		}
		b.WriteString("\n")
		if c := l.vx; c != nil {
			fmt.Fprintf(b, "    vxlan id %d port %d", c.id, c.port)
			if c.vtepDev != 0 {
				fmt.Fprintf(b, " dev %s", ns.linkName(c.vtepDev))
			}
			if c.src != nil {
				fmt.Fprintf(b, " local %s", c.src)
			}
			if c.group != nil {
				fmt.Fprintf(b, " group %s", c.group)
			}
			if !c.learning {
				b.WriteString(" nolearning")
			} else {
				b.WriteString(" learning")
			}
			if c.ttl != 0 {
				fmt.Fprintf(b, " ttl %d", c.ttl)
			}
			if c.tos != 0 {
				fmt.Fprintf(b, " tos %d", c.tos)
			}
			if c.age != 300 {
				fmt.Fprintf(b, " ageing %d", c.age)
			}
			for _, f := range []struct {
				on   bool
				name string
			}{{c.proxy, "proxy"}, {c.rsc, "rsc"}, {c.l2miss, "l2miss"}, {c.l3miss, "l3miss"},
				{!c.udpCSum, "noudpcsum"}, {c.gbp, "gbp"}, {c.flowBased, "external"}} {
				if f.on {
					b.WriteString(" " + f.name)
				}
			}
			b.WriteString("\n")
		}
		for _, a := range l.addrs {
			if a.auto {
				continue
			}
			fmt.Fprintf(b, "    addr %s/%d", a.ip, a.bits)
			if a.bcast.IsValid() {
				fmt.Fprintf(b, " brd %s", a.bcast)
			}
			fmt.Fprintf(b, " scope %s", scopeName(a.scope))
			if a.secondary {
				b.WriteString(" secondary")
			}
			if a.ip.Is4() && a.label != l.name {
				fmt.Fprintf(b, " label %s", a.label)
			}
			if a.valid != lifetimeForever {
				fmt.Fprintf(b, " valid_lft %d preferred_lft %d", a.valid, a.preferred)
			}
			b.WriteString("\n")
		}
	}
	for _, r := range ns.sortedRoutes() {
		if r.auto {
			continue
		}
		b.WriteString("  route " + ns.routeString(r) + "\n")
	}
	for _, n := range ns.sortedNeighs() {
		if n.family == abi.AF_BRIDGE {
			fmt.Fprintf(b, "  fdb %s dev %s", n.mac, ns.linkName(n.link))
			if n.ip.IsValid() {
				fmt.Fprintf(b, " dst %s", n.ip)
			}
		} else {
			fmt.Fprintf(b, "  neigh %s dev %s lladdr %s", n.ip, ns.linkName(n.link), n.mac)
		}
		fmt.Fprintf(b, " %s", nudName(n.state))
		if n.flags&^unixNTFSelf != 0 {
			fmt.Fprintf(b, " flags %#x", n.flags&^unixNTFSelf)
		}
		b.WriteString("\n")
	}
	for _, s := range ns.nonDefaultSysctls() {
		b.WriteString("  sysctl " + s + "\n")
	}
}

const unixNTFSelf = 0x02

func (ns *namespace) linkName(i int) string {
	if l := ns.links[i]; l != nil {
		return l.name
	}
	return fmt.Sprintf("if%d", i)
}

func (ns *namespace) routeString(r *route) string {
	var b strings.Builder
	if r.typ != abi.RTN_UNICAST {
		b.WriteString(typeName(r.typ) + " ")
	}
	if r.dst.Bits() == 0 {
		b.WriteString("default")
	} else if r.dst.Bits() == r.dst.Addr().BitLen() {
		b.WriteString(r.dst.Addr().String())
	} else {
		b.WriteString(r.dst.String())
	}
	if r.gw.IsValid() {
		fmt.Fprintf(&b, " via %s", r.gw)
	}
	if r.link != 0 {
		fmt.Fprintf(&b, " dev %s", ns.linkName(r.link))
	}
	fmt.Fprintf(&b, " table %s proto %s scope %s", tableName(r.table), protoName(r.proto), scopeName(r.scope))
	if r.src.IsValid() {
		fmt.Fprintf(&b, " src %s", r.src)
	}
	if r.priority != 0 {
		fmt.Fprintf(&b, " metric %d", r.priority)
	}
	if r.tos != 0 {
		fmt.Fprintf(&b, " tos %#x", r.tos)
	}
	if r.mtu != 0 {
		fmt.Fprintf(&b, " mtu %d", r.mtu)
	}
	if r.onlink {
		b.WriteString(" onlink")
	}
	if l := ns.links[r.link]; l != nil && r.typ != abi.RTN_LOCAL && l.up && !l.carrier() {
		b.WriteString(" linkdown")
	}
	return b.String()
}

func typeName(t int) string {
	switch t {
	case abi.RTN_UNICAST:
		return "unicast"
	case abi.RTN_LOCAL:
		return "local"
	case abi.RTN_BROADCAST:
		return "broadcast"
	case abi.RTN_ANYCAST:
		return "anycast"
	case abi.RTN_MULTICAST:
		return "multicast"
	case abi.RTN_BLACKHOLE:
		return "blackhole"
	case abi.RTN_UNREACHABLE:
		return "unreachable"
	case abi.RTN_PROHIBIT:
		return "prohibit"
	case abi.RTN_THROW:
		return "throw"
	}
	return fmt.Sprintf("type%d", t)
}

func tableName(t int) string {
	switch t {
	case tableMain:
		return "main"
	case tableLocal:
		return "local"
	case tableDefault:
		return "default"
	}
	return fmt.Sprint(t)
}

func protoName(p int) string {
	switch p {
	case abi.RTPROT_KERNEL:
		return "kernel"
	case abi.RTPROT_BOOT:
		return "boot"
	case abi.RTPROT_STATIC:
		return "static"
	}
	return fmt.Sprint(p)
}

func scopeName(s int) string {
	switch s {
	case abi.RT_SCOPE_UNIVERSE:
		return "global"
	case abi.RT_SCOPE_LINK:
		return "link"
	case abi.RT_SCOPE_HOST:
		return "host"
	case abi.RT_SCOPE_SITE:
		return "site"
	case abi.RT_SCOPE_NOWHERE:
		return "nowhere"
	}
	return fmt.Sprint(s)
}

func nudName(s int) string {
	names := []struct {
		bit  int
		name string
	}{{0x01, "INCOMPLETE"}, {0x02, "REACHABLE"}, {0x04, "STALE"}, {0x08, "DELAY"},
		{0x10, "PROBE"}, {0x20, "FAILED"}, {0x40, "NOARP"}, {0x80, "PERMANENT"}}
	var out []string
	for _, n := range names {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	if len(out) == 0 {
		return "NONE"
	}
	return strings.Join(out, ",")
}
