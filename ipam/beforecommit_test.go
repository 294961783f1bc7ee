package ipam_test

import (
	"slices"
	"testing"

	"github.com/tabbynet/tabby/ipam"
)

// BeforeCommit sees the addresses before they are stored, is called again
// when a conflict makes AutoAssign start over, and only what AutoAssign
// returns is allocated.
func TestAutoAssignBeforeCommit(t *testing.T) {
	e := newEnv(t, nil)
	other, err := ipam.New(e.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	var calls [][]ipam.Assigned
	args := ipam.AutoAssignArgs{Handle: "h1", Host: "n1", Num4: 1}
	args.BeforeCommit = func(as []ipam.Assigned) {
		calls = append(calls, as)
		held, err := e.m.HandleAddrs(e.ctx, "h1")
		if err != nil || len(held) != 0 {
			t.Errorf("handle holds %v (%v) before the commit", held, err)
		}
		if len(calls) == 1 {
			// Another process takes the address meanwhile: this commit
			// conflicts and AutoAssign starts over.
			if _, err := other.AssignIP(e.ctx, ipam.AssignIPArgs{Addr: as[0].Addr, Handle: "h2", Host: "n1"}); err != nil {
				t.Errorf("competing AssignIP: %v", err)
			}
		}
	}
	got, err := e.m.AutoAssign(e.ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 {
		t.Fatalf("BeforeCommit called %d times, want 2 (once more after the conflict)", len(calls))
	}
	if calls[0][0].Addr == calls[1][0].Addr {
		t.Fatalf("retry chose the taken address %v again", calls[0][0].Addr)
	}
	if !slices.Equal(calls[1], got) {
		t.Fatalf("last BeforeCommit %v, AutoAssign returned %v", calls[1], got)
	}
	held, err := e.m.HandleAddrs(e.ctx, "h1")
	if err != nil || len(held) != 1 || held[0] != got[0].Addr {
		t.Fatalf("handle h1 holds %v (%v), want %v", held, err, got[0].Addr)
	}

	// The handle holds its address already: nothing new, no call.
	calls = nil
	again, err := e.m.AutoAssign(e.ctx, args)
	if err != nil || len(again) != 1 || again[0].Addr != got[0].Addr {
		t.Fatalf("repeated AutoAssign: %v %v", again, err)
	}
	if len(calls) != 0 {
		t.Fatalf("BeforeCommit called %d times for a handle that holds its address", len(calls))
	}
}
