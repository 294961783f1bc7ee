package node

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/ipam"
)

// countingStore counts reads, to show the snapshot saves them.
type countingStore struct {
	datastore.Store
	gets int
}

func (c *countingStore) Get(ctx context.Context, k string) (datastore.KV, error) {
	c.gets++
	return c.Store.Get(ctx, k)
}

func TestSnapshotValidator(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Store: memory.New(nil)}
	m, _ := ipam.New(st, nil)
	if err := m.CreatePool(ctx, ipam.Pool{Name: "default", CIDR: netip.MustParsePrefix("10.244.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	blocks := map[string]netip.Prefix{}
	for _, h := range []string{"a", "b"} {
		if _, err := m.AssignTunnelAddress(ctx, h, ipam.IPv4); err != nil {
			t.Fatal(err)
		}
		bs, _ := m.HostBlocks(ctx, h)
		blocks[h] = bs[0]
	}
	now := time.Unix(1000, 0)
	v := &snapshotValidator{m: m, now: func() time.Time { return now }}
	if err := v.Owns(ctx, "a", []netip.Prefix{blocks["a"]}, nil); err != nil {
		t.Fatal(err)
	}
	before := st.gets
	for range 100 {
		if err := v.Owns(ctx, "b", []netip.Prefix{blocks["b"]}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if st.gets != before {
		t.Errorf("100 validations from a fresh snapshot made %d reads", st.gets-before)
	}
	// A hijack is not in the snapshot: IPAM answers, and refuses.
	if err := v.Owns(ctx, "b", []netip.Prefix{blocks["a"]}, nil); !errors.Is(err, ipam.ErrNotOwned) {
		t.Errorf("b announcing a's block: %v", err)
	}
	// Addresses always go to IPAM.
	if err := v.Owns(ctx, "b", nil, []netip.Addr{blocks["a"].Addr()}); !errors.Is(err, ipam.ErrNotOwned) {
		t.Errorf("b announcing a's tunnel address: %v", err)
	}
	// A block released after the snapshot is accepted for at most
	// snapshotTTL, then refused.
	if _, err := m.ReleaseHost(ctx, "a", ipam.ReleaseHostOptions{}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(snapshotTTL)
	if err := v.Owns(ctx, "a", []netip.Prefix{blocks["a"]}, nil); err == nil {
		t.Error("a released block still validates after the snapshot's TTL")
	}
}
