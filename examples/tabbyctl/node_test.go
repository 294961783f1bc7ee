package main

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/reflector"
)

// node withdraw removes a node's announcement (a graceful stop leaves it).
func TestNodeWithdraw(t *testing.T) {
	st := memory.New(nil)
	defer st.Close()
	r, _ := reflector.New(st, &reflector.Config{HoldTime: time.Hour})
	an, err := r.Announce(context.Background(), reflector.Announcement{
		Node: "worker2", NodeIP: netip.MustParseAddr("10.4.7.62"), TunnelIP: netip.MustParseAddr("10.244.189.64"),
		TunnelMAC: net.HardwareAddr{0x66, 0xa1, 0xd3, 0x0e, 0x5b, 0x02},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := an.Stop(context.Background(), true); err != nil { // graceful: kept
		t.Fatal(err)
	}
	if out, errs, rc := ctl(t, st, "node", "withdraw", "worker2"); rc != 0 || !strings.Contains(out, "withdrawn") {
		t.Fatalf("rc %d: %s %s", rc, out, errs)
	}
	if l, _, _ := r.List(context.Background()); len(l) != 0 {
		t.Errorf("still announced: %v", l)
	}
	if _, errs, rc := ctl(t, st, "node", "withdraw", "worker2"); rc != 1 || !strings.Contains(errs, "not announced") {
		t.Errorf("second withdraw: rc %d %s", rc, errs)
	}
	for _, bad := range [][]string{{"node", "withdraw"}, {"node", "withdraw", "a/b"}, {"node", "withdraw", "a", "b"}} {
		if _, _, rc := ctl(t, st, bad...); rc != 2 {
			t.Errorf("%v: rc %d, want 2", bad, rc)
		}
	}
}
