package ipam_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/ipam"
)

// The seed's worker1: its block 10.244.235.128/26, the tunnel address first,
// then a pod. (A pool the size of one block keeps the output predictable;
// in a /16 the block would be picked at random.)
func Example() {
	ctx := context.Background()
	st := memory.New(nil)
	defer st.Close()
	m, _ := ipam.New(st, nil)

	_ = m.CreatePool(ctx, ipam.Pool{Name: "default", CIDR: netip.MustParsePrefix("10.244.235.128/26"), VXLANMode: ipam.VXLANAlways})

	tunnel, _ := m.AssignTunnelAddress(ctx, "worker1", ipam.IPv4)
	fmt.Println("tunnel:", tunnel)

	args := ipam.AutoAssignArgs{Handle: "k8s-pod-network.6ff8e3ade03", Host: "worker1", Num4: 1,
		Attrs: map[string]string{"namespace": "default", "pod": "web-0"}}
	pod, _ := m.AutoAssign(ctx, args)
	fmt.Println("pod:", pod[0].Addr, "from", pod[0].Block)

	// A retried ADD with the same handle gets the same address.
	again, _ := m.AutoAssign(ctx, args)
	fmt.Println("retry:", again[0].Addr)

	blocks, _ := m.HostBlocks(ctx, "worker1")
	fmt.Println("worker1 blocks:", blocks)

	released, _ := m.ReleaseByHandle(ctx, args.Handle)
	fmt.Println("released:", released)
	released, _ = m.ReleaseByHandle(ctx, args.Handle)
	fmt.Println("released again:", released)
	// Output:
	// tunnel: 10.244.235.128
	// pod: 10.244.235.129 from 10.244.235.128/26
	// retry: 10.244.235.129
	// worker1 blocks: [10.244.235.128/26]
	// released: [10.244.235.129]
	// released again: []
}

func ExampleIPAM_CreatePool() {
	ctx := context.Background()
	st := memory.New(nil)
	defer st.Close()
	m, _ := ipam.New(st, nil)

	err := m.CreatePool(ctx, ipam.Pool{Name: "default", CIDR: netip.MustParsePrefix("10.244.0.0/16"), VXLANMode: ipam.VXLANCrossSubnet, NATOutgoing: true})
	fmt.Println(err)
	err = m.CreatePool(ctx, ipam.Pool{Name: "more", CIDR: netip.MustParsePrefix("10.244.128.0/17"), VXLANMode: ipam.VXLANAlways})
	fmt.Println(errors.Is(err, ipam.ErrPoolOverlap))
	err = m.CreatePool(ctx, ipam.Pool{Name: "ll", CIDR: netip.MustParsePrefix("169.254.0.0/16"), VXLANMode: ipam.VXLANAlways})
	fmt.Println(errors.Is(err, ipam.ErrInvalid))

	pools, _ := m.ListPools(ctx)
	for _, p := range pools {
		fmt.Printf("%s %s /%d vxlan=%s nat=%v\n", p.Name, p.CIDR, p.BlockSize, p.VXLANMode, p.NATOutgoing)
	}
	// Output:
	// <nil>
	// true
	// true
	// default 10.244.0.0/16 /26 vxlan=CrossSubnet nat=true
}

// Specific addresses, stale releases and typed errors.
func ExampleIPAM_AssignIP() {
	ctx := context.Background()
	st := memory.New(nil)
	defer st.Close()
	m, _ := ipam.New(st, nil)
	_ = m.CreatePool(ctx, ipam.Pool{Name: "default", CIDR: netip.MustParsePrefix("10.244.0.0/16"), VXLANMode: ipam.VXLANAlways})

	a, _ := m.AssignIP(ctx, ipam.AssignIPArgs{Addr: netip.MustParseAddr("10.244.1.10"), Handle: "static-1", Host: "worker2"})
	fmt.Println(a.Addr, a.Block)
	_, err := m.AssignIP(ctx, ipam.AssignIPArgs{Addr: netip.MustParseAddr("10.244.1.10"), Handle: "static-2", Host: "worker2"})
	fmt.Println(errors.Is(err, ipam.ErrInUse))
	_, err = m.AssignIP(ctx, ipam.AssignIPArgs{Addr: netip.MustParseAddr("192.0.2.1"), Handle: "static-2", Host: "worker2"})
	fmt.Println(errors.Is(err, ipam.ErrNotInPool))

	// A release that names an older allocation (Seq) frees nothing.
	rel, _ := m.ReleaseIPs(ctx, ipam.Release{Addr: a.Addr, Seq: a.Seq + 1})
	fmt.Println(rel)
	rel, _ = m.ReleaseIPs(ctx, ipam.Release{Addr: a.Addr, Seq: a.Seq})
	fmt.Println(rel)
	// Output:
	// 10.244.1.10 10.244.1.0/26
	// true
	// true
	// []
	// [10.244.1.10]
}

// GC frees addresses whose handles are gone (after a grace period), and
// the consistency check comes back clean.
func ExampleIPAM_GC() {
	ctx := context.Background()
	st := memory.New(nil)
	defer st.Close()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m, _ := ipam.New(st, &ipam.Config{Now: func() time.Time { return now }})
	_ = m.CreatePool(ctx, ipam.Pool{Name: "default", CIDR: netip.MustParsePrefix("10.244.235.128/26"), VXLANMode: ipam.VXLANAlways})

	for _, h := range []string{"pod-live", "pod-leaked"} {
		_, _ = m.AutoAssign(ctx, ipam.AutoAssignArgs{Handle: h, Host: "worker1", Num4: 1})
	}
	now = now.Add(10 * time.Minute)
	res, _ := m.GC(ctx, ipam.GCOptions{
		Valid:       func(h string) bool { return h == "pod-live" },
		GracePeriod: 5 * time.Minute,
	})
	fmt.Println("released:", res.Released)

	u, _ := m.Usage(ctx)
	fmt.Printf("pool %s: %d/%d in use\n", u.Pools[0].Pool, u.Pools[0].InUse, u.Pools[0].Capacity)
	problems, _ := m.Check(ctx, []string{"worker1"})
	fmt.Println("problems:", len(problems))
	// Output:
	// released: [10.244.235.130]
	// pool default: 1/64 in use
	// problems: 0
}

// worker1 leaves the cluster for good while a pod's address is still
// allocated: its tunnel address is freed and its block loses its affinity;
// once the pod's handle is released, GC frees the block for another node.
func ExampleIPAM_ReleaseHost() {
	ctx := context.Background()
	st := memory.New(nil)
	defer st.Close()
	m, _ := ipam.New(st, nil)
	_ = m.CreatePool(ctx, ipam.Pool{Name: "default", CIDR: netip.MustParsePrefix("10.244.235.128/26"), VXLANMode: ipam.VXLANAlways})

	_, _ = m.AssignTunnelAddress(ctx, "worker1", ipam.IPv4)
	_, _ = m.AutoAssign(ctx, ipam.AutoAssignArgs{Handle: "k8s-pod-network.6ff8e3ade03", Host: "worker1", Num4: 1})

	r, _ := m.ReleaseHost(ctx, "worker1", ipam.ReleaseHostOptions{})
	fmt.Println("tunnel freed:", r.TunnelAddrs)
	fmt.Println("unaffine:", r.UnaffinedBlocks, "still allocated:", r.Remaining)
	fmt.Println("record removed:", r.RecordRemoved)
	problems, _ := m.Check(ctx, []string{})
	fmt.Println("problems:", len(problems))

	r, _ = m.ReleaseHost(ctx, "worker1", ipam.ReleaseHostOptions{})
	fmt.Println("again changed:", r.Changed())

	_, _ = m.ReleaseByHandle(ctx, "k8s-pod-network.6ff8e3ade03")
	_, _ = m.GC(ctx, ipam.GCOptions{}) // sees the block empty
	res, _ := m.GC(ctx, ipam.GCOptions{})
	fmt.Println("gc freed:", res.ReleasedBlocks)

	tunnel, _ := m.AssignTunnelAddress(ctx, "worker2", ipam.IPv4)
	fmt.Println("worker2 tunnel:", tunnel)
	// Output:
	// tunnel freed: [10.244.235.128]
	// unaffine: [10.244.235.128/26] still allocated: 1
	// record removed: true
	// problems: 0
	// again changed: false
	// gc freed: [10.244.235.128/26]
	// worker2 tunnel: 10.244.235.128
}

// GC releases the hosts that are no longer in the cluster when given the
// live ones.
func ExampleGCOptions_liveHosts() {
	ctx := context.Background()
	st := memory.New(nil)
	defer st.Close()
	m, _ := ipam.New(st, nil)
	_ = m.CreatePool(ctx, ipam.Pool{Name: "default", CIDR: netip.MustParsePrefix("10.244.0.0/16"), VXLANMode: ipam.VXLANAlways})
	for _, h := range []string{"worker1", "worker2"} {
		_, _ = m.AssignTunnelAddress(ctx, h, ipam.IPv4)
	}

	live := []string{"worker1"}
	problems, _ := m.Check(ctx, live)
	fmt.Println("problems before:", len(problems))
	res, _ := m.GC(ctx, ipam.GCOptions{LiveHosts: live})
	for _, r := range res.ReleasedHosts {
		fmt.Println("released", r.Host, "blocks deleted:", len(r.DeletedBlocks))
	}
	problems, _ = m.Check(ctx, live)
	fmt.Println("problems after:", len(problems))
	// Output:
	// problems before: 2
	// released worker2 blocks deleted: 1
	// problems after: 0
}

// A reflector asks IPAM whether a node owns what it announces.
func ExampleIPAM_Owns() {
	ctx := context.Background()
	st := memory.New(nil)
	defer st.Close()
	m, _ := ipam.New(st, nil)
	_ = m.CreatePool(ctx, ipam.Pool{Name: "default", CIDR: netip.MustParsePrefix("10.244.235.128/26")})
	tunnel, _ := m.AssignTunnelAddress(ctx, "worker1", ipam.IPv4)
	blocks, _ := m.HostBlocks(ctx, "worker1")
	fmt.Println(m.Owns(ctx, "worker1", blocks, []netip.Addr{tunnel}))
	err := m.Owns(ctx, "worker2", blocks, nil)
	fmt.Println(errors.Is(err, ipam.ErrNotOwned), err)
	// Output:
	// <nil>
	// true ipam: owns worker2: not owned by the node: block 10.244.235.128/26
}

// A handle record damaged on disk: Check reports it, Repair rebuilds it
// from the block, and the pod's DEL works again.
func ExampleIPAM_Repair() {
	ctx := context.Background()
	st := memory.New(nil)
	defer st.Close()
	m, _ := ipam.New(st, nil)
	_ = m.CreatePool(ctx, ipam.Pool{Name: "default", CIDR: netip.MustParsePrefix("10.244.235.128/26")})
	_, _ = m.AutoAssign(ctx, ipam.AutoAssignArgs{Handle: "pod-a", Host: "worker1", Num4: 1})
	kv, _ := st.Get(ctx, "tabby/ipam/handles/pod-a")
	_, _ = st.Update(ctx, kv.Key, []byte("{"), kv.Revision)

	problems, _ := m.Check(ctx, nil)
	for _, p := range problems {
		fmt.Println(p.Kind, p.Key)
	}
	res, _ := m.Repair(ctx, problems)
	fmt.Println("fixed:", len(res.Fixed), "unfixed:", len(res.Unfixed))
	freed, err := m.ReleaseByHandle(ctx, "pod-a")
	fmt.Println(freed, err)
	// Output:
	// corrupt tabby/ipam/handles/pod-a
	// orphan-allocation tabby/ipam/blocks/default/10.244.235.128-26
	// fixed: 2 unfixed: 0
	// [10.244.235.129] <nil>
}
