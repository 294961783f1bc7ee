//go:build linux

package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore/etcd/etcdtest"
	"github.com/tabbynet/tabby/examples/internal/cni"
	"github.com/tabbynet/tabby/examples/internal/nettools"
	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/node"
	"golang.org/x/sys/unix"
)

func newCluster(t *testing.T, opt options) *cluster {
	t.Helper()
	var out bytes.Buffer
	return newBenchCluster(t, opt, &out)
}

func newBenchCluster(t testing.TB, opt options, out interface {
	Write([]byte) (int, error)
	String() string
}) *cluster {
	t.Helper()
	kerneltest.Require(t)
	opt.prefix = kerneltest.UniqueName("tabby-demo-t") + "-"
	if opt.mode == 0 {
		opt.mode = node.VXLANAlways
	}
	if opt.holdTime == 0 {
		opt.holdTime = 30 * time.Second
	}
	c, err := setup(context.Background(), opt, out)
	t.Cleanup(func() {
		c.teardown()
		if left, _ := nettools.ListNS(opt.prefix); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	if err != nil {
		t.Fatalf("setup: %v\n%s", err, out.String())
	}
	return c
}

// gwRoutes lists n's routes through a gateway with tabby's protocol
// (peer blocks), as "dst via gw".
func gwRoutes(t *testing.T, n *host) []string { return gwRoutesB(t, n) }

func gwRoutesB(t testing.TB, n *host) []string {
	rs, err := n.ns.NL.RouteList(nil, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		if r.Protocol == 80 && r.Gw != nil {
			out = append(out, r.Dst.String()+" via "+r.Gw.String())
		}
	}
	return out
}

// TestGracefulRestartLosesNothing restarts both workers' agents (graceful
// restart) while pod-a pings pod-c across nodes: no echo is lost, and the
// first sync of each new agent makes zero kernel writes.
func TestGracefulRestartLosesNothing(t *testing.T) {
	c := newCluster(t, options{})
	a, b := c.pod("pod-a"), c.pod("pod-c")
	if _, err := nettools.Ping(a.ns.Path, b.ip, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var sent, recv int
	var perr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sent, recv, perr = nettools.PingStream(a.ns.Path, b.ip, 10*time.Millisecond, stop)
	}()
	time.Sleep(200 * time.Millisecond)
	for _, name := range []string{"worker2", "worker1"} {
		n := c.host(name)
		before := gwRoutes(t, n)
		if err := c.stopAgent(n, true); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		first := -1
		n.onSync = func(s node.SyncInfo) {
			mu.Lock()
			defer mu.Unlock()
			if first < 0 {
				first = s.Writes
				if s.Err != nil {
					t.Errorf("%s: first sync: %v", name, s.Err)
				}
			}
		}
		if err := c.startAgent(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		if err := c.waitStarted(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if first != 0 {
			t.Errorf("%s: the first sync after a restart made %d kernel writes, want 0", name, first)
		}
		mu.Unlock()
		if after := gwRoutes(t, n); strings.Join(after, ",") != strings.Join(before, ",") {
			t.Errorf("%s: routes changed over the restart: %v -> %v", name, before, after)
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if perr != nil {
		t.Fatal(perr)
	}
	t.Logf("pod-a -> pod-c across two agent restarts: %d sent, %d received", sent, recv)
	if sent < 20 || recv != sent {
		t.Errorf("lost %d of %d echoes across the restarts", sent-recv, sent)
	}
}

// TestPeerRemovedWhileDownIsCleanedAtStart: worker1's agent is down
// (graceful, its kernel state stays) while the master leaves the cluster;
// the new worker1 agent removes the master's route, neighbour and FDB
// entry in its first sync.
func TestPeerRemovedWhileDownIsCleanedAtStart(t *testing.T) {
	c := newCluster(t, options{})
	w1, w2, m := c.host("worker1"), c.host("worker2"), c.host("master")
	ms := m.agent.Stats()
	masterRoute := ms.Blocks[0].String() + " via " + ms.TunnelAddr.String()
	if !strings.Contains(strings.Join(gwRoutes(t, w1), ","), masterRoute) {
		t.Fatalf("worker1 has no route %s: %v", masterRoute, gwRoutes(t, w1))
	}
	if err := c.stopAgent(w1, true); err != nil {
		t.Fatal(err)
	}
	if err := c.stopAgent(m, false); err != nil { // withdrawn from the datastore
		t.Fatal(err)
	}
	if err := c.waitFor(context.Background(), 10*time.Second, "worker2 drops the master", func() bool {
		return len(w2.agent.Stats().Peers) == 1
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(gwRoutes(t, w1), ","), masterRoute) {
		t.Fatalf("worker1 lost the master's route while its agent was down: %v", gwRoutes(t, w1))
	}
	if err := c.startAgent(context.Background(), w1); err != nil {
		t.Fatal(err)
	}
	if err := c.waitStarted(context.Background(), w1); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(gwRoutes(t, w1), ","), masterRoute) {
		t.Errorf("worker1 still routes the master after its first sync: %v", gwRoutes(t, w1))
	}
	vx, err := w1.ns.NL.LinkByName("vxlan.calico")
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_BRIDGE} {
		ns, _ := w1.ns.NL.NeighList(vx.Attrs().Index, fam)
		for _, n := range ns {
			if n.IP.Equal(net.IP(ms.TunnelAddr.AsSlice())) || n.IP.Equal(net.IP(m.spec.ip.Addr().AsSlice())) {
				t.Errorf("worker1 keeps the master's entry %v %s (family %d)", n.IP, n.HardwareAddr, fam)
			}
		}
	}
	// worker2 is still reachable.
	if _, err := nettools.Ping(c.pod("pod-a").ns.Path, c.pod("pod-c").ip, 3*time.Second); err != nil {
		t.Error(err)
	}
}

// TestEtcdOutage: etcd stops under a running cluster: existing pods keep
// talking past the hold time, agents turn not ready, a new ADD fails with
// CNI code 11; after etcd returns the agents are ready again and ADD works.
func TestEtcdOutage(t *testing.T) {
	kerneltest.Require(t)
	srv := etcdtest.New(t, nil)
	url := "etcd://" + strings.Join(srv.Endpoints(), ",") + "?dial-timeout=1s&request-timeout=1s"
	c := newCluster(t, options{datastore: url, holdTime: 2 * time.Second})
	a, b := c.pod("pod-a"), c.pod("pod-c")
	if _, err := nettools.Ping(a.ns.Path, b.ip, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := c.waitFor(context.Background(), 15*time.Second, "every agent not ready", func() bool {
		for _, n := range c.nodes {
			if n.agent.Ready() == nil {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // past the hold time: nobody may be withdrawn
	for _, p := range []*pod{b, c.pod("pod-b")} {
		if _, err := nettools.Ping(a.ns.Path, p.ip, 3*time.Second); err != nil {
			t.Errorf("etcd down: %s -> %s: %v", a.spec.name, p.spec.name, err)
		}
	}
	_, err := c.addPod(podSpec{"pod-d", "worker1"})
	var code uint
	if te := cni.ToError(err); te != nil {
		code = te.Code
	}
	if code != cni.CodeTryAgainLater {
		t.Errorf("ADD with etcd down: code %d (%v), want %d", code, err, cni.CodeTryAgainLater)
	}
	srv.Restart()
	if err := c.waitFor(context.Background(), 20*time.Second, "every agent ready again", func() bool {
		for _, n := range c.nodes {
			if n.agent.Ready() != nil {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	e, err := c.addPod(podSpec{"pod-e", "worker2"})
	if err != nil {
		t.Fatalf("ADD after etcd returned: %v", err)
	}
	for _, p := range []*pod{b, e} {
		if _, err := nettools.Ping(a.ns.Path, p.ip, 3*time.Second); err != nil {
			t.Errorf("after the outage: pod-a -> %s: %v", p.spec.name, err)
		}
	}
}
