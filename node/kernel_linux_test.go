//go:build linux

package node_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/node"
	"github.com/tabbynet/tabby/reflector"
	"github.com/tabbynet/tabby/vxlan"
	"golang.org/x/sys/unix"
)

// flaky is a store that can be switched off (every call ErrUnavailable).
type flaky struct {
	datastore.Store
	down atomic.Bool
}

func (f *flaky) err() error {
	if f.down.Load() {
		return datastore.ErrUnavailable
	}
	return nil
}
func (f *flaky) Get(ctx context.Context, k string) (datastore.KV, error) {
	if err := f.err(); err != nil {
		return datastore.KV{}, err
	}
	return f.Store.Get(ctx, k)
}
func (f *flaky) List(ctx context.Context, p string) ([]datastore.KV, int64, error) {
	if err := f.err(); err != nil {
		return nil, 0, err
	}
	return f.Store.List(ctx, p)
}
func (f *flaky) Create(ctx context.Context, k string, v []byte) (int64, error) {
	if err := f.err(); err != nil {
		return 0, err
	}
	return f.Store.Create(ctx, k, v)
}
func (f *flaky) Update(ctx context.Context, k string, v []byte, r int64) (int64, error) {
	if err := f.err(); err != nil {
		return 0, err
	}
	return f.Store.Update(ctx, k, v, r)
}
func (f *flaky) Delete(ctx context.Context, k string, r int64) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Store.Delete(ctx, k, r)
}
func (f *flaky) Txn(ctx context.Context, ops ...datastore.Op) (int64, error) {
	if err := f.err(); err != nil {
		return 0, err
	}
	return f.Store.Txn(ctx, ops...)
}

// openKernel opens the real kernel of a test namespace for a Node.
func openKernel(t *testing.T, path, sysctlRoot string) *node.Kernel {
	t.Helper()
	k, err := node.OpenKernel(path, sysctlRoot)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// TestNodeKernel runs one node in a throwaway namespace with a peer in
// the store: the peer is programmed, forwarding is written under
// SysctlRoot, nodename/mtu land in the state dir; with the datastore down
// the agent turns not ready and leaves the kernel alone; it recovers.
func TestNodeKernel(t *testing.T) {
	ns := kerneltest.NewNS(t, "agn")
	sink := kerneltest.NewNS(t, "ags")
	kerneltest.Veth(t, ns, "eth0", sink, "eth0")
	ns.AddAddr(t, "eth0", "10.4.7.61/24")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	mem := memory.New(nil)
	defer mem.Close()
	st := &flaky{Store: mem}
	m, _ := ipam.New(mem, nil)
	if err := m.CreatePool(ctx, ipam.Pool{Name: "default", CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26, VXLANMode: ipam.VXLANAlways, NATOutgoing: true}); err != nil {
		t.Fatal(err)
	}
	tun, err := m.AssignTunnelAddress(ctx, "worker2", ipam.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	blocks, _ := m.HostBlocks(ctx, "worker2")
	r, _ := reflector.New(mem, &reflector.Config{HoldTime: time.Hour})
	an, err := r.Announce(ctx, reflector.Announcement{Node: "worker2", NodeIP: netip.MustParseAddr("10.4.7.62"), TunnelIP: tun, TunnelMAC: vxlan.MACFromName("worker2"), Blocks: blocks})
	if err != nil {
		t.Fatal(err)
	}
	defer an.Stop(context.Background(), true)

	root := t.TempDir() // --sysctl-root: a copy of the keys the agent writes
	if err := os.MkdirAll(filepath.Join(root, "net/ipv4"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "net/ipv4/ip_forward"), []byte("0\n"), 0o644)
	state := t.TempDir()
	a, err := node.New(node.Config{
		Name: "worker1", NodeIP: netip.MustParsePrefix("10.4.7.61/24"), Uplink: "eth0",
		Store: st, Kernel: openKernel(t, ns.Path, root), StateDir: state,
		HealthInterval: 100 * time.Millisecond, HoldTime: time.Hour, WithdrawOnStop: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Started():
	case err := <-done:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("not started")
	}
	if err := a.Ready(); err != nil {
		t.Fatalf("not ready: %v", err)
	}
	s := a.Stats()
	if len(s.Peers) != 1 || len(s.Blocks) != 1 || !s.Blocks[0].Contains(s.TunnelAddr) {
		t.Fatalf("stats %+v", s)
	}
	routes := func() string {
		vx, err := ns.Handle.LinkByName("vxlan.calico")
		if err != nil {
			return ""
		}
		rs, _ := ns.Handle.RouteList(vx, unix.AF_INET)
		var out []string
		for _, r := range rs {
			out = append(out, r.String())
		}
		return strings.Join(out, "\n")
	}
	if !strings.Contains(routes(), blocks[0].String()) {
		t.Fatalf("no route to worker2's block %v:\n%s", blocks[0], ns.Dump())
	}
	if b, _ := os.ReadFile(filepath.Join(root, "net/ipv4/ip_forward")); strings.TrimSpace(string(b)) != "1" {
		t.Errorf("ip_forward under --sysctl-root = %q", b)
	}
	if got, _ := ns.Sysctl().Sysctl("net/ipv4/ip_forward"); got != "0" {
		t.Errorf("the namespace's own ip_forward was written (%s) although SysctlRoot points elsewhere", got)
	}
	for f, want := range map[string]string{"nodename": "worker1", "mtu": "1450"} {
		if b, _ := os.ReadFile(filepath.Join(state, f)); strings.TrimSpace(string(b)) != want {
			t.Errorf("state %s = %q, want %s", f, b, want)
		}
	}

	// What someone else deletes is put back on the kernel's notification,
	// not on the resync interval (90 s here): first the FDB entry alone
	// (a neighbour notification), then the route (a route notification).
	vx, _ := ns.Handle.LinkByName("vxlan.calico")
	fdbCount := func() int {
		fdb, _ := ns.Handle.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
		n := 0
		for _, f := range fdb {
			if f.IP != nil {
				n++
			}
		}
		return n
	}
	fdb, _ := ns.Handle.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	for _, f := range fdb {
		if f.IP != nil {
			if err := ns.Handle.NeighDel(&f); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "deleted FDB entry restored", func() bool { return fdbCount() == 1 })
	rs, _ := ns.Handle.RouteList(vx, unix.AF_INET)
	for _, r := range rs {
		if r.Gw != nil {
			if err := ns.Handle.RouteDel(&r); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "deleted route restored", func() bool { return strings.Contains(routes(), blocks[0].String()) })

	// Datastore down: not ready, dataplane unchanged.
	// Let the restores above settle (each write is followed by the
	// notification of itself and a sync that writes nothing).
	writes := a.Stats().KernelWrites
	for settled := 0; settled < 5; time.Sleep(50 * time.Millisecond) {
		if w := a.Stats().KernelWrites; w == writes {
			settled++
		} else {
			writes, settled = w, 0
		}
	}
	before := routes()
	st.down.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for a.Ready() == nil {
		if time.Now().After(deadline) {
			t.Fatal("still ready with the datastore down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if routes() != before || a.Stats().KernelWrites != writes {
		t.Errorf("dataplane changed while the datastore was down")
	}
	st.down.Store(false)
	for a.Ready() != nil {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("not ready again: %v", a.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Stopped with WithdrawOnStop: withdrawn.
	if list, _, _ := r.List(context.Background()); len(list) != 1 || list[0].Node != "worker2" {
		t.Errorf("announcements after stop: %v", list)
	}
}

// TestNodeNever: VXLAN mode Never routes a peer on the local subnet
// directly, makes no VXLAN device, and a restart writes nothing.
func TestNodeNever(t *testing.T) {
	sw := kerneltest.NewNS(t, "agw")
	mem := memory.New(nil)
	defer mem.Close()
	type run struct {
		a    *node.Node
		stop context.CancelFunc
		done chan error
	}
	var nss []*kerneltest.NS
	start := func(i int, onSync func(node.SyncInfo)) run {
		ctx, cancel := context.WithCancel(context.Background())
		a, err := node.New(node.Config{
			Name: []string{"worker1", "worker2"}[i], NodeIP: netip.MustParsePrefix([]string{"10.4.7.61/24", "10.4.7.62/24"}[i]),
			Uplink: "eth0", Store: mem, Kernel: openKernel(t, nss[i].Path, ""), VXLANMode: node.VXLANNever,
			HoldTime: time.Hour, OnSync: onSync,
		})
		if err != nil {
			t.Fatal(err)
		}
		r := run{a, cancel, make(chan error, 1)}
		go func() { r.done <- a.Run(ctx) }()
		select {
		case <-a.Started():
		case err := <-r.done:
			t.Fatal(err)
		case <-time.After(20 * time.Second):
			t.Fatal("not started")
		}
		return r
	}
	for i := range 2 {
		n := kerneltest.NewNS(t, "agv")
		kerneltest.Veth(t, n, "eth0", sw, []string{"w1", "w2"}[i])
		n.AddAddr(t, "eth0", []string{"10.4.7.61/24", "10.4.7.62/24"}[i])
		nss = append(nss, n)
	}
	r1, r2 := start(0, nil), start(1, nil)
	defer r2.stop()
	b2 := r2.a.Stats().Blocks[0]
	want := b2.String() + " via 10.4.7.62"
	direct := func() bool {
		rs, _ := nss[0].Handle.RouteList(nil, unix.AF_INET)
		for _, r := range rs {
			if r.Dst != nil && r.Gw != nil && r.Dst.String()+" via "+r.Gw.String() == want && r.Protocol == 80 {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(10 * time.Second)
	for !direct() {
		if time.Now().After(deadline) {
			t.Fatalf("no route %s on worker1:\n%s", want, nss[0].Dump())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := nss[0].Handle.LinkByName("vxlan.calico"); err == nil {
		t.Error("mode Never made vxlan.calico")
	}
	r1.stop()
	<-r1.done
	var mu sync.Mutex
	first := -1
	r1 = start(0, func(s node.SyncInfo) {
		mu.Lock()
		defer mu.Unlock()
		if first < 0 {
			first = s.Writes
		}
	})
	defer r1.stop()
	mu.Lock()
	defer mu.Unlock()
	if first != 0 || !direct() {
		t.Errorf("restart: first sync wrote %d, route kept %v", first, direct())
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !f(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out: %s", what)
		}
	}
}
