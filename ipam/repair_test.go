package ipam_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/ipam"
)

// overwrite replaces a record's value behind IPAM's back.
func (e *env) overwrite(key string, v []byte) {
	e.t.Helper()
	kv, err := e.st.Get(e.ctx, key)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.st.Update(e.ctx, key, v, kv.Revision); err != nil {
		e.t.Fatal(err)
	}
}

// A pod whose handle record is corrupt can still be released, by IP (from
// the block's side) and by handle (scanning the blocks) (issue 15.4: both
// failed and the address leaked for good).
func TestReleaseWithCorruptHandle(t *testing.T) {
	e := newEnv(t, nil)
	a := e.assign("pod-a", "n1", 2)
	b := e.assign("pod-b", "n1", 1)
	e.overwrite("tabby/ipam/handles/pod-a", []byte("{garbage"))
	e.overwrite("tabby/ipam/handles/pod-b", []byte{0xff})
	got, err := e.m.ReleaseIPs(e.ctx, ipam.Release{Addr: b[0].Addr})
	if err != nil || len(got) != 1 {
		t.Fatalf("release by IP with a corrupt handle: %v %v", got, err)
	}
	got, err = e.m.ReleaseByHandle(e.ctx, "pod-a")
	want := []netip.Addr{a[0].Addr, a[1].Addr}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("release by corrupt handle: %v %v, want %v", got, err, want)
	}
	if _, err := e.st.Get(e.ctx, "tabby/ipam/handles/pod-a"); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("corrupt handle record left: %v", err)
	}
	// What is left (pod-b's corrupt record) Check reports and Repair fixes.
	fixAll(t, e, 1)
}

// fixAll runs Check, Repair and Check again: nothing may be left.
func fixAll(t *testing.T, e *env, want int) {
	t.Helper()
	probs, err := e.m.Check(e.ctx, nil)
	if err != nil || len(probs) != want {
		t.Fatalf("check: %d problems %v, want %d: %v", len(probs), err, want, probs)
	}
	res, err := e.m.Repair(e.ctx, probs)
	if err != nil || len(res.Unfixed) != 0 {
		t.Fatalf("repair: %+v %v", res, err)
	}
	if probs, err := e.m.Check(e.ctx, nil); err != nil || len(probs) != 0 {
		t.Fatalf("after repair: %v %v", probs, err)
	}
}

// Every kind of problem Check reports is repairable, and repair keeps the
// allocations of live pods.
func TestRepairEveryProblem(t *testing.T) {
	e := newEnv(t, nil)
	e.m.AssignTunnelAddress(e.ctx, "n1", ipam.IPv4)
	pa := e.assign("pod-a", "n1", 2)
	pb := e.assign("pod-b", "n2", 1)
	pc := e.assign("pod-c", "n3", 1)
	e.assign("pod-d", "n4", 1)
	get := func(k string) []byte { kv, _ := e.st.Get(e.ctx, k); return kv.Value }
	// Corrupt handle, corrupt host, dangling handle entry (pod-d lists an
	// address it lost), orphan allocation (pod-c's record deleted), a
	// corrupt block (n2's), an affinity mismatch (n3's record emptied).
	e.overwrite("tabby/ipam/handles/pod-a", []byte("x"))
	e.overwrite("tabby/ipam/hosts/n1", []byte("x"))
	kv, _ := e.st.Get(e.ctx, "tabby/ipam/handles/pod-c")
	e.st.Delete(e.ctx, kv.Key, kv.Revision)
	blockB := "tabby/ipam/blocks/default/" + pb[0].Block.Addr().String() + "-26"
	e.overwrite(blockB, []byte{1, 2, 3})
	e.overwrite("tabby/ipam/hosts/n3", []byte(`{"host":"n3","blocks":[]}`))
	d := get("tabby/ipam/handles/pod-d")
	e.overwrite("tabby/ipam/handles/pod-d", append(d[:len(d)-2], []byte(`,{"pool":"default","block":"10.244.200.0/26","addr":"10.244.200.7","seq":3}]}`)...))
	probs, _ := e.m.Check(e.ctx, nil)
	kinds := map[ipam.ProblemKind]bool{}
	for _, p := range probs {
		kinds[p.Kind] = true
	}
	for _, k := range []ipam.ProblemKind{ipam.ProblemCorrupt, ipam.ProblemDanglingHandle, ipam.ProblemOrphanAllocation, ipam.ProblemAffinityMismatch} {
		if !kinds[k] {
			t.Fatalf("setup did not produce %v: %v", k, probs)
		}
	}
	res, err := e.m.Repair(e.ctx, probs)
	if err != nil || len(res.Unfixed) != 0 {
		t.Fatalf("repair: %+v %v", res, err)
	}
	if left, err := e.m.Check(e.ctx, nil); err != nil || len(left) != 0 {
		t.Fatalf("after repair: %v %v", left, err)
	}
	// Live pods keep their addresses and can be released normally.
	for h, as := range map[string][]ipam.Assigned{"pod-a": pa, "pod-b": pb, "pod-c": pc} {
		got, err := e.m.ReleaseByHandle(e.ctx, h)
		if err != nil || len(got) != len(as) {
			t.Fatalf("release %s after repair: %v %v, want %d", h, got, err, len(as))
		}
	}
	if blocks, _ := e.m.HostBlocks(e.ctx, "n1"); len(blocks) != 1 {
		t.Fatalf("n1's host record not rebuilt: %v", blocks)
	}
	// A corrupt pools record is dropped so that pools can be created again.
	// Until then the blocks fit no pool; Repair says so and leaves them.
	e.overwrite("tabby/ipam/pools", []byte("x"))
	probs, _ = e.m.Check(e.ctx, nil)
	res, err = e.m.Repair(e.ctx, probs)
	if err != nil || len(res.Fixed) != 1 || res.Fixed[0].Key != "tabby/ipam/pools" || len(res.Unfixed) != len(probs)-1 {
		t.Fatalf("repair of the pools record: %+v %v", res, err)
	}
	if err := e.m.CreatePool(e.ctx, pool("default", "10.244.0.0/16", 0)); err != nil {
		t.Fatal(err)
	}
	if left, _ := e.m.Check(e.ctx, nil); len(left) != 0 {
		t.Fatalf("after re-creating the pool: %v", left)
	}
}
