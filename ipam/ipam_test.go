package ipam_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/ipam"
)

func TestPoolValidate(t *testing.T) {
	ok := []ipam.Pool{
		pool("a", "10.244.0.0/16", 0),
		pool("a", "10.244.0.0/16", 20),
		pool("a", "10.244.0.0/16", 32),
		pool("a", "10.0.0.0/8", 26),
		pool("a", "10.244.0.0/26", 26),
		pool("v6", "fd00::/48", 0),
		pool("v6", "fd00::/64", 116),
		pool("v6", "fd00::/120", 128),
		{Name: "n", CIDR: mustPrefix("10.1.0.0/16"), VXLANMode: ipam.VXLANNever},
		{Name: "no-vxlan-mode", CIDR: mustPrefix("10.0.0.0/8")}, // optional for IPAM
	}
	for _, p := range ok {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	bad := map[string]ipam.Pool{
		"host bits":       pool("a", "10.244.0.1/16", 0),
		"block too small": pool("a", "10.244.0.0/16", 19),
		"block too big":   pool("a", "10.244.0.0/16", 33),
		"block > pool":    pool("a", "10.244.0.0/27", 26),
		"link-local":      pool("a", "169.254.0.0/16", 0),
		"contains ll":     pool("a", "169.0.0.0/8", 0),
		"inside ll":       pool("a", "169.254.1.0/24", 26),
		"v6 ll":           pool("a", "fe80::/64", 0),
		"v6 block small":  pool("a", "fd00::/64", 115),
		"v6 block v4":     pool("a", "fd00::/64", 26),
		"v4 block v6":     pool("a", "10.0.0.0/8", 122),
		"no cidr":         {Name: "a", VXLANMode: ipam.VXLANAlways},
		"no name":         pool("", "10.0.0.0/8", 0),
		"bad name":        pool("A/b", "10.0.0.0/8", 0),
		"bad vxlan mode":  {Name: "a", CIDR: mustPrefix("10.0.0.0/8"), VXLANMode: 7},
		"4in6":            pool("a", "::ffff:10.0.0.0/104", 122),
	}
	for name, p := range bad {
		if err := p.Validate(); !errors.Is(err, ipam.ErrInvalid) {
			t.Errorf("%s: %+v: got %v, want ErrInvalid", name, p, err)
		}
	}
}

// Pools that cannot carry pod traffic are refused by ipam itself, before
// anything is written (issue 15.5: 127.0.0.0/8, 224.0.0.0/8 and
// 239.1.0.0/16 were accepted and persisted).
func TestCreatePoolRejectsUnusableRanges(t *testing.T) {
	ctx := context.Background()
	st := memory.New(nil)
	m, err := ipam.New(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cidr string
		bs   int
	}{
		{"127.0.0.0/8", 0}, {"224.0.0.0/8", 0}, {"239.1.0.0/16", 0}, {"0.0.0.0/8", 0},
		{"0.0.0.0/0", 26}, {"240.0.0.0/4", 26}, {"255.255.255.255/32", 32}, {"127.0.0.1/32", 32},
		{"169.254.0.0/16", 0}, {"::/128", 128}, {"::1/128", 128}, {"ff00::/8", 122},
		{"ff02::/16", 122}, {"fe80::/10", 122}, {"::/0", 122}, {"::ffff:0:0/96", 122},
	} {
		p := ipam.Pool{Name: "p", CIDR: mustPrefix(c.cidr), BlockSize: c.bs}
		err := m.CreatePool(ctx, p)
		if !errors.Is(err, ipam.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", c.cidr, err)
		}
		if err != nil && strings.Count(err.Error(), "ipam:") != 1 {
			t.Errorf("%s: prefix repeated: %v", c.cidr, err)
		}
	}
	if kvs, _, _ := st.List(ctx, "tabby/"); len(kvs) != 0 {
		t.Fatalf("refused pools wrote %d records", len(kvs))
	}
	// The allowed neighbours of those ranges stay allowed.
	for i, c := range []string{"126.0.0.0/8", "223.255.0.0/16", "fd00::/64", "2001:db8::/64"} {
		if err := m.CreatePool(ctx, ipam.Pool{Name: fmt.Sprint("ok", i), CIDR: mustPrefix(c)}); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
}

func TestVXLANModeText(t *testing.T) {
	for _, m := range []ipam.VXLANMode{ipam.VXLANAlways, ipam.VXLANCrossSubnet, ipam.VXLANNever} {
		b, err := m.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back ipam.VXLANMode
		if err := back.UnmarshalText(b); err != nil || back != m {
			t.Errorf("%v: round trip %q -> %v, %v", m, b, back, err)
		}
	}
	var zero ipam.VXLANMode
	if zero.Valid() {
		t.Error("zero VXLANMode is valid")
	}
	if _, err := zero.MarshalText(); !errors.Is(err, ipam.ErrInvalid) {
		t.Errorf("marshal zero: %v", err)
	}
	if _, err := ipam.ParseVXLANMode("always"); !errors.Is(err, ipam.ErrInvalid) {
		t.Errorf("parse lowercase: %v", err)
	}
}

func TestPoolsCRUD(t *testing.T) {
	e := newEnv(t, nil)
	before := e.dump()
	for name, tc := range map[string]struct {
		p    ipam.Pool
		want error
	}{
		"exists":   {pool("default", "10.245.0.0/16", 0), ipam.ErrPoolExists},
		"overlap":  {pool("other", "10.244.128.0/17", 0), ipam.ErrPoolOverlap},
		"overlap2": {pool("other", "10.0.0.0/8", 0), ipam.ErrPoolOverlap},
		"invalid":  {pool("other", "10.245.0.1/16", 0), ipam.ErrInvalid},
	} {
		if err := e.m.CreatePool(e.ctx, tc.p); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
	if !maps.Equal(before, e.dump()) {
		t.Error("a failed CreatePool wrote something")
	}
	if err := e.m.CreatePool(e.ctx, pool("b-pool", "10.245.0.0/16", 28)); err != nil {
		t.Fatal(err)
	}
	ps, err := e.m.ListPools(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []ipam.Pool{pool("b-pool", "10.245.0.0/16", 28), pool("default", "10.244.0.0/16", 26)}
	if !reflect.DeepEqual(ps, want) {
		t.Fatalf("ListPools = %+v, want %+v", ps, want)
	}
	// Update the mutable fields; the immutable ones are refused.
	p := want[1]
	p.NATOutgoing, p.VXLANMode = true, ipam.VXLANCrossSubnet
	if err := e.m.UpdatePool(e.ctx, p); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.m.GetPool(e.ctx, "default"); got != p {
		t.Fatalf("after update %+v, want %+v", got, p)
	}
	for _, q := range []ipam.Pool{
		{Name: "default", CIDR: mustPrefix("10.244.0.0/17"), VXLANMode: ipam.VXLANAlways},
		{Name: "default", CIDR: p.CIDR, BlockSize: 27, VXLANMode: ipam.VXLANAlways},
		{Name: "default", CIDR: p.CIDR, VXLANMode: 9},
	} {
		if err := e.m.UpdatePool(e.ctx, q); !errors.Is(err, ipam.ErrInvalid) {
			t.Errorf("UpdatePool(%+v) = %v, want ErrInvalid", q, err)
		}
	}
	if err := e.m.UpdatePool(e.ctx, pool("nope", "10.9.0.0/16", 0)); !errors.Is(err, ipam.ErrPoolNotFound) {
		t.Errorf("update unknown: %v", err)
	}
	if _, err := e.m.GetPool(e.ctx, "nope"); !errors.Is(err, ipam.ErrPoolNotFound) {
		t.Errorf("get unknown: %v", err)
	}
	if err := e.m.DeletePool(e.ctx, "nope"); !errors.Is(err, ipam.ErrPoolNotFound) {
		t.Errorf("delete unknown: %v", err)
	}
}

func TestDeletePool(t *testing.T) {
	e := newEnv(t, nil)
	as := e.assign("h1", "node-a", 1)
	e.assign("h2", "node-b", 1)
	if err := e.m.DeletePool(e.ctx, "default"); !errors.Is(err, ipam.ErrPoolInUse) {
		t.Fatalf("delete in use: %v", err)
	}
	// The refused delete leaves the pool as it was (enabled).
	p, _ := e.m.GetPool(e.ctx, "default")
	if p.Disabled {
		t.Fatal("refused delete left the pool disabled")
	}
	e.assign("h3", "node-a", 1)
	for _, h := range []string{"h1", "h2", "h3"} {
		if _, err := e.m.ReleaseByHandle(e.ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.m.DeletePool(e.ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if d := e.dump(); len(d) != 1 { // only the (empty) pools record is left
		t.Fatalf("left after delete: %v", d)
	}
	if _, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "x", Host: "node-a", Num4: 1}); !errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("assign without pools: %v", err)
	}
	if _, err := e.m.ReleaseIPs(e.ctx, ipam.Release{Addr: as[0].Addr}); !errors.Is(err, ipam.ErrNotInPool) {
		t.Fatalf("release after delete: %v", err)
	}
}

func TestAutoAssignBasics(t *testing.T) {
	e := newEnv(t, nil)
	a := e.assign("pod-a", "worker1", 1)[0]
	// The first address of the host's first block is kept for its tunnel.
	if a.Block.Addr().Next() != a.Addr || a.Block.Bits() != 26 || a.Pool != "default" || a.Seq != 1 || !a.NewBlock {
		t.Fatalf("first assignment %+v: want the second address of a fresh /26", a)
	}
	// The same handle again: the same address, nothing new.
	again := e.assign("pod-a", "worker1", 1)[0]
	if a.NewBlock = false; again != a {
		t.Fatalf("retry with same handle: %+v, want %+v", again, a)
	}
	b := e.assign("pod-b", "worker1", 2)
	if b[0].Block != a.Block || b[0].Addr != a.Addr.Next() || b[1].Addr != a.Addr.Next().Next() {
		t.Fatalf("second handle %+v, want the next addresses of %s", b, a.Block)
	}
	blocks, _ := e.m.HostBlocks(e.ctx, "worker1")
	if len(blocks) != 1 || blocks[0] != a.Block {
		t.Fatalf("HostBlocks = %v", blocks)
	}
	got, _ := e.m.HandleAddrs(e.ctx, "pod-b")
	if len(got) != 2 || got[0] != b[0].Addr || got[1] != b[1].Addr {
		t.Fatalf("HandleAddrs = %v", got)
	}
	if aff, _ := e.m.BlockAffinity(e.ctx, a.Block); aff != "worker1" {
		t.Fatalf("BlockAffinity = %q", aff)
	}
	if ok, _ := e.m.IsBlockAffine(e.ctx, a.Block, "worker2"); ok {
		t.Fatal("block affine to worker2?")
	}
	if ok, _ := e.m.IsAssignedTo(e.ctx, a.Addr, "worker1"); !ok {
		t.Fatal("IsAssignedTo(worker1) false")
	}
	if ok, _ := e.m.IsAssignedTo(e.ctx, a.Addr.Prev(), "worker1"); ok {
		t.Fatal("IsAssignedTo(free address) true")
	}
	// Another host gets another block.
	c := e.assign("pod-c", "worker2", 1)[0]
	if c.Block == a.Block {
		t.Fatal("two hosts share a block")
	}
	// A host fills its block, then claims a second one.
	more := e.assign("pod-d", "worker1", 64)
	// (One address fewer than before the tunnel reservation: the first.)
	if more[59].Block != a.Block || more[60].Block == a.Block {
		t.Fatalf("block overflow: %v %v", more[59], more[60])
	}
	blocks, _ = e.m.HostBlocks(e.ctx, "worker1")
	if len(blocks) != 2 {
		t.Fatalf("HostBlocks = %v", blocks)
	}
	e.clean([]string{"worker1", "worker2"})
	// Release is idempotent.
	rel, err := e.m.ReleaseByHandle(e.ctx, "pod-d")
	if err != nil || len(rel) != 64 {
		t.Fatalf("release: %d, %v", len(rel), err)
	}
	if rel, err := e.m.ReleaseByHandle(e.ctx, "pod-d"); err != nil || len(rel) != 0 {
		t.Fatalf("release again: %v, %v", rel, err)
	}
	e.clean(nil)
}

func TestAttributesAndAllocations(t *testing.T) {
	e := newEnv(t, nil)
	attrs := map[string]string{"namespace": "default", "pod": "web-1"}
	as, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "k8s.abc", Host: "n1", Num4: 1, Attrs: attrs})
	if err != nil {
		t.Fatal(err)
	}
	attrs["pod"] = "mutated" // the stored copy must not change
	al, err := e.m.Allocations(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := ipam.Allocation{Addr: as[0].Addr, Pool: "default", Block: as[0].Block, Handle: "k8s.abc", Host: "n1",
		Attrs: map[string]string{"namespace": "default", "pod": "web-1"}, Time: e.clock.Now(), Seq: 1}
	if len(al) != 1 || !reflect.DeepEqual(al[0], want) {
		t.Fatalf("Allocations = %+v, want %+v", al, want)
	}
	got, ok, err := e.m.AddrAllocation(e.ctx, as[0].Addr)
	if err != nil || !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("AddrAllocation = %+v %v %v", got, ok, err)
	}
}

func TestReuseLongestFreeFirst(t *testing.T) {
	e := newEnv(t, nil, pool("p", "10.244.0.0/24", 30)) // blocks of 4
	// The tunnel first, so that the pods can fill the block.
	if _, err := e.m.AssignTunnelAddress(e.ctx, "n", ipam.IPv4); err != nil {
		t.Fatal(err)
	}
	var as []ipam.Assigned
	for i := range 3 {
		as = append(as, e.assign("h"+string(rune('0'+i)), "n", 1)[0])
	}
	// Block full; release 2, then 0: they come back in that order.
	for _, i := range []int{2, 0} {
		if _, err := e.m.ReleaseByHandle(e.ctx, "h"+string(rune('0'+i))); err != nil {
			t.Fatal(err)
		}
	}
	x := e.assign("x", "n", 1)[0]
	y := e.assign("y", "n", 1)[0]
	if x.Addr != as[2].Addr || y.Addr != as[0].Addr {
		t.Fatalf("reuse order %s %s, want %s %s", x.Addr, y.Addr, as[2].Addr, as[0].Addr)
	}
	// In a fresh block untouched addresses come before a just-released one.
	e2 := newEnv(t, nil)
	a := e2.assign("a", "n", 1)[0]
	e2.m.ReleaseByHandle(e2.ctx, "a")
	b := e2.assign("b", "n", 1)[0]
	if b.Addr == a.Addr {
		t.Fatal("just-released address reused while others were free longer")
	}
}

func TestStaleReleaseCannotFreeReusedAddress(t *testing.T) {
	e := newEnv(t, nil, pool("p", "10.244.0.0/31", 32)) // two blocks of one address
	a := e.assign("old", "n", 1)[0]
	e.assign("other", "n", 1) // fill the second block
	if _, err := e.m.ReleaseIPs(e.ctx, ipam.Release{Addr: a.Addr, Seq: a.Seq}); err != nil {
		t.Fatal(err)
	}
	b := e.assign("new", "n", 1)[0]
	if b.Addr != a.Addr || b.Seq == a.Seq {
		t.Fatalf("reassigned %+v after %+v", b, a)
	}
	// A late release naming the old allocation frees nothing.
	rel, err := e.m.ReleaseIPs(e.ctx, ipam.Release{Addr: a.Addr, Seq: a.Seq})
	if err != nil || len(rel) != 0 {
		t.Fatalf("stale release: %v %v", rel, err)
	}
	rel, err = e.m.ReleaseIPs(e.ctx, ipam.Release{Addr: a.Addr, Handle: "old"})
	if err != nil || len(rel) != 0 {
		t.Fatalf("release with old handle: %v %v", rel, err)
	}
	if got, _ := e.m.HandleAddrs(e.ctx, "new"); len(got) != 1 || got[0] != a.Addr {
		t.Fatalf("new handle lost its address: %v", got)
	}
	// Unconditional release works and updates the handle.
	rel, err = e.m.ReleaseIPs(e.ctx, ipam.Release{Addr: a.Addr})
	if err != nil || len(rel) != 1 {
		t.Fatalf("release: %v %v", rel, err)
	}
	if got, _ := e.m.HandleAddrs(e.ctx, "new"); len(got) != 0 {
		t.Fatalf("handle still lists %v", got)
	}
	e.clean(nil)
}

func TestBadInputWritesNothing(t *testing.T) {
	e := newEnv(t, nil)
	e.assign("existing", "n1", 1)
	before := e.dump()
	long := strings.Repeat("x", 254)
	cases := map[string]struct {
		f    func() error
		want error
	}{
		"empty handle": {func() error {
			_, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Host: "n1", Num4: 1})
			return err
		}, ipam.ErrInvalid},
		"empty host": {func() error {
			_, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "h", Num4: 1})
			return err
		}, ipam.ErrInvalid},
		"slash in handle": {func() error {
			_, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "a/b", Host: "n1", Num4: 1})
			return err
		}, ipam.ErrInvalid},
		"long host": {func() error {
			_, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "h", Host: long, Num4: 1})
			return err
		}, ipam.ErrInvalid},
		"Num4 0": {func() error {
			_, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "h", Host: "n1"})
			return err
		}, ipam.ErrInvalid},
		"Num4 negative": {func() error {
			_, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "h", Host: "n1", Num4: -1})
			return err
		}, ipam.ErrInvalid},
		"Num4 absurd": {func() error {
			_, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "h", Host: "n1", Num4: 1 << 20})
			return err
		}, ipam.ErrInvalid},
		"unknown pool": {func() error {
			_, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "h", Host: "n1", Num4: 1, Pools: []string{"nope"}})
			return err
		}, ipam.ErrPoolNotFound},
		"assign outside pools": {func() error {
			_, err := e.m.AssignIP(e.ctx, ipam.AssignIPArgs{Addr: mustAddr("10.9.0.1"), Handle: "h", Host: "n1"})
			return err
		}, ipam.ErrNotInPool},
		"assign invalid addr": {func() error {
			_, err := e.m.AssignIP(e.ctx, ipam.AssignIPArgs{Handle: "h", Host: "n1"})
			return err
		}, ipam.ErrInvalid},
		"assign empty handle": {func() error {
			_, err := e.m.AssignIP(e.ctx, ipam.AssignIPArgs{Addr: mustAddr("10.244.9.1"), Host: "n1"})
			return err
		}, ipam.ErrInvalid},
		"release outside pools": {func() error {
			_, err := e.m.ReleaseIPs(e.ctx, ipam.Release{Addr: mustAddr("10.244.0.0")}, ipam.Release{Addr: mustAddr("10.9.0.1")})
			return err
		}, ipam.ErrNotInPool},
		"release empty handle": {func() error {
			_, err := e.m.ReleaseByHandle(e.ctx, "")
			return err
		}, ipam.ErrInvalid},
		"tunnel empty host": {func() error {
			_, err := e.m.AssignTunnelAddress(e.ctx, "", ipam.IPv4)
			return err
		}, ipam.ErrInvalid},
		"claim empty host": {func() error {
			_, err := e.m.ClaimBlock(e.ctx, "", "default")
			return err
		}, ipam.ErrInvalid},
		"claim unknown pool": {func() error {
			_, err := e.m.ClaimBlock(e.ctx, "n1", "nope")
			return err
		}, ipam.ErrPoolNotFound},
	}
	for name, tc := range cases {
		if err := tc.f(); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
		if !maps.Equal(before, e.dump()) {
			t.Fatalf("%s: the store changed", name)
		}
	}
	if _, err := ipam.New(nil, nil); !errors.Is(err, ipam.ErrInvalid) {
		t.Errorf("New(nil store): %v", err)
	}
	if _, err := ipam.New(memory.New(nil), &ipam.Config{Prefix: "no-slash"}); !errors.Is(err, ipam.ErrInvalid) {
		t.Errorf("New(bad prefix): %v", err)
	}
}

func TestAssignIP(t *testing.T) {
	e := newEnv(t, nil)
	addr := mustAddr("10.244.7.9")
	a, err := e.m.AssignIP(e.ctx, ipam.AssignIPArgs{Addr: addr, Handle: "h1", Host: "n1"})
	if err != nil || a.Addr != addr || a.Block != mustPrefix("10.244.7.0/26") {
		t.Fatalf("AssignIP = %+v, %v", a, err)
	}
	// The new block is affine to the host, confirmed.
	if ok, _ := e.m.IsBlockAffine(e.ctx, a.Block, "n1"); !ok {
		t.Fatal("block created by AssignIP not affine to n1")
	}
	// Same handle: idempotent. Other handle: in use.
	if !a.NewBlock {
		t.Fatalf("AssignIP claimed %s without saying so", a.Block)
	}
	a.NewBlock = false
	if b, err := e.m.AssignIP(e.ctx, ipam.AssignIPArgs{Addr: addr, Handle: "h1", Host: "n1"}); err != nil || b != a {
		t.Fatalf("AssignIP again = %+v, %v", b, err)
	}
	if _, err := e.m.AssignIP(e.ctx, ipam.AssignIPArgs{Addr: addr, Handle: "h2", Host: "n1"}); !errors.Is(err, ipam.ErrInUse) {
		t.Fatalf("AssignIP in use: %v", err)
	}
	// AutoAssign for n1 now uses that block, skipping the taken address.
	as := e.assign("h3", "n1", 10)
	for _, x := range as {
		if x.Block != a.Block || x.Addr == addr {
			t.Fatalf("AutoAssign after AssignIP gave %+v", x)
		}
	}
	// A disabled pool is refused.
	p, _ := e.m.GetPool(e.ctx, "default")
	p.Disabled = true
	if err := e.m.UpdatePool(e.ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.AssignIP(e.ctx, ipam.AssignIPArgs{Addr: mustAddr("10.244.9.9"), Handle: "h4", Host: "n1"}); !errors.Is(err, ipam.ErrPoolDisabled) {
		t.Fatalf("AssignIP in disabled pool: %v", err)
	}
	if _, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "h5", Host: "n1", Num4: 1}); !errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("AutoAssign with only a disabled pool: %v", err)
	}
	if _, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "h5", Host: "n1", Num4: 1, Pools: []string{"default"}}); !errors.Is(err, ipam.ErrPoolDisabled) {
		t.Fatalf("AutoAssign naming a disabled pool: %v", err)
	}
	e.clean([]string{"n1"})
}

func TestBorrowMaxBlocksStrict(t *testing.T) {
	for _, strict := range []bool{false, true} {
		e := newEnv(t, &ipam.Config{MaxBlocksPerHost: 1, StrictAffinity: strict}, pool("p", "10.244.0.0/24", 26))
		a := e.assign("a", "n1", 64) // n1's block is full
		e.assign("b", "n2", 1)       // n2 holds a block with room
		_, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "c", Host: "n1", Num4: 2})
		if strict {
			if !errors.Is(err, ipam.ErrExhausted) {
				t.Fatalf("strict: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("borrow: %v", err)
		}
		got, _ := e.m.HandleAddrs(e.ctx, "c")
		if len(got) != 2 || mustPrefix("10.244.0.0/24").Contains(got[0]) == false {
			t.Fatalf("borrowed %v", got)
		}
		for _, g := range got {
			if a[0].Block.Contains(g) {
				t.Fatalf("borrowed from the full block: %v", g)
			}
			if ok, _ := e.m.IsAssignedTo(e.ctx, g, "n1"); !ok {
				t.Fatalf("borrowed %v not assigned to n1", g)
			}
		}
		if bs, _ := e.m.HostBlocks(e.ctx, "n1"); len(bs) != 1 {
			t.Fatalf("n1 exceeded MaxBlocksPerHost: %v", bs)
		}
		if _, err := e.m.ClaimBlock(e.ctx, "n1", "p"); !errors.Is(err, ipam.ErrExhausted) {
			t.Fatalf("ClaimBlock at the cap: %v", err)
		}
		u, _ := e.m.Usage(e.ctx)
		if u.Hosts[0].Host != "n1" || u.Hosts[0].Borrowed != 2 || u.Hosts[0].InUse != 64 {
			t.Fatalf("usage %+v", u.Hosts)
		}
		e.clean([]string{"n1", "n2"})
	}
}

func TestPoolExhausted(t *testing.T) {
	e := newEnv(t, nil, pool("p", "10.244.0.0/30", 31)) // two blocks of two
	e.assign("a", "n1", 3)
	if _, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "b", Host: "n2", Num4: 2}); !errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("got %v", err)
	}
	if got, _ := e.m.HandleAddrs(e.ctx, "b"); len(got) != 0 {
		t.Fatalf("partial assignment written: %v", got)
	}
	e.assign("c", "n2", 1) // the last address, borrowed from n1's block
	if _, err := e.m.ClaimBlock(e.ctx, "n3", "p"); !errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("claim in full pool: %v", err)
	}
	e.clean(nil)
}

func TestTunnelAddress(t *testing.T) {
	e := newEnv(t, nil)
	a, err := e.m.AssignTunnelAddress(e.ctx, "worker1", ipam.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	blocks, _ := e.m.HostBlocks(e.ctx, "worker1")
	if len(blocks) != 1 || blocks[0].Addr() != a {
		t.Fatalf("tunnel address %s, blocks %v: want the first address of the node's block", a, blocks)
	}
	b, err := e.m.AssignTunnelAddress(e.ctx, "worker1", ipam.IPv4)
	if err != nil || b != a {
		t.Fatalf("second call %s %v", b, err)
	}
	al, ok, _ := e.m.AddrAllocation(e.ctx, a)
	if !ok || al.Handle != "vxlan-tunnel-addr-worker1" || al.Attrs["type"] != "vxlanTunnelAddress" || al.Host != "worker1" {
		t.Fatalf("tunnel allocation %+v", al)
	}
	pod := e.assign("pod", "worker1", 1)[0]
	if pod.Block != blocks[0] || pod.Addr == a {
		t.Fatalf("pod %+v", pod)
	}
	// Never borrowed: with the host at its cap and its block full, it fails.
	e2 := newEnv(t, &ipam.Config{MaxBlocksPerHost: 1}, pool("p", "10.244.0.0/24", 26))
	e2.assign("fill", "n1", 64)
	e2.assign("other", "n2", 1)
	if _, err := e2.m.AssignTunnelAddress(e2.ctx, "n1", ipam.IPv4); !errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("tunnel address borrowed: %v", err)
	}
}

func TestGC(t *testing.T) {
	e := newEnv(t, nil)
	e.assign("live", "n1", 1)
	leaked := e.assign("leaked", "n1", 1)[0]
	e.assign("other-block", "n1", 61)        // the first address waits for a tunnel
	second := e.assign("second", "n1", 1)[0] // n1's second block
	e.clock.Advance(time.Minute)
	fresh := e.assign("fresh", "n1", 1)[0]
	valid := func(h string) bool { return h == "live" || h == "other-block" }
	res, err := e.m.GC(e.ctx, ipam.GCOptions{Valid: valid, GracePeriod: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// "leaked" and "second" are old and invalid; "fresh" is inside the grace period.
	if len(res.Released) != 2 || !slices.Contains(res.Released, leaked.Addr) || !slices.Contains(res.Released, second.Addr) {
		t.Fatalf("released %v", res.Released)
	}
	if got, _ := e.m.HandleAddrs(e.ctx, "fresh"); len(got) != 1 || got[0] != fresh.Addr {
		t.Fatalf("fresh handle: %v", got)
	}
	if _, err := e.m.ReleaseByHandle(e.ctx, "fresh"); err != nil {
		t.Fatal(err)
	}
	// The second block is empty now: marked on the first pass, released on
	// the next; the first block is in use.
	valid2 := func(h string) bool { return true }
	res, err = e.m.GC(e.ctx, ipam.GCOptions{Valid: valid2})
	if err != nil || len(res.ReleasedBlocks) != 0 || res.MarkedEmpty != 1 {
		t.Fatalf("first pass %+v %v", res, err)
	}
	res, err = e.m.GC(e.ctx, ipam.GCOptions{Valid: valid2})
	if err != nil || len(res.ReleasedBlocks) != 1 || res.ReleasedBlocks[0] != second.Block {
		t.Fatalf("second pass %+v %v", res, err)
	}
	// A host's last block is never released, even empty for ages.
	e.m.ReleaseByHandle(e.ctx, "live")
	e.m.ReleaseByHandle(e.ctx, "other-block")
	e.clock.Advance(time.Hour)
	for range 3 {
		res, err = e.m.GC(e.ctx, ipam.GCOptions{MinEmptyAge: time.Minute})
		if err != nil || len(res.ReleasedBlocks) != 0 {
			t.Fatalf("last block released: %+v %v", res, err)
		}
	}
	if bs, _ := e.m.HostBlocks(e.ctx, "n1"); len(bs) != 1 {
		t.Fatalf("n1 blocks %v", bs)
	}
	e.clean([]string{"n1"})
}

func TestGCMinEmptyAge(t *testing.T) {
	e := newEnv(t, nil)
	e.assign("a", "n1", 64)
	b := e.assign("b", "n1", 1)[0]
	e.m.ReleaseByHandle(e.ctx, "b")
	res, _ := e.m.GC(e.ctx, ipam.GCOptions{MinEmptyAge: time.Minute})
	if len(res.ReleasedBlocks) != 0 {
		t.Fatal("released before MinEmptyAge (and seen once)")
	}
	// A block that was allocated again between passes is not released.
	e2 := newEnv(t, nil)
	e2.assign("a", "n1", 63)
	e2.assign("b", "n1", 1)
	e2.m.ReleaseByHandle(e2.ctx, "b")
	e2.m.GC(e2.ctx, ipam.GCOptions{})
	e2.assign("c", "n1", 1)
	e2.m.ReleaseByHandle(e2.ctx, "c")
	if res, _ := e2.m.GC(e2.ctx, ipam.GCOptions{}); len(res.ReleasedBlocks) != 0 {
		t.Fatal("released a block used since the last pass")
	}
	// By age: one pass suffices.
	e3 := newEnv(t, nil)
	e3.assign("a", "n1", 63)
	b = e3.assign("b", "n1", 1)[0]
	e3.m.ReleaseByHandle(e3.ctx, "b")
	e3.clock.Advance(2 * time.Minute)
	res, _ = e3.m.GC(e3.ctx, ipam.GCOptions{MinEmptyAge: time.Minute})
	if len(res.ReleasedBlocks) != 1 || res.ReleasedBlocks[0] != b.Block {
		t.Fatalf("by age: %+v", res)
	}
	e3.clean(nil)
}

func TestUsageAndCheck(t *testing.T) {
	e := newEnv(t, nil, pool("p", "10.244.0.0/24", 26), pool("q", "10.245.0.0/24", 28))
	e.assign("a", "n1", 3)
	e.assign("b", "n2", 1)
	if _, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "c", Host: "n2", Num4: 1, Pools: []string{"q"}}); err != nil {
		t.Fatal(err)
	}
	u, err := e.m.Usage(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantPools := []ipam.PoolUsage{
		{Pool: "p", CIDR: mustPrefix("10.244.0.0/24"), TotalBlocks: 4, Blocks: 2, Capacity: 128, InUse: 4},
		{Pool: "q", CIDR: mustPrefix("10.245.0.0/24"), TotalBlocks: 16, Blocks: 1, Capacity: 16, InUse: 1},
	}
	if !reflect.DeepEqual(u.Pools, wantPools) {
		t.Errorf("pools %+v", u.Pools)
	}
	wantHosts := []ipam.HostUsage{{Host: "n1", Blocks: 1, Capacity: 64, InUse: 3}, {Host: "n2", Blocks: 2, Capacity: 80, InUse: 2}}
	if !reflect.DeepEqual(u.Hosts, wantHosts) {
		t.Errorf("hosts %+v", u.Hosts)
	}
	if len(u.Blocks) != 3 {
		t.Errorf("blocks %+v", u.Blocks)
	}
	e.clean([]string{"n1", "n2"})
	ps, _ := e.m.Check(e.ctx, []string{"n1"})
	if len(ps) != 3 || ps[0].Kind != ipam.ProblemUnknownHost || ps[1].Kind != ipam.ProblemUnknownHost || ps[2].Kind != ipam.ProblemUnknownHost {
		t.Fatalf("unknown hosts: %v", ps)
	}
	// Break the store by hand: drop a handle record.
	kv, err := e.st.Get(e.ctx, "tabby/ipam/handles/b")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.Delete(e.ctx, kv.Key, kv.Revision); err != nil {
		t.Fatal(err)
	}
	ps, _ = e.m.Check(e.ctx, nil)
	if len(ps) != 1 || ps[0].Kind != ipam.ProblemOrphanAllocation {
		t.Fatalf("orphan: %v", ps)
	}
	// And a handle pointing at nothing; and garbage.
	if _, err := e.st.Create(e.ctx, "tabby/ipam/handles/b", kv.Value); err != nil {
		t.Fatal(err)
	}
	e.clean(nil)
	bAddr, _ := e.m.HandleAddrs(e.ctx, "b")
	if _, err := e.m.ReleaseIPs(e.ctx, ipam.Release{Addr: bAddr[0]}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Create(e.ctx, "tabby/ipam/handles/b", kv.Value); err != nil {
		t.Fatal(err)
	}
	e.st.Create(e.ctx, "tabby/ipam/handles/junk", []byte("{"))
	ps, _ = e.m.Check(e.ctx, nil)
	kinds := map[ipam.ProblemKind]int{}
	for _, p := range ps {
		kinds[p.Kind]++
	}
	if kinds[ipam.ProblemDanglingHandle] != 1 || kinds[ipam.ProblemCorrupt] != 1 || len(ps) != 2 {
		t.Fatalf("problems %v", ps)
	}
}

func TestMultipleAddressesAcrossBlocks(t *testing.T) {
	e := newEnv(t, nil, pool("p", "10.244.0.0/16", 28))
	as := e.assign("many", "n1", 40) // three /28 blocks
	seen := map[netip.Addr]bool{}
	blocks := map[netip.Prefix]bool{}
	for _, a := range as {
		if seen[a.Addr] {
			t.Fatalf("duplicate %s", a.Addr)
		}
		seen[a.Addr] = true
		blocks[a.Block] = true
	}
	if len(blocks) != 3 {
		t.Fatalf("blocks %v", blocks)
	}
	rel, err := e.m.ReleaseByHandle(e.ctx, "many")
	if err != nil || len(rel) != 40 {
		t.Fatalf("release %d %v", len(rel), err)
	}
	e.clean(nil)
}

// A retried ADD gets its addresses back even after their pool was disabled
// (the addresses stay valid until released).
func TestRetryAfterPoolDisabled(t *testing.T) {
	e := newEnv(t, nil)
	a := e.assign("pod", "n1", 1)[0]
	a.NewBlock = false
	p, _ := e.m.GetPool(e.ctx, "default")
	p.Disabled = true
	if err := e.m.UpdatePool(e.ctx, p); err != nil {
		t.Fatal(err)
	}
	if b := e.assign("pod", "n1", 1)[0]; b != a {
		t.Fatalf("retry after disable: %+v, want %+v", b, a)
	}
	if _, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "new", Host: "n1", Num4: 1}); !errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("new handle in disabled pool: %v", err)
	}
	if rel, err := e.m.ReleaseByHandle(e.ctx, "pod"); err != nil || len(rel) != 1 {
		t.Fatalf("release in disabled pool: %v %v", rel, err)
	}
}

// Pool changes made through another IPAM (another process) are seen by
// assignments at once, although assignments reuse the pools record.
func TestPoolChangesSeenByOtherInstances(t *testing.T) {
	e := newEnv(t, nil)
	other, err := ipam.New(e.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.assign("a", "n1", 1) // e.m now holds the pools record
	if err := other.CreatePool(e.ctx, pool("second", "10.245.0.0/16", 0)); err != nil {
		t.Fatal(err)
	}
	as, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "b", Host: "n1", Num4: 1, Pools: []string{"second"}})
	if err != nil || !mustPrefix("10.245.0.0/16").Contains(as[0].Addr) {
		t.Fatalf("assign from a pool created elsewhere: %v %v", as, err)
	}
	p, _ := other.GetPool(e.ctx, "default")
	p.Disabled = true
	if err := other.UpdatePool(e.ctx, p); err != nil {
		t.Fatal(err)
	}
	as, err = e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "c", Host: "n1", Num4: 1})
	if err != nil || !mustPrefix("10.245.0.0/16").Contains(as[0].Addr) {
		t.Fatalf("assigned from a pool disabled elsewhere: %v %v", as, err)
	}
	e.clean(nil)
}

// IPv6 pools: blocks are claimed, specific addresses assigned and released,
// and a handle holding only IPv6 gets IPv4 added by a Num4 request.
func TestIPv6Model(t *testing.T) {
	e := newEnv(t, nil, pool("v4", "10.244.0.0/16", 0), pool("v6", "fd00:10:244::/48", 0))
	b, err := e.m.ClaimBlock(e.ctx, "n1", "v6")
	if err != nil || b.Bits() != 122 || !mustPrefix("fd00:10:244::/48").Contains(b.Addr()) {
		t.Fatalf("claim v6 block: %v %v", b, err)
	}
	a, err := e.m.AssignIP(e.ctx, ipam.AssignIPArgs{Addr: b.Addr().Next(), Handle: "pod", Host: "n1"})
	if err != nil || a.Block != b {
		t.Fatalf("assign v6: %+v %v", a, err)
	}
	v4 := e.assign("pod", "n1", 1) // the handle holds only IPv6: gets IPv4 too
	if !v4[0].Addr.Is4() {
		t.Fatalf("AutoAssign gave %v", v4)
	}
	got, _ := e.m.HandleAddrs(e.ctx, "pod")
	if len(got) != 2 {
		t.Fatalf("handle holds %v", got)
	}
	if _, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "x", Host: "n1", Num4: 1, Pools: []string{"v6"}}); !errors.Is(err, ipam.ErrInvalid) {
		t.Fatalf("Num4 from a v6 pool: %v", err)
	}
	rel, err := e.m.ReleaseByHandle(e.ctx, "pod")
	if err != nil || len(rel) != 2 {
		t.Fatalf("release: %v %v", rel, err)
	}
	if err := e.m.ReleaseBlockAffinity(e.ctx, "n1", b); err != nil {
		t.Fatal(err)
	}
	if bs, _ := e.m.HostBlocks(e.ctx, "n1"); len(bs) != 1 || !bs[0].Addr().Is4() {
		t.Fatalf("blocks after release: %v", bs)
	}
	e.clean([]string{"n1"})
}

func TestAssignmentSpanningTooManyBlocks(t *testing.T) {
	e := newEnv(t, nil, pool("tiny", "10.244.0.0/16", 32))
	if _, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "big", Host: "n1", Num4: 100}); !errors.Is(err, ipam.ErrInvalid) {
		t.Fatalf("100 /32 blocks in one assignment: %v", err)
	}
	if got, _ := e.m.HandleAddrs(e.ctx, "big"); len(got) != 0 {
		t.Fatalf("partial assignment: %v", got)
	}
	e.assign("ok", "n1", 60)
	e.clean(nil)
}

func TestDualStack(t *testing.T) {
	e := newEnv(t, nil, pool("v4", "10.244.0.0/16", 0), pool("v6", "fd00:10:244::/48", 0))
	args := ipam.AutoAssignArgs{Handle: "pod", Host: "n1", Num4: 1, Num6: 2}
	as, err := e.m.AutoAssign(e.ctx, args)
	if err != nil || len(as) != 3 || !as[0].Addr.Is4() || !as[1].Addr.Is6() || !as[2].Addr.Is6() {
		t.Fatalf("dual stack: %+v %v", as, err)
	}
	if as[1].Block.Bits() != 122 || as[1].Addr != as[1].Block.Addr().Next() || as[2].Addr != as[1].Addr.Next() {
		t.Fatalf("IPv6 from a fresh /122: %+v", as[1:])
	}
	for i := range as {
		as[i].NewBlock = false
	}
	again, err := e.m.AutoAssign(e.ctx, args)
	if err != nil || !reflect.DeepEqual(again, as) {
		t.Fatalf("retry: %+v %v", again, err)
	}
	bs, _ := e.m.HostBlocks(e.ctx, "n1")
	if len(bs) != 2 {
		t.Fatalf("host blocks %v", bs)
	}
	// A handle holding IPv4 only gets its IPv6 added.
	v4 := e.assign("half", "n1", 1)[0]
	both, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "half", Host: "n1", Num4: 1, Num6: 1})
	if err != nil || len(both) != 2 || both[0] != v4 || !both[1].Addr.Is6() {
		t.Fatalf("add IPv6 to an IPv4 handle: %+v %v", both, err)
	}
	// IPv6 only.
	if v6, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: "six", Host: "n2", Num6: 1}); err != nil || len(v6) != 1 || !v6[0].Addr.Is6() {
		t.Fatalf("IPv6 only: %+v %v", v6, err)
	}
	for _, bad := range []ipam.AutoAssignArgs{
		{Handle: "x", Host: "n1", Num6: -1, Num4: 1},
		{Handle: "x", Host: "n1", Num6: ipam.MaxNum4 + 1},
		{Handle: "x", Host: "n1", Num6: 1, Pools: []string{"v4"}},
	} {
		if _, err := e.m.AutoAssign(e.ctx, bad); !errors.Is(err, ipam.ErrInvalid) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	rel, err := e.m.ReleaseByHandle(e.ctx, "pod")
	if err != nil || len(rel) != 3 {
		t.Fatalf("release %v %v", rel, err)
	}
	e.clean([]string{"n1", "n2"})
	// No IPv6 pool at all.
	e2 := newEnv(t, nil)
	if _, err := e2.m.AutoAssign(e2.ctx, ipam.AutoAssignArgs{Handle: "x", Host: "n1", Num4: 1, Num6: 1}); !errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("IPv6 without a pool: %v", err)
	}
	if got, _ := e2.m.HandleAddrs(e2.ctx, "x"); len(got) != 0 {
		t.Fatalf("partial dual-stack assignment: %v", got)
	}
}
