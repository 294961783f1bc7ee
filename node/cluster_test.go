//go:build linux

package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/explain"
	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/node"
	"github.com/tabbynet/tabby/node/nodetest"
	"github.com/tabbynet/tabby/proxyarp/proxyarptest"
	"github.com/tabbynet/tabby/veth"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The seed's cluster on the fake kernel: three nodes on one memory
// datastore, three pods, checked question by question on kernel state.

var seedNodes = []struct {
	name string
	ip   netip.Prefix
}{
	{"master", netip.MustParsePrefix("10.4.7.60/24")},
	{"worker1", netip.MustParsePrefix("10.4.7.61/24")},
	{"worker2", netip.MustParsePrefix("10.4.7.62/24")},
}

type fakeNode struct {
	name   string
	ip     netip.Prefix
	k      *nodetest.Kernel
	n      *node.Node
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	syncs  []node.SyncInfo
}

type fakeCluster struct {
	dual  bool
	t     *testing.T
	m     *netlinktest.Kernel // the machine's initial namespace
	store datastore.Store
	nodes map[string]*fakeNode
	hold  time.Duration
	v6    map[string]netip.Prefix
}

func newFakeCluster(t *testing.T, hold time.Duration) *fakeCluster {
	t.Helper()
	return newFakeClusterFamilies(t, hold, false)
}

var pool6 = netip.MustParsePrefix("fd00:10:244::/48")

func newFakeClusterFamilies(t *testing.T, hold time.Duration, dual bool) *fakeCluster {
	t.Helper()
	c := &fakeCluster{t: t, m: netlinktest.New(), store: memory.New(nil), nodes: map[string]*fakeNode{}, hold: hold, dual: dual, v6: map[string]netip.Prefix{}}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.stop()
		}
		c.store.Close()
	})
	for _, s := range seedNodes {
		k, err := c.m.NewNamespace("/" + s.name)
		if err != nil {
			t.Fatal(err)
		}
		must(t, k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}}))
		eth0, _ := k.LinkByName("eth0")
		must(t, k.LinkSetUp(eth0))
		must(t, k.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: s.ip.Addr().AsSlice(), Mask: net.CIDRMask(s.ip.Bits(), 32)}}))
		if c.dual {
			v6 := netip.MustParsePrefix(fmt.Sprintf("2001:db8:4:7::%d/64", s.ip.Addr().As4()[3]))
			must(t, k.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: v6.Addr().AsSlice(), Mask: net.CIDRMask(64, 128)}}))
			c.v6[s.name] = v6
		}
		// The way out (Q8): a router on the underlay.
		must(t, k.RouteAdd(&netlink.Route{Gw: net.IPv4(10, 4, 7, 1), LinkIndex: eth0.Attrs().Index}))
		c.nodes[s.name] = &fakeNode{name: s.name, ip: s.ip, k: nodetest.NewKernel(k)}
	}
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// start runs node name (again) and waits for its first sync.
func (c *fakeCluster) start(name string, mut func(*node.Config)) *fakeNode {
	c.t.Helper()
	fn := c.nodes[name]
	cfg := node.Config{
		Name: name, NodeIP: fn.ip, Uplink: "eth0", NATOutgoing: true,
		Store: c.store, Kernel: fn.k.Kernel, HoldTime: c.hold,
		HealthInterval: 50 * time.Millisecond,
		Logger:         testLogger(c.t, name),
		OnSync: func(s node.SyncInfo) {
			fn.mu.Lock()
			fn.syncs = append(fn.syncs, s)
			fn.mu.Unlock()
		},
	}
	if c.dual {
		cfg.NodeIPv6 = c.v6[name]
		cfg.Pools = []netip.Prefix{node.DefaultPool(), pool6}
	}
	if mut != nil {
		mut(&cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fn.n, fn.cancel, fn.done = n, cancel, make(chan error, 1)
	fn.mu.Lock()
	fn.syncs = nil
	fn.mu.Unlock()
	go func() { fn.done <- n.Run(ctx) }()
	select {
	case <-n.Started():
	case err := <-fn.done:
		c.t.Fatalf("%s: Run: %v", name, err)
	case <-time.After(10 * time.Second):
		c.t.Fatalf("%s: not started", name)
	}
	return fn
}

func (n *fakeNode) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.cancel = nil
}

func (n *fakeNode) firstSync() node.SyncInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.syncs[0]
}

// eventually polls f until it returns nil (10 s at most).
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	var err error
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if err = f(); err == nil {
			return
		}
	}
	t.Fatalf("%s: %v", what, err)
}

func (c *fakeCluster) converged() error {
	for _, n := range c.nodes {
		if n.cancel == nil {
			continue
		}
		if got := len(n.n.Stats().Peers); got != c.running()-1 {
			return fmt.Errorf("%s sees %d peers, want %d", n.name, got, c.running()-1)
		}
	}
	return nil
}

func (c *fakeCluster) running() int {
	r := 0
	for _, n := range c.nodes {
		if n.cancel != nil {
			r++
		}
	}
	return r
}

type fakePod struct {
	name, node string
	ns         *netlinktest.Kernel
	res        node.PodResult
}

func (c *fakeCluster) addPod(name, on string) *fakePod {
	c.t.Helper()
	ns, err := c.m.NewNamespace("/pods/" + name)
	if err != nil {
		c.t.Fatal(err)
	}
	res, err := c.nodes[on].n.AddPod(context.Background(), node.Pod{
		Key: veth.WorkloadKey("default", name), NetNS: "/pods/" + name,
		Attrs: map[string]string{"namespace": "default", "pod": name},
	})
	if err != nil {
		c.t.Fatalf("add %s on %s: %v", name, on, err)
	}
	return &fakePod{name: name, node: on, ns: ns, res: res}
}

func TestSeedClusterOnFake(t *testing.T) {
	if os.Getenv("TABBY_NODE_UNPRIVILEGED_CHILD") == "1" {
		t.Logf("CapEff %s", capEff(t))
	}
	c := newFakeCluster(t, 500*time.Millisecond)
	for _, s := range seedNodes {
		c.start(s.name, nil)
	}
	eventually(t, "peers", c.converged)
	podA, podB, podC := c.addPod("pod-a", "worker1"), c.addPod("pod-b", "worker1"), c.addPod("pod-c", "worker2")
	w1, w2 := c.nodes["worker1"], c.nodes["worker2"]

	t.Run("Q1 addresses come from the node's block", func(t *testing.T) {
		for _, n := range c.nodes {
			s := n.n.Stats()
			if len(s.Blocks) != 1 || s.Blocks[0].Bits() != 26 || !node.DefaultPool().Contains(s.Blocks[0].Addr()) {
				t.Errorf("%s: blocks %v, want one /26 of %v", n.name, s.Blocks, node.DefaultPool())
				continue
			}
			if s.TunnelAddr != s.Blocks[0].Addr() {
				t.Errorf("%s: tunnel address %v is not the first address of %v", n.name, s.TunnelAddr, s.Blocks[0])
			}
		}
		for _, p := range []*fakePod{podA, podB, podC} {
			b := c.nodes[p.node].n.Stats().Blocks
			if len(p.res.Addrs) != 1 || !b[0].Contains(p.res.Addrs[0]) {
				t.Errorf("%s: %v not in %s's block %v", p.name, p.res.Addrs, p.node, b)
			}
		}
	})

	t.Run("Q3 devices", func(t *testing.T) {
		for _, n := range c.nodes {
			s := n.n.Stats()
			l, err := n.k.Netlink.LinkByName("vxlan.calico")
			if err != nil {
				t.Fatalf("%s: %v", n.name, err)
			}
			v := l.(*netlink.Vxlan)
			eth0, _ := n.k.Netlink.LinkByName("eth0")
			if v.VxlanId != 4096 || v.Port != 4789 || v.Learning || v.MTU != 1450 || v.VtepDevIndex != eth0.Attrs().Index ||
				!v.SrcAddr.Equal(n.ip.Addr().AsSlice()) {
				t.Errorf("%s: vxlan.calico id %d port %d learning %v mtu %d dev %d local %v", n.name, v.VxlanId, v.Port, v.Learning, v.MTU, v.VtepDevIndex, v.SrcAddr)
			}
			addrs, _ := n.k.Netlink.AddrList(l, unix.AF_INET)
			if len(addrs) != 1 || addrs[0].IPNet.String() != netip.PrefixFrom(s.TunnelAddr, 32).String() {
				t.Errorf("%s: vxlan.calico addresses %v, want %v/32", n.name, addrs, s.TunnelAddr)
			}
		}
		for _, p := range []*fakePod{podA, podB, podC} {
			l, err := c.nodes[p.node].k.Netlink.LinkByName(p.res.HostIfName)
			if err != nil {
				t.Fatal(err)
			}
			a := l.Attrs()
			if a.HardwareAddr.String() != "ee:ee:ee:ee:ee:ee" || a.MTU != 1450 || len(a.Name) != 15 || !strings.HasPrefix(a.Name, "cali") {
				t.Errorf("%s: host side %s mac %s mtu %d", p.name, a.Name, a.HardwareAddr, a.MTU)
			}
		}
	})

	t.Run("Q4 veth peers point at each other", func(t *testing.T) {
		for _, p := range []*fakePod{podA, podB, podC} {
			hl, _ := c.nodes[p.node].k.Netlink.LinkByName(p.res.HostIfName)
			pl, err := p.ns.LinkByName("eth0")
			if err != nil {
				t.Fatal(err)
			}
			if hl.Attrs().ParentIndex != pl.Attrs().Index || pl.Attrs().ParentIndex != hl.Attrs().Index || hl.Type() != "veth" {
				t.Errorf("%s: host %d@if%d, pod %d@if%d", p.name, hl.Attrs().Index, hl.Attrs().ParentIndex, pl.Attrs().Index, pl.Attrs().ParentIndex)
			}
		}
	})

	t.Run("Q5 169.254.1.1 is answered with ee:ee:ee:ee:ee:ee", func(t *testing.T) {
		routes, _ := podA.ns.RouteList(nil, unix.AF_INET)
		var dflt, gw bool
		for _, r := range routes {
			dflt = dflt || ((r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(net.IPv4(169, 254, 1, 1)))
			gw = gw || (r.Dst != nil && r.Dst.String() == "169.254.1.1/32" && r.Scope == netlink.SCOPE_LINK)
		}
		if !dflt || !gw {
			t.Errorf("pod-a routes %v: want default via 169.254.1.1 and 169.254.1.1 scope link", routes)
		}
		var wire *proxyarptest.Wire
		eventually(t, "responder serves "+podA.res.HostIfName, func() error {
			if wire = w1.k.Wire(podA.res.HostIfName); wire == nil || w1.n.Stats().ARP.Interfaces < 2 {
				return fmt.Errorf("serving %d interfaces", w1.n.Stats().ARP.Interfaces)
			}
			return nil
		})
		pl, _ := podA.ns.LinkByName("eth0")
		wire.Send(proxyarptest.Request(pl.Attrs().HardwareAddr, podA.res.Addrs[0], netip.MustParseAddr("169.254.1.1")))
		frame, ok := wire.Recv(5 * time.Second)
		if !ok {
			t.Fatal("no ARP reply")
		}
		_, rep, err := proxyarptest.Parse(frame)
		if err != nil {
			t.Fatal(err)
		}
		if rep.SenderHardwareAddr.String() != "ee:ee:ee:ee:ee:ee" || rep.SenderIP != netip.MustParseAddr("169.254.1.1") {
			t.Errorf("reply: %v is at %v", rep.SenderIP, rep.SenderHardwareAddr)
		}
		if on, _ := w1.k.Netlink.Sysctl("net/ipv4/conf/" + podA.res.HostIfName + "/proxy_arp"); on != "0" {
			t.Errorf("kernel proxy_arp = %s: the answer must come from user space", on)
		}
	})

	t.Run("Q6 same node: one /32 route per pod", func(t *testing.T) {
		for _, p := range []*fakePod{podA, podB} {
			if !hasRoute(w1.k.Netlink, func(r netlink.Route) bool {
				return r.Dst != nil && r.Dst.String() == netip.PrefixFrom(p.res.Addrs[0], 32).String() &&
					r.LinkIndex == p.res.HostIndex && r.Scope == netlink.SCOPE_LINK && r.Gw == nil
			}) {
				t.Errorf("worker1: no route %v dev %s scope link", p.res.Addrs[0], p.res.HostIfName)
			}
		}
		links, _ := w1.k.Netlink.LinkList()
		for _, l := range links {
			if l.Type() == "bridge" {
				t.Errorf("bridge %s on worker1", l.Attrs().Name)
			}
		}
	})

	t.Run("Q7 other node: block via tunnel address, neighbour, FDB", func(t *testing.T) {
		s2 := w2.n.Stats()
		vx, _ := w1.k.Netlink.LinkByName("vxlan.calico")
		eventually(t, "route to worker2's block", func() error {
			if !hasRoute(w1.k.Netlink, func(r netlink.Route) bool {
				return r.Dst != nil && r.Dst.String() == s2.Blocks[0].String() && r.Gw.Equal(s2.TunnelAddr.AsSlice()) &&
					r.LinkIndex == vx.Attrs().Index && r.Flags&int(netlink.FLAG_ONLINK) != 0
			}) {
				return fmt.Errorf("no %v via %v dev vxlan.calico onlink", s2.Blocks[0], s2.TunnelAddr)
			}
			return nil
		})
		neighs, _ := w1.k.Netlink.NeighList(vx.Attrs().Index, unix.AF_INET)
		if !slices.ContainsFunc(neighs, func(n netlink.Neigh) bool {
			return n.IP.Equal(s2.TunnelAddr.AsSlice()) && n.HardwareAddr.String() == s2.TunnelMAC.String() && n.State == netlink.NUD_PERMANENT
		}) {
			t.Errorf("no permanent neighbour %v lladdr %v: %v", s2.TunnelAddr, s2.TunnelMAC, neighs)
		}
		fdb, _ := w1.k.Netlink.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
		if !slices.ContainsFunc(fdb, func(n netlink.Neigh) bool {
			return n.HardwareAddr.String() == s2.TunnelMAC.String() && n.IP.Equal(w2.ip.Addr().AsSlice()) && n.State == netlink.NUD_PERMANENT
		}) {
			t.Errorf("no permanent FDB %v dst %v: %v", s2.TunnelMAC, w2.ip.Addr(), fdb)
		}
		// worker1's own block is a blackhole: a missing pod is not routed
		// back out.
		if !hasRoute(w1.k.Netlink, func(r netlink.Route) bool {
			return r.Type == unix.RTN_BLACKHOLE && r.Dst.String() == w1.n.Stats().Blocks[0].String()
		}) {
			t.Error("worker1: no blackhole for its own block")
		}
	})

	t.Run("Q8 masquerade of traffic leaving the pool", func(t *testing.T) {
		var rules string
		eventually(t, "nat rules", func() error {
			var err error
			rules, err = w1.n.NATRules(context.Background())
			if err != nil {
				return err
			}
			if !strings.Contains(rules, "masquerade") || !strings.Contains(rules, node.DefaultPool().String()) {
				return fmt.Errorf("no masquerade for %v in\n%s", node.DefaultPool(), rules)
			}
			for _, p := range []*fakePod{podA, podB} {
				if !strings.Contains(rules, p.res.Addrs[0].String()) {
					return fmt.Errorf("workload guard lacks %s %v in\n%s", p.name, p.res.Addrs[0], rules)
				}
			}
			for _, peer := range []string{"10.4.7.60", "10.4.7.62"} {
				if !strings.Contains(rules, peer) {
					return fmt.Errorf("VXLAN allow-list lacks %s in\n%s", peer, rules)
				}
			}
			return nil
		})
	})

	t.Run("explain walks the seed's questions on kernel state", func(t *testing.T) {
		rules, err := w1.n.NATRules(context.Background())
		must(t, err)
		probe := func(ctx context.Context) (net.HardwareAddr, error) {
			w := w1.k.Wire(podA.res.HostIfName)
			pl, _ := podA.ns.LinkByName("eth0")
			w.Send(proxyarptest.Request(pl.Attrs().HardwareAddr, podA.res.Addrs[0], netip.MustParseAddr("169.254.1.1")))
			f, ok := w.Recv(5 * time.Second)
			if !ok {
				return nil, fmt.Errorf("no reply")
			}
			_, rep, err := proxyarptest.Parse(f)
			if err != nil {
				return nil, err
			}
			return rep.SenderHardwareAddr, nil
		}
		for _, tc := range []struct {
			dest  netip.Addr
			steps []string
		}{
			{podB.res.Addrs[0], []string{"same-node route"}},
			{podC.res.Addrs[0], []string{"block route via tunnel", "tunnel neighbour", "FDB"}},
			{netip.MustParseAddr("198.51.100.2"), []string{"route to destination", "masquerade"}},
		} {
			r := explain.Pod(context.Background(), explain.Input{
				Host: w1.k.Netlink, Pod: podA.ns, PodAddr: podA.res.Addrs[0], Dest: tc.dest,
				Pools: []netip.Prefix{node.DefaultPool()}, NATRules: rules,
				ProxyARPSysctl: w1.k.Netlink.Sysctl, ProbeARP: probe,
			})
			var text strings.Builder
			r.WriteText(&text)
			if !r.OK() {
				t.Errorf("pod-a -> %v:\n%s", tc.dest, text.String())
			}
			want := append([]string{"host route to pod", "host veth", "proxy ARP mode", "veth peer index", "pod address",
				"pod default route", "pod gateway route", "169.254.1.1 answer"}, tc.steps...)
			var got []string
			for _, ch := range r.Checks {
				got = append(got, ch.Step)
			}
			if !slices.Equal(got, want) {
				t.Errorf("pod-a -> %v: steps %q, want %q\n%s", tc.dest, got, want, text.String())
			}
		}
		// A broken path is named: worker2's FDB entry gone.
		vx, _ := w1.k.Netlink.LinkByName("vxlan.calico")
		fdb, _ := w1.k.Netlink.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
		for _, f := range fdb {
			if f.HardwareAddr.String() == w2.n.Stats().TunnelMAC.String() {
				must(t, w1.k.Netlink.NeighDel(&f))
			}
		}
		r := explain.Pod(context.Background(), explain.Input{Host: w1.k.Netlink, PodAddr: podA.res.Addrs[0], Dest: podC.res.Addrs[0]})
		if f := r.Failed(); len(f) != 1 || f[0].Step != "FDB" {
			t.Errorf("with the FDB entry deleted: failed %v", f)
		}
		// The node puts it back on its next sync (a link event or the
		// interval); a restart below checks nothing was left broken.
		w1.n.Poke()
		eventually(t, "FDB restored", func() error {
			if f := explain.Pod(context.Background(), explain.Input{Host: w1.k.Netlink, PodAddr: podA.res.Addrs[0], Dest: podC.res.Addrs[0]}).Failed(); len(f) > 0 {
				return fmt.Errorf("%v", f)
			}
			return nil
		})
	})

	t.Run("a flushed ruleset is restored at once", func(t *testing.T) {
		before := w1.n.Stats().NATRestores
		w1.k.NAT.FlushRuleset() // as `nft flush ruleset` would, from the same fake kernel
		must(t, w1.k.NAT.Flush())
		eventually(t, "nat tables restored", func() error {
			rules, err := w1.n.NATRules(context.Background())
			if err != nil || !strings.Contains(rules, "masquerade") {
				return fmt.Errorf("rules %q, err %v", rules, err)
			}
			if got := w1.n.Stats().NATRestores; got != before+1 {
				return fmt.Errorf("NATRestores %d, want %d", got, before+1)
			}
			return nil
		})
	})

	t.Run("restart writes nothing and keeps the peers' routes", func(t *testing.T) {
		before := c.m.Writes()
		w1.stop() // graceful by default: the announcement stays
		s2 := w2.n.Stats()
		if !slices.Contains(s2.Peers, "worker1") {
			t.Fatalf("worker2 dropped worker1 on a graceful stop: %v", s2.Peers)
		}
		c.start("worker1", nil)
		if fs := w1.firstSync(); fs.Writes != 0 || fs.Err != nil {
			t.Errorf("first sync after restart: %d writes, err %v", fs.Writes, fs.Err)
		}
		if got := c.m.Writes() - before; got != 0 {
			t.Errorf("restart made %d kernel writes", got)
		}
	})

	t.Run("node death and return", func(t *testing.T) {
		s2 := w2.n.Stats()
		vx, _ := w1.k.Netlink.LinkByName("vxlan.calico")
		toW2 := func(r netlink.Route) bool {
			return r.Dst != nil && r.Dst.String() == s2.Blocks[0].String() && r.LinkIndex == vx.Attrs().Index
		}
		w2.stop() // dies: its record is left to expire after the hold time
		eventually(t, "worker2 withdrawn on worker1", func() error {
			if hasRoute(w1.k.Netlink, toW2) || slices.Contains(w1.n.Stats().Peers, "worker2") {
				return fmt.Errorf("still routed: peers %v", w1.n.Stats().Peers)
			}
			return nil
		})
		fdb, _ := w1.k.Netlink.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
		if slices.ContainsFunc(fdb, func(n netlink.Neigh) bool { return n.HardwareAddr.String() == s2.TunnelMAC.String() }) {
			t.Errorf("worker2's FDB entry left behind: %v", fdb)
		}
		c.start("worker2", nil)
		if got := w2.n.Stats(); got.TunnelAddr != s2.TunnelAddr || !slices.Equal(got.Blocks, s2.Blocks) {
			t.Errorf("worker2 came back with %v %v, had %v %v", got.TunnelAddr, got.Blocks, s2.TunnelAddr, s2.Blocks)
		}
		eventually(t, "worker2 routed again", func() error {
			if !hasRoute(w1.k.Netlink, toW2) {
				return fmt.Errorf("no route to %v", s2.Blocks[0])
			}
			return nil
		})
	})

	t.Run("withdraw on stop removes the node at once", func(t *testing.T) {
		m := c.nodes["master"]
		m.n.SetWithdrawOnStop(true)
		m.stop()
		eventually(t, "master withdrawn", func() error {
			for _, n := range []*fakeNode{w1, w2} {
				if slices.Contains(n.n.Stats().Peers, "master") {
					return fmt.Errorf("%s still has master", n.name)
				}
			}
			return nil
		})
	})
}

func hasRoute(k *netlinktest.Kernel, f func(netlink.Route) bool) bool {
	routes, _ := k.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	return slices.ContainsFunc(routes, f)
}

func testLogger(t *testing.T, name string) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", name)
}
