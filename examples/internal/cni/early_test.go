package cni_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/examples/internal/cni"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/netlinktest"
)

// interceptTxn runs before each write transaction of the plugin's store;
// an error fails the transaction without applying it.
type interceptTxn struct {
	datastore.Store
	before func(ctx context.Context, ops []datastore.Op) error
}

func (s interceptTxn) Close() error { return nil }
func (s interceptTxn) Txn(ctx context.Context, ops ...datastore.Op) (int64, error) {
	if err := s.before(ctx, ops); err != nil {
		return 0, err
	}
	return s.Store.Txn(ctx, ops...)
}

// assignTxn reports whether ops are an assignment's (they write a handle
// record; a block claim does not).
func assignTxn(ops []datastore.Op) bool {
	return slices.ContainsFunc(ops, func(op datastore.Op) bool {
		return op.Type != datastore.OpCheck && strings.Contains(op.Key, "/handles/")
	})
}

func (h *harness) intercept(before func(ctx context.Context, ops []datastore.Op) error) {
	h.env.OpenStore = func(context.Context, string) (datastore.Store, error) {
		return interceptTxn{Store: h.st, before: before}, nil
	}
	h.p = cni.New(h.env)
}

// podAddrs lists the addresses on eth0 in the pod namespace at path.
func podAddrs(t *testing.T, k *netlinktest.Kernel, path string) []netip.Addr {
	t.Helper()
	ns, err := k.NamespaceAt(path)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := ns.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	as, err := ns.AddrList(lk, 0) // AF_UNSPEC: every family
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.Unmap().IsLinkLocalUnicast() {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// waitLink waits until the host interface exists (the early plumbing has
// made it); the deadline only bounds a broken test.
func waitLink(ctx context.Context, h *harness) error {
	for ctx.Err() == nil {
		if len(h.hostLinks()) > 0 {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return errors.New("the pod was not plumbed while IPAM committed")
}

// The pod is plumbed while IPAM commits: when the commit fails, ADD fails
// and leaves neither the address nor any interface.
func TestEarlyPlumbingUndoneWhenCommitFails(t *testing.T) {
	h := newHarness(t)
	h.netns("/run/netns/pod1")
	h.intercept(func(ctx context.Context, ops []datastore.Op) error {
		if !assignTxn(ops) {
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := waitLink(wctx, h); err != nil {
			return err
		}
		return fmt.Errorf("commit: %w", datastore.ErrUnavailable)
	})
	_, err := h.p.Add(args(baseConf, "c1", "/run/netns/pod1", ""))
	if c := code(t, err); c != cni.CodeTryAgainLater {
		t.Fatalf("code %d (%v), want %d", c, err, cni.CodeTryAgainLater)
	}
	if strings.Contains(err.Error(), "not plumbed") {
		t.Fatal(err)
	}
	if l := h.hostLinks(); len(l) != 0 {
		t.Fatalf("host links left after the failed commit: %v", l)
	}
	ns, _ := h.k.NamespaceAt("/run/netns/pod1")
	if _, err := ns.LinkByName("eth0"); err == nil {
		t.Fatal("eth0 left in the pod after the failed commit")
	}
	if a := h.allocations(); len(a) != 0 {
		t.Fatalf("allocations after the failed commit: %v", a)
	}
}

// Another writer takes the address IPAM chose before it commits: IPAM
// starts over with another address, and the pod ends up with that one
// only (the early plumbing with the lost address is replaced).
func TestEarlyPlumbingReplacedAfterConflict(t *testing.T) {
	h := newHarness(t)
	h.netns("/run/netns/pod1")
	other := h.ipam()
	var stolen netip.Addr
	h.intercept(func(ctx context.Context, ops []datastore.Op) error {
		if !assignTxn(ops) || stolen.IsValid() {
			return nil
		}
		if err := waitLink(ctx, h); err != nil {
			return err
		}
		as, err := other.AutoAssign(ctx, ipam.AutoAssignArgs{Handle: "intruder", Host: "worker1", Num4: 1})
		if err != nil {
			return err
		}
		stolen = as[0].Addr
		return nil
	})
	r, err := h.p.Add(args(baseConf, "c1", "/run/netns/pod1", ""))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := netip.AddrFromSlice(result(t, r).IPs[0].Address.IP)
	got = got.Unmap()
	if !stolen.IsValid() || got == stolen {
		t.Fatalf("ADD got %v, the intruder %v: want different addresses", got, stolen)
	}
	if pa := podAddrs(t, h.k, "/run/netns/pod1"); !slices.Equal(pa, []netip.Addr{got}) {
		t.Fatalf("pod addresses %v, want only %v", pa, got)
	}
	links := h.hostLinks()
	if len(links) != 1 {
		t.Fatalf("host links %v", links)
	}
	lk, err := h.k.LinkByName(links[0])
	if err != nil {
		t.Fatal(err)
	}
	if a := lk.Attrs().Alias; a != "tabby:tabby-net:c1" {
		t.Fatalf("alias %q after the second Setup", a)
	}
	routes, err := h.k.RouteList(lk, 2) // AF_INET
	if err != nil {
		t.Fatal(err)
	}
	var dsts []string
	for _, rt := range routes {
		dsts = append(dsts, rt.Dst.String())
	}
	if !slices.Equal(dsts, []string{got.String() + "/32"}) {
		t.Fatalf("host routes %v, want only %v/32", dsts, got)
	}
}

// An interface of the workload that exists already (a repeated ADD, an
// earlier sandbox) is never touched before the commit: ADD plumbs after it.
func TestNoEarlyPlumbingOverAnExistingInterface(t *testing.T) {
	h := newHarness(t)
	h.netns("/run/netns/pod1")
	if _, err := h.p.Add(args(baseConf, "c1", "/run/netns/pod1", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p")); err != nil {
		t.Fatal(err)
	}
	host := h.hostLinks()
	before, err := h.k.LinkByName(host[0])
	if err != nil {
		t.Fatal(err)
	}
	h.intercept(func(ctx context.Context, ops []datastore.Op) error {
		if !assignTxn(ops) {
			return nil
		}
		// Give an early Setup (there must be none) time to act.
		time.Sleep(20 * time.Millisecond)
		if l := h.hostLinks(); !slices.Equal(l, host) {
			return fmt.Errorf("host interfaces changed before the commit: %v", l)
		}
		lk, err := h.k.LinkByName(host[0])
		if err != nil {
			return err
		}
		if lk.Attrs().Index != before.Attrs().Index {
			return fmt.Errorf("%s was made again before the commit", host[0])
		}
		return nil
	})
	// The same pod, a new sandbox (container c2): one commit, no early
	// plumbing over c1's interface.
	h.netns("/run/netns/pod2")
	if _, err := h.p.Add(args(baseConf, "c2", "/run/netns/pod2", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p")); err != nil {
		t.Fatal(err)
	}
}

// On a bolt store (held for each assignment and release, plumbed while it
// commits), ADDs and DELs leave the store consistent and the kernel clean.
func TestAddDelOnBolt(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(t.TempDir(), "tabby.db")
	h.env.OpenStore = func(ctx context.Context, _ string) (datastore.Store, error) {
		return bolt.Open(ctx, path, &bolt.Options{NoBackup: true})
	}
	h.p = cni.New(h.env)
	var got []netip.Addr
	for i := range 3 {
		ns := fmt.Sprintf("/run/netns/pod%d", i)
		h.netns(ns)
		r, err := h.p.Add(args(baseConf, fmt.Sprintf("c%d", i), ns, ""))
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netip.AddrFromSlice(result(t, r).IPs[0].Address.IP)
		got = append(got, a.Unmap())
		if pa := podAddrs(t, h.k, ns); !slices.Equal(pa, got[i:]) {
			t.Fatalf("pod %d has %v, want %v", i, pa, got[i])
		}
	}
	st, err := bolt.Open(context.Background(), path, &bolt.Options{NoBackup: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := ipam.New(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	allocs, err := m.Allocations(context.Background())
	if err != nil || len(allocs) != 3 {
		t.Fatalf("allocations %v %v, want 3", allocs, err)
	}
	if len(h.hostLinks()) != 3 {
		t.Fatalf("host links %v", h.hostLinks())
	}
	for i, name := range h.hostLinks() {
		lk, err := h.k.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		// Labelled (by the early plumbing) with the network and workload.
		if a := lk.Attrs().Alias; !strings.HasPrefix(a, "tabby:tabby-net:") {
			t.Fatalf("host link %d %s: alias %q", i, name, a)
		}
	}
	for i := range 3 {
		if err := h.p.Del(args(baseConf, fmt.Sprintf("c%d", i), fmt.Sprintf("/run/netns/pod%d", i), "")); err != nil {
			t.Fatal(err)
		}
	}
	if allocs, err := m.Allocations(context.Background()); err != nil || len(allocs) != 0 {
		t.Fatalf("allocations after DEL %v %v", allocs, err)
	}
	if l := h.hostLinks(); len(l) != 0 {
		t.Fatalf("host links after DEL %v", l)
	}
	if err := st.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if probs, err := m.Check(context.Background(), []string{"worker1"}); err != nil || len(probs) != 0 {
		t.Fatalf("ipam check: %+v %v", probs, err)
	}
}

// A late DEL of a pod's old sandbox while the pod's new sandbox is being
// plumbed before its commit must not take the new interface for the old
// one's (its addresses are not allocated yet): DEL decides under the host
// lock, after the commit.
func TestLateDelDuringEarlyPlumbing(t *testing.T) {
	h := newHarness(t)
	const podArgs = "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"
	h.netns("/run/netns/old")
	if _, err := h.p.Add(args(baseConf, "old", "/run/netns/old", podArgs)); err != nil {
		t.Fatal(err)
	}
	// The old sandbox's namespace went away with its veth; its address is
	// still allocated until its DEL.
	lk, err := h.k.LinkByName(h.hostLinks()[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := h.k.LinkDel(lk); err != nil {
		t.Fatal(err)
	}
	// The host lock tells when a second holder waits.
	waiting := make(chan struct{}, 8)
	var mu sync.Mutex
	h.env.HostLock = func(context.Context, string) (func(), error) {
		if !mu.TryLock() {
			waiting <- struct{}{}
			mu.Lock()
		}
		return mu.Unlock, nil
	}
	delDone := make(chan error, 1)
	started := false
	h.intercept(func(ctx context.Context, ops []datastore.Op) error {
		if !assignTxn(ops) || started {
			return nil
		}
		started = true
		if err := waitLink(ctx, h); err != nil {
			return err
		}
		go func() { delDone <- h.p.Del(args(baseConf, "old", "/run/netns/old", podArgs)) }()
		select {
		case err := <-delDone:
			delDone <- err
		case <-waiting:
		}
		return nil
	})
	h.netns("/run/netns/new")
	r, err := h.p.Add(args(baseConf, "new", "/run/netns/new", podArgs))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-delDone; err != nil {
		t.Fatalf("late DEL: %v", err)
	}
	name := result(t, r).Interfaces[0].Name
	if l := h.hostLinks(); !slices.Equal(l, []string{name}) {
		t.Fatalf("host links %v after the late DEL, want the new sandbox's %s", l, name)
	}
	if a := h.allocations(); len(a) != 1 || a[0].Attrs["container"] != "new" {
		t.Fatalf("allocations %+v, want the new sandbox's only", a)
	}
}
