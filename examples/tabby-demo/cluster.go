//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/examples/internal/cni"
	"github.com/tabbynet/tabby/examples/internal/nettools"
	"github.com/tabbynet/tabby/internal/sysctl"
	"github.com/tabbynet/tabby/node"
	"github.com/vishvananda/netlink"
)

// Addresses of the demo (seed topology).
var (
	underlay    = netip.MustParsePrefix("10.4.7.0/24")
	routerIP    = netip.MustParseAddr("10.4.7.1")
	otherSubnet = netip.MustParsePrefix("192.0.2.0/24") // worker2 in CrossSubnet mode
	routerIP2   = netip.MustParseAddr("192.0.2.1")
	inetNet     = netip.MustParsePrefix("198.51.100.0/24")
	routerInet  = netip.MustParseAddr("198.51.100.1")
	internetIP  = netip.MustParseAddr("198.51.100.2")
	clusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	echoPort    = uint16(7777)
)

type nodeSpec struct {
	name string
	ip   netip.Prefix
}

type podSpec struct {
	name, node string
}

var pods = []podSpec{{"pod-a", "worker1"}, {"pod-b", "worker1"}, {"pod-c", "worker2"}}

type host struct {
	spec   nodeSpec
	ns     *nettools.NS
	agent  *node.Node
	plugin *cni.Plugin
	state  string
	cancel context.CancelFunc
	done   chan error
	onSync func(node.SyncInfo) // tests
	kernel *node.Kernel
}

type pod struct {
	spec podSpec
	ns   *nettools.NS
	ip   netip.Addr
	id   string
}

// cluster is the demo's world: namespaces, agents, pods.
type cluster struct {
	opt    options
	out    io.Writer
	log    *slog.Logger
	tmp    string
	store  datastore.Store
	names  []string // every namespace created, for removal
	sw     *nettools.NS
	router *nettools.NS
	inet   *nettools.NS
	nodes  []*host
	pods   []*pod
	echo   net.PacketConn
	mu     sync.Mutex
}

func (c *cluster) nsName(s string) string { return c.opt.prefix + s }

// allNames lists the namespaces the demo makes, for removing a leftover.
func (c *cluster) allNames() []string {
	n := []string{"switch", "router", "internet", "master", "worker1", "worker2"}
	for _, p := range pods {
		n = append(n, p.name)
	}
	for i := range n {
		n[i] = c.nsName(n[i])
	}
	return n
}

func (c *cluster) newNS(short string) (*nettools.NS, error) {
	n, err := nettools.NewNS(c.nsName(short))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.names = append(c.names, n.Name)
	c.mu.Unlock()
	return n, nil
}

// removeLeftovers deletes namespaces a crashed earlier run left.
func (c *cluster) removeLeftovers() error {
	var errs []error
	for _, n := range c.allNames() {
		if _, err := os.Stat(filepath.Join(nettools.NetnsDir, n)); err == nil {
			fmt.Fprintf(c.out, "removing leftover namespace %s\n", n)
			errs = append(errs, nettools.DeleteNS(n))
		}
	}
	return errors.Join(errs...)
}

// teardown stops the agents and removes every namespace.
func (c *cluster) teardown() {
	for _, n := range c.nodes {
		if n.cancel != nil {
			n.cancel()
			select {
			case <-n.done:
			case <-time.After(10 * time.Second):
			}
		}
	}
	if c.echo != nil {
		c.echo.Close()
	}
	for _, p := range c.pods {
		p.ns.Close()
	}
	for _, n := range c.nodes {
		n.ns.Close()
	}
	for _, n := range []*nettools.NS{c.sw, c.router, c.inet} {
		if n != nil {
			n.Close()
		}
	}
	c.mu.Lock()
	names := c.names
	c.mu.Unlock()
	for _, n := range names {
		if err := nettools.DeleteNS(n); err != nil {
			fmt.Fprintf(c.out, "cleanup: %v\n", err)
		}
	}
	if c.store != nil {
		c.store.Close()
	}
	if c.tmp != "" {
		os.RemoveAll(c.tmp)
	}
}

// link connects a (name an) with b (name bn), both up.
func link(a *nettools.NS, an string, b *nettools.NS, bn string) error {
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: an}, PeerName: bn, PeerNamespace: netlink.NsFd(int(b.Handle))}
	if err := a.NL.LinkAdd(v); err != nil {
		return fmt.Errorf("veth %s/%s--%s/%s: %w", a.Name, an, b.Name, bn, err)
	}
	for _, x := range []struct {
		ns *nettools.NS
		n  string
	}{{a, an}, {b, bn}} {
		l, err := x.ns.NL.LinkByName(x.n)
		if err == nil {
			err = x.ns.NL.LinkSetUp(l)
		}
		if err != nil {
			return fmt.Errorf("%s: up %s: %w", x.ns.Name, x.n, err)
		}
	}
	return nil
}

func addAddr(n *nettools.NS, dev string, p netip.Prefix) error {
	l, err := n.NL.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", n.Name, dev, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	if err := n.NL.AddrAdd(l, a); err != nil {
		return fmt.Errorf("%s: addr %v on %s: %w", n.Name, p, dev, err)
	}
	return nil
}

func defaultVia(n *nettools.NS, gw netip.Addr) error {
	if err := n.NL.RouteAdd(&netlink.Route{Gw: gw.AsSlice()}); err != nil {
		return fmt.Errorf("%s: default via %v: %w", n.Name, gw, err)
	}
	return nil
}

func (c *cluster) nodeSpecs() []nodeSpec {
	w2 := netip.MustParsePrefix("10.4.7.62/24")
	if c.opt.mode == node.VXLANCrossSubnet {
		w2 = netip.MustParsePrefix("192.0.2.62/24")
	}
	return []nodeSpec{
		{"master", netip.MustParsePrefix("10.4.7.60/24")},
		{"worker1", netip.MustParsePrefix("10.4.7.61/24")},
		{"worker2", w2},
	}
}

// build makes the underlay: a switch (bridge) for the nodes, a router to
// the "internet" host and, in CrossSubnet mode, to worker2's subnet.
func (c *cluster) build() error {
	var err error
	if c.sw, err = c.newNS("switch"); err != nil {
		return err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := c.sw.NL.LinkAdd(br); err != nil {
		return fmt.Errorf("switch bridge: %w", err)
	}
	brl, err := c.sw.NL.LinkByName("br0")
	if err != nil {
		return err
	}
	if err := c.sw.NL.LinkSetUp(brl); err != nil {
		return err
	}
	port := func(name string) error {
		l, err := c.sw.NL.LinkByName(name)
		if err != nil {
			return err
		}
		return c.sw.NL.LinkSetMaster(l, brl)
	}
	if c.router, err = c.newNS("router"); err != nil {
		return err
	}
	if err := link(c.router, "eth0", c.sw, "router"); err != nil {
		return err
	}
	if err := port("router"); err != nil {
		return err
	}
	if err := addAddr(c.router, "eth0", netip.PrefixFrom(routerIP, 24)); err != nil {
		return err
	}
	if c.inet, err = c.newNS("internet"); err != nil {
		return err
	}
	if err := link(c.router, "eth1", c.inet, "eth0"); err != nil {
		return err
	}
	if err := addAddr(c.router, "eth1", netip.PrefixFrom(routerInet, 24)); err != nil {
		return err
	}
	if err := addAddr(c.inet, "eth0", netip.PrefixFrom(internetIP, 24)); err != nil {
		return err
	}
	if err := defaultVia(c.inet, routerInet); err != nil {
		return err
	}
	if err := (sysctl.NS{Path: c.router.Path}).SetSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	for _, s := range c.nodeSpecs() {
		ns, err := c.newNS(s.name)
		if err != nil {
			return err
		}
		gw := routerIP
		if underlay.Contains(s.ip.Addr()) {
			if err := link(ns, "eth0", c.sw, s.name); err != nil {
				return err
			}
			if err := port(s.name); err != nil {
				return err
			}
		} else {
			// Another subnet, behind the router.
			if err := link(ns, "eth0", c.router, "eth2"); err != nil {
				return err
			}
			if err := addAddr(c.router, "eth2", netip.PrefixFrom(routerIP2, 24)); err != nil {
				return err
			}
			gw = routerIP2
		}
		if err := addAddr(ns, "eth0", s.ip); err != nil {
			return err
		}
		if err := defaultVia(ns, gw); err != nil {
			return err
		}
		st := filepath.Join(c.tmp, s.name)
		if err := os.MkdirAll(st, 0o755); err != nil {
			return err
		}
		c.nodes = append(c.nodes, &host{spec: s, ns: ns, state: st})
	}
	return nil
}

type nopClose struct{ datastore.Store }

func (nopClose) Close() error { return nil }

// startAgent runs n's agent (again).
func (c *cluster) startAgent(ctx context.Context, n *host) error {
	arp, err := node.ParseProxyARPMode(c.opt.proxyARP)
	if err != nil {
		return err
	}
	k, err := node.OpenKernel(n.ns.Path, "")
	if err != nil {
		return err
	}
	a, err := node.New(node.Config{
		Name: n.spec.name, NodeIP: n.spec.ip, Uplink: "eth0",
		Pools: []netip.Prefix{clusterCIDR}, BlockSize: 26, VXLANMode: c.opt.mode,
		NATOutgoing: true, ProxyARP: arp, HoldTime: c.opt.holdTime,
		ResyncInterval: 30 * time.Second, StateDir: n.state, Kernel: k,
		Store: c.store, Logger: c.log.With("node", n.spec.name), OnSync: n.onSync,
	})
	if err != nil {
		k.Close()
		return err
	}
	n.agent, n.kernel = a, k
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	n.cancel, n.done = cancel, done
	go func() { done <- a.Run(actx) }()
	return nil
}

// stopAgent stops n's agent: withdrawn, or kept for a graceful restart.
func (c *cluster) stopAgent(n *host, graceful bool) error {
	n.agent.SetWithdrawOnStop(!graceful)
	n.cancel()
	n.cancel = nil
	select {
	case err := <-n.done:
		n.kernel.Close()
		return err
	case <-time.After(10 * time.Second):
		return fmt.Errorf("agent %s did not stop", n.spec.name)
	}
}

// startAgents runs one agent per node and waits until every agent is
// ready and sees the two others.
func (c *cluster) startAgents(ctx context.Context) error {
	for _, n := range c.nodes {
		if err := c.startAgent(ctx, n); err != nil {
			return err
		}
		env := cni.Env{
			Host: n.ns.NL, Sysctl: sysctl.NS{Path: n.ns.Path},
			OpenStore: func(context.Context, string) (datastore.Store, error) { return nopClose{c.store}, nil },
			Hostname:  func() (string, error) { return n.spec.name, nil },
			Stderr:    io.Discard, Timeout: 20 * time.Second,
		}
		n.plugin = cni.New(env)
	}
	for _, n := range c.nodes {
		if err := c.waitStarted(ctx, n); err != nil {
			return err
		}
	}
	return c.waitFor(ctx, 20*time.Second, "every agent sees 2 peers", func() bool {
		for _, n := range c.nodes {
			if n.agent.Ready() != nil || len(n.agent.Stats().Peers) != len(c.nodes)-1 {
				return false
			}
		}
		return true
	})
}

func (c *cluster) waitStarted(ctx context.Context, n *host) error {
	select {
	case <-n.agent.Started():
		return nil
	case err := <-n.done:
		return fmt.Errorf("agent %s: %w", n.spec.name, err)
	case <-time.After(20 * time.Second):
		return fmt.Errorf("agent %s: not ready after 20s", n.spec.name)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *cluster) waitFor(ctx context.Context, d time.Duration, what string, f func() bool) error {
	end := time.Now().Add(d)
	for !f() {
		if time.Now().After(end) {
			return fmt.Errorf("timed out waiting until %s", what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func (c *cluster) host(name string) *host {
	for _, n := range c.nodes {
		if n.spec.name == name {
			return n
		}
	}
	return nil
}

// addPods creates each pod's namespace and runs CNI ADD as a runtime does.
func (c *cluster) addPods() error {
	for _, ps := range pods {
		p, err := c.addPod(ps)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "  CNI ADD default/%s on %s -> %v/32 (interface %s)\n", ps.name, ps.node, p.ip, hostIf(p))
	}
	return nil
}

// addPod runs CNI ADD for one new pod.
func (c *cluster) addPod(ps podSpec) (*pod, error) {
	{
		n := c.host(ps.node)
		ns, err := c.newNS(ps.name)
		if err != nil {
			return nil, err
		}
		p := &pod{spec: ps, ns: ns, id: "demo-" + ps.name}
		c.pods = append(c.pods, p)
		conf, _ := json.Marshal(map[string]any{
			"cniVersion": "1.0.0", "name": "tabby-demo", "type": cni.PluginType,
			"nodeName": n.spec.name, "stateDir": n.state, "proxyARP": c.opt.proxyARP,
			"datastore": c.opt.datastoreURL(),
			"ipam":      map[string]any{"type": cni.IPAMType, "pools": []string{clusterCIDR.String()}, "blockSize": 26},
		})
		r, err := n.plugin.Add(&skel.CmdArgs{
			ContainerID: p.id, Netns: ns.Path, IfName: "eth0",
			Args:      "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + ps.name,
			StdinData: conf,
		})
		if err != nil {
			return p, fmt.Errorf("CNI ADD %s on %s: %w", ps.name, ps.node, err)
		}
		res, err := current.NewResultFromResult(r)
		if err != nil || len(res.IPs) == 0 {
			return p, fmt.Errorf("CNI ADD %s: result %v: %v", ps.name, r, err)
		}
		p.ip, _ = netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
		return p, nil
	}
}

func (c *cluster) pod(name string) *pod {
	for _, p := range c.pods {
		if p.spec.name == name {
			return p
		}
	}
	return nil
}
