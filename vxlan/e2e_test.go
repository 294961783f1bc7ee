//go:build linux

package vxlan_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/reflector"
	"github.com/tabbynet/tabby/veth"
	"github.com/tabbynet/tabby/vxlan"
)

// The seed's Q7 end to end, on the real kernel: three node namespaces on
// one underlay bridge, a pod on each (plumbed by veth), peers distributed by
// the reflector through the datastore and programmed by vxlan.Manager.
// This test lives in package vxlan_test: the library packages do not
// import each other, only this test wires them together (as the examples
// do).

// e2eNode is one node: its namespace, pod, manager and reflector loop.
type e2eNode struct {
	name   string
	ns     *kerneltest.NS
	pod    *kerneltest.NS
	podIP  netip.Addr
	block  netip.Prefix
	tunnel netip.Addr
	under  netip.Prefix
	mgr    *vxlan.Manager
	ann    *reflector.Announcer
	stop   context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	syncErr error
}

// e2eCluster builds the underlay: a switch namespace whose bridge br0 also
// routes between 10.4.7.0/24 and 192.0.2.0/24 (its addresses .1), and
// nodes with the given underlay addresses, each with a default route via
// its subnet's .1 (kernel proxy ARP for 169.254.1.1 needs a route out).
func e2eCluster(t *testing.T, store func() datastore.Store, mode vxlan.Mode, hold time.Duration, unders ...string) []*e2eNode {
	t.Helper()
	ctx := context.Background()
	sw := kerneltest.NewNS(t, "sw")
	if err := sw.Handle.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}); err != nil {
		t.Fatal(err)
	}
	br := sw.Link(t, "br0")
	if err := sw.Handle.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	sw.AddAddr(t, "br0", "10.4.7.1/24")
	sw.AddAddr(t, "br0", "192.0.2.1/24")
	sw.SetSysctl(t, "net/ipv4/ip_forward", "1")

	var nodes []*e2eNode
	for i, u := range unders {
		n := &e2eNode{
			name:  fmt.Sprintf("node%d", i+1),
			under: netip.MustParsePrefix(u),
			block: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i + 1), 0}), 26),
		}
		n.tunnel = n.block.Addr()
		n.podIP = n.block.Addr().Next().Next().Next().Next().Next() // .5
		n.ns = kerneltest.NewNS(t, "node")
		port := fmt.Sprintf("p%d", i+1)
		kerneltest.Veth(t, n.ns, "eth0", sw, port)
		if err := sw.Handle.LinkSetMaster(sw.Link(t, port), br); err != nil {
			t.Fatal(err)
		}
		n.ns.AddAddr(t, "eth0", u)
		gw := n.under.Masked().Addr().Next()
		n.ns.AddRoute(t, &netlink.Route{Dst: kerneltest.IPNet("0.0.0.0/0"), Gw: kerneltest.IP(gw)})
		n.ns.SetSysctl(t, "net/ipv4/ip_forward", "1")

		// The pod, plumbed by veth.
		n.pod = kerneltest.NewNS(t, "pod")
		p, err := veth.New(n.ns.Handle, &veth.Config{Sysctl: veth.SysctlAt(n.ns.Path)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Setup(ctx, veth.Pod{Key: "default.pod-" + n.name, NetNS: n.pod.Path, Addrs: []netip.Prefix{netip.PrefixFrom(n.podIP, 32)}}); err != nil {
			t.Fatal(err)
		}

		n.mgr, err = vxlan.New(n.ns.Handle, &vxlan.Config{
			Parent: "eth0", LocalAddr: n.under, TunnelAddr: n.tunnel, NodeName: n.name, Mode: mode,
			Namespace: n.ns.Path,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.mgr.SetLocalBlocks([]netip.Prefix{n.block}); err != nil {
			t.Fatal(err)
		}
		if err := n.mgr.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		n.start(t, store, hold)
		nodes = append(nodes, n)
	}
	return nodes
}

// start announces the node and follows its peers into the manager.
func (n *e2eNode) start(t *testing.T, store func() datastore.Store, hold time.Duration) {
	t.Helper()
	r, err := reflector.New(store(), &reflector.Config{HoldTime: hold})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stop, n.done = cancel, make(chan struct{})
	n.ann, err = r.Announce(ctx, reflector.Announcement{
		Node: n.name, NodeIP: n.under.Addr(), TunnelIP: n.tunnel, TunnelMAC: n.mgr.MAC(),
		Blocks: []netip.Prefix{n.block},
	})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := r.Watch(ctx, n.name)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(n.done)
		for s := range snaps {
			peers := make([]vxlan.Peer, 0, len(s.Peers))
			for _, a := range s.Peers {
				peers = append(peers, vxlan.Peer{Name: a.Node, NodeIP: a.NodeIP, TunnelIP: a.TunnelIP, TunnelMAC: a.TunnelMAC, Blocks: a.Blocks, Addrs: a.Addrs})
			}
			err := n.mgr.SetPeers(peers)
			if err == nil {
				err = n.mgr.Sync(ctx)
			}
			n.mu.Lock()
			n.syncErr = err
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { n.kill(false) })
}

// kill stops the node's agent; crash=true leaves its announcement behind
// (no withdrawal), as a node that dies does.
func (n *e2eNode) kill(crash bool) {
	if n.stop == nil {
		return
	}
	_ = n.ann.Stop(context.Background(), crash)
	n.stop()
	<-n.done
	n.stop = nil
}

// routeTo reports whether n has a route for dst with tabby's protocol.
func (n *e2eNode) routeTo(t *testing.T, dst netip.Prefix) (netlink.Route, bool) {
	t.Helper()
	rs, err := n.ns.Handle.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: vxlan.DefaultRouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Dst != nil && r.Dst.String() == dst.String() && r.Type == 1 {
			return r, true
		}
	}
	return netlink.Route{}, false
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool, dump func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v\n%s", what, d, dump())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping pings from the pod of a to the pod of b while capturing on
// capNode's underlay, and returns the frames.
func ping(t *testing.T, a, b, capNode *e2eNode) []kerneltest.Frame {
	t.Helper()
	c, err := capNode.ns.StartCapture("eth0")
	if err != nil {
		t.Fatal(err)
	}
	var perr error
	for range 5 { // the first echo may race the last Sync of the peers
		if _, perr = a.pod.Ping(b.podIP, 2*time.Second); perr == nil {
			break
		}
	}
	frames, cerr := c.Stop()
	if perr != nil {
		t.Fatalf("pod %s -> pod %s: %v\nnode %s:\n%s\nnode %s:\n%s", a.podIP, b.podIP, perr, a.name, a.ns.Dump(), b.name, b.ns.Dump())
	}
	if cerr != nil {
		t.Fatal(cerr)
	}
	return frames
}

func e2eWaitConverged(t *testing.T, nodes []*e2eNode) {
	t.Helper()
	for _, n := range nodes {
		for _, o := range nodes {
			if o == n {
				continue
			}
			waitFor(t, n.name+" route to "+o.name, 20*time.Second, func() bool { _, ok := n.routeTo(t, o.block); return ok }, n.ns.Dump)
		}
	}
}

func TestKernelE2EAlways(t *testing.T) {
	kerneltest.Require(t)
	store := e2eStore(t)
	hold := 1500 * time.Millisecond
	nodes := e2eCluster(t, store, vxlan.ModeAlways, hold, "10.4.7.61/24", "10.4.7.62/24", "10.4.7.63/24")
	e2eWaitConverged(t, nodes)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	// Q7: 10.244.1.5 on node1 reaches 10.244.3.5 on node3, encapsulated.
	frames := ping(t, n1, n3, n3)
	var vx []string
	for _, f := range frames {
		if f.VXLAN && f.Src == n1.under.Addr() && f.Dst == n3.under.Addr() && f.DstPort == 4789 && f.VNI == 4096 &&
			f.InnerSrc == n1.podIP && f.InnerDst == n3.podIP && f.InnerProto == 1 {
			vx = append(vx, f.String())
		}
		if !f.VXLAN && (f.Src == n1.podIP || f.Dst == n3.podIP) {
			t.Errorf("unencapsulated pod traffic on the underlay: %s", f)
		}
	}
	if len(vx) == 0 {
		t.Fatalf("no VXLAN frame (UDP 4789, VNI 4096) from node1 to node3 captured: %v", frames)
	}
	t.Logf("captured on node3 eth0: %s", vx[0])

	// node1's view of node3, as in the seed.
	r, _ := n1.routeTo(t, n3.block)
	if r.Gw.String() != n3.tunnel.String() || r.LinkIndex != n1.ns.Link(t, "vxlan.calico").Attrs().Index || r.Flags&int(netlink.FLAG_ONLINK) == 0 {
		t.Fatalf("route to node3: %v", r)
	}
	checkNeighFDB(t, n1, n3, true)

	// A node that dies (no withdrawal) is withdrawn on the others within its
	// hold time (the deadline is generous: no timing assertion).
	died := time.Now()
	n3.kill(true)
	for _, n := range []*e2eNode{n1, n2} {
		waitFor(t, n.name+" withdraws node3", 20*hold, func() bool { _, ok := n.routeTo(t, n3.block); return !ok }, n.ns.Dump)
		checkNeighFDB(t, n, n3, false)
	}
	t.Logf("node3 withdrawn on node1 and node2 %v after it died (hold %v)", time.Since(died).Round(10*time.Millisecond), hold)
	// The survivors still reach each other; a clean shutdown withdraws at
	// once.
	ping(t, n1, n2, n2)
	n2.kill(false)
	waitFor(t, "node1 withdraws node2", 20*time.Second, func() bool { _, ok := n1.routeTo(t, n2.block); return !ok }, n1.ns.Dump)
	for _, n := range nodes {
		n.mu.Lock()
		if n.syncErr != nil {
			t.Errorf("%s: last sync: %v", n.name, n.syncErr)
		}
		n.mu.Unlock()
	}
}

// checkNeighFDB checks that n holds (or not) the permanent neighbour and
// FDB entry for peer p.
func checkNeighFDB(t *testing.T, n, p *e2eNode, want bool) {
	t.Helper()
	dev := n.ns.Link(t, "vxlan.calico")
	ns, err := n.ns.Handle.NeighList(dev.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	hasN := slices.ContainsFunc(ns, func(x netlink.Neigh) bool {
		return x.IP.String() == p.tunnel.String() && x.HardwareAddr.String() == p.mgr.MAC().String() && x.State&netlink.NUD_PERMANENT != 0
	})
	fs, err := n.ns.Handle.NeighList(dev.Attrs().Index, 7 /* AF_BRIDGE */)
	if err != nil {
		t.Fatal(err)
	}
	hasF := slices.ContainsFunc(fs, func(x netlink.Neigh) bool {
		return x.IP.String() == p.under.Addr().String() && x.HardwareAddr.String() == p.mgr.MAC().String()
	})
	if hasN != want || hasF != want {
		t.Fatalf("%s: neighbour for %s %v, fdb %v, want %v\n%s", n.name, p.name, hasN, hasF, want, n.ns.Dump())
	}
}

func TestKernelE2ECrossSubnet(t *testing.T) {
	kerneltest.Require(t)
	store := e2eStore(t)
	nodes := e2eCluster(t, store, vxlan.ModeCrossSubnet, 5*time.Second, "10.4.7.61/24", "10.4.7.62/24", "192.0.2.63/24")
	e2eWaitConverged(t, nodes)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	// Same subnet: a direct route via node2's underlay address, no tunnel.
	r, _ := n1.routeTo(t, n2.block)
	if r.Gw.String() != "10.4.7.62" || r.LinkIndex != n1.ns.Link(t, "eth0").Attrs().Index {
		t.Fatalf("route to node2: %v", r)
	}
	checkNeighFDB(t, n1, n2, false)
	frames := ping(t, n1, n2, n2)
	direct := 0
	for _, f := range frames {
		if f.VXLAN || f.DstPort == 4789 {
			t.Errorf("encapsulated traffic between same-subnet nodes: %s", f)
		}
		if f.Src == n1.podIP && f.Dst == n2.podIP && f.Proto == 1 {
			direct++
		}
	}
	if direct == 0 {
		t.Fatalf("no direct ICMP from pod1 to pod2 on node2's underlay: %v", frames)
	}

	// Other subnet (node3 behind the router): encapsulated.
	checkNeighFDB(t, n1, n3, true)
	frames = ping(t, n1, n3, n3)
	if !slices.ContainsFunc(frames, func(f kerneltest.Frame) bool {
		return f.VXLAN && f.VNI == 4096 && f.InnerSrc == n1.podIP && f.InnerDst == n3.podIP
	}) {
		var s []string
		for _, f := range frames {
			s = append(s, f.String())
		}
		t.Fatalf("no VXLAN frame node1 -> node3:\n%s", strings.Join(s, "\n"))
	}
}
