//go:build linux

package nat_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/tabbynet/tabby/nat"
	"github.com/tabbynet/tabby/nat/nattest"
)

// dualDesired is seedDesired with an IPv6 pool, IPv6 peers and an IPv6
// address for one of the two pods.
func dualDesired() nat.Desired {
	d := seedDesired()
	d.Pools = append(d.Pools, nat.Pool{CIDR: pfx("fd00:10:244::/48"), NATOutgoing: true})
	d.ExcludeDestinations = append(d.ExcludeDestinations, pfx("2001:db8:4:7::/64"))
	d.VXLANPeers = append(d.VXLANPeers, addr("2001:db8:4:7::62"), addr("2001:db8:4:7::60"))
	d.Workloads[0].Addrs = append(d.Workloads[0].Addrs, addr("fd00:10:244:eb00::87"))
	return d
}

func TestGoldenDualStack(t *testing.T) {
	m, _ := newFake(t, nil)
	mustSync(t, m, dualDesired())
	golden(t, "dualstack.golden", m.Render())
	if got := dump(t, m); got != m.Render() {
		t.Fatalf("dump of the fake differs from render\n%s", got)
	}
}

func TestGoldenDualStackSNATTunnel(t *testing.T) {
	m, _ := newFake(t, &nat.Config{TunnelInterface: "vxlan.calico", TunnelInterface6: "vxlan-v6.calico"})
	d := dualDesired()
	d.SNATTo, d.SNATTo6 = addr("192.0.2.10"), addr("2001:db8::10")
	mustSync(t, m, d)
	golden(t, "dualstack-snat-tunnel.golden", m.Render())
	if got := dump(t, m); got != m.Render() {
		t.Fatalf("dump of the fake differs from render\n%s", got)
	}
}

// An IPv4-only node's table is exactly what the previous version wrote
// (masquerade.golden), so an upgrade finds nothing to do; adding an IPv6
// pool adds the ip6 table without touching the ip one; dropping the IPv4
// pools deletes the ip table, in the same transaction as the changes of
// the ip6 one.
func TestDualStackTransitions(t *testing.T) {
	m, fc := newFake(t, nil)
	mustSync(t, m, seedDesired())
	golden(t, "masquerade.golden", m.Render())
	ipRules := ruleHandles(t, fc)

	mustSync(t, m, dualDesired())
	wantResult(t, m, "add IPv6", nat.Result{Writes: 1, Rebuilt: true, Reason: "ip6: table missing", Added: 8})
	if got := ruleHandles(t, fc)[:len(ipRules)]; !equalU64(got, ipRules) {
		t.Fatalf("adding the ip6 table replaced the ip rules: %v, was %v", got, ipRules)
	}
	if !strings.Contains(dump(t, m), "table ip6 tabby {") {
		t.Fatalf("no ip6 table\n%s", dump(t, m))
	}

	// A peer of each family: one transaction, element changes only.
	d := dualDesired()
	d.VXLANPeers = append(d.VXLANPeers, addr("10.4.7.63"), addr("2001:db8:4:7::63"))
	before := fc.Stats().Flushes
	mustSync(t, m, d)
	wantResult(t, m, "peers", nat.Result{Writes: 1, Added: 2})
	if fc.Stats().Flushes != before+1 {
		t.Fatalf("%d transactions, want 1", fc.Stats().Flushes-before)
	}
	mustSync(t, m, d)
	wantResult(t, m, "no-op", nat.Result{})

	// IPv6 only.
	v6 := nat.Desired{
		Pools:      []nat.Pool{{CIDR: pfx("fd00:10:244::/48"), NATOutgoing: true}},
		VXLANPeers: []netip.Addr{addr("2001:db8:4:7::62")},
		Workloads:  []nat.Workload{{Interface: "cali6ff8e3ade03", Addrs: []netip.Addr{addr("fd00:10:244:eb00::87")}}},
	}
	before = fc.Stats().Flushes
	mustSync(t, m, v6)
	if fc.Stats().Flushes != before+1 {
		t.Fatalf("%d transactions, want 1", fc.Stats().Flushes-before)
	}
	if r := m.LastResult(); !r.Rebuilt || r.Reason != "ip: no pool of the family" {
		t.Fatalf("IPv6 only: %+v", r)
	}
	if got := dump(t, m); strings.Contains(got, "table ip tabby") || got != m.Render() {
		t.Fatalf("IPv6 only: dump\n%s\nrender\n%s", got, m.Render())
	}
	if err := m.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, m); got != "" {
		t.Fatalf("after Cleanup:\n%s", got)
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Both tables change in one transaction: when the kernel rejects it,
// neither changed.
func TestDualStackFailedCommitChangesNeither(t *testing.T) {
	m, fc := newFake(t, nil)
	mustSync(t, m, dualDesired())
	prev := dump(t, m)
	d := dualDesired()
	d.VXLANPeers = append(d.VXLANPeers, addr("10.4.7.63"), addr("2001:db8:4:7::63"))
	fc.FailNextFlush(errors.New("injected"))
	if err := m.SetDesired(d); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(context.Background()); err == nil {
		t.Fatal("Sync succeeded")
	}
	if got := dump(t, m); got != prev {
		t.Fatalf("failed commit changed the tables\n%s", got)
	}
	mustSync(t, m, d)
	if got := dump(t, m); got != m.Render() {
		t.Fatalf("retry did not converge\n%s", got)
	}
}

// Someone flushes the ip6 table's sets: only that table is rebuilt, the ip
// table's rules keep their handles.
func TestDualStackRebuildsOnlyTheDamagedTable(t *testing.T) {
	m, fc := newFake(t, nil)
	mustSync(t, m, dualDesired())
	ipRules := ruleHandles(t, fc)[:5]
	tb := &nftables.Table{Name: "tabby", Family: nftables.TableFamilyIPv6}
	fc.DelTable(tb)
	fc.AddTable(tb)
	if err := fc.Flush(); err != nil {
		t.Fatal(err)
	}
	mustSync(t, m, dualDesired())
	if r := m.LastResult(); !r.Rebuilt || !strings.HasPrefix(r.Reason, "ip6: ") {
		t.Fatalf("%+v", r)
	}
	if got := ruleHandles(t, fc)[:5]; !equalU64(got, ipRules) {
		t.Fatalf("ip rules replaced: %v, were %v", got, ipRules)
	}
	if got := dump(t, m); got != m.Render() {
		t.Fatalf("not repaired\n%s", got)
	}
}

func TestDualStackValidation(t *testing.T) {
	bad := []struct {
		name string
		mod  func(*nat.Desired)
		want error
	}{
		{"ipv6 peer without ipv6 pool", func(d *nat.Desired) { d.Pools = d.Pools[:1]; d.ExcludeDestinations = d.ExcludeDestinations[:1] }, nat.ErrWrongFamily},
		{"4in6 peer", func(d *nat.Desired) { d.VXLANPeers = append(d.VXLANPeers, addr("::ffff:10.4.7.9")) }, nat.ErrWrongFamily},
		{"4in6 pod", func(d *nat.Desired) {
			d.Workloads[1].Addrs = append(d.Workloads[1].Addrs, addr("::ffff:10.244.235.9"))
		}, nat.ErrWrongFamily},
		{"ipv6 SNATTo", func(d *nat.Desired) { d.SNATTo = addr("2001:db8::1") }, nat.ErrWrongFamily},
		{"ipv4 SNATTo6", func(d *nat.Desired) { d.SNATTo6 = addr("192.0.2.1") }, nat.ErrWrongFamily},
		{"ipv6 host bits", func(d *nat.Desired) { d.Pools[1].CIDR = pfx("fd00:10:244::1/48") }, nat.ErrInvalidPrefix},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newFake(t, nil)
			d := dualDesired()
			tc.mod(&d)
			var ve *nat.ValidationError
			if err := m.SetDesired(d); !errors.Is(err, tc.want) || !errors.As(err, &ve) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// Valid IPv6 everywhere is accepted.
	m, _ := newFake(t, nil)
	d := dualDesired()
	d.SNATTo6 = addr("2001:db8::1")
	if err := m.SetDesired(d); err != nil {
		t.Fatal(err)
	}
}

// The fake and the kernel agree on the dual-stack tables: element updates
// of both families, IPv6 intervals up to ffff:...:ffff, one transaction.
func TestContractDualStack(t *testing.T) {
	contract(t, func(t *testing.T, m *nat.Manager, c nat.Conn, flushes func() int) {
		ctx := context.Background()
		d := dualDesired()
		d.ExcludeDestinations = append(d.ExcludeDestinations, pfx("ff00::/8"), pfx("fe80::/10"))
		if err := m.SetDesired(d); err != nil {
			t.Fatal(err)
		}
		if err := m.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if got, _ := m.Dump(ctx); got != m.Render() {
			t.Fatalf("dump differs from render\n--- dump\n%s\n--- render\n%s", got, m.Render())
		}
		d.Pools[1].CIDR = pfx("fd00:10:244::/47")
		d.VXLANPeers = d.VXLANPeers[1:]
		d.Workloads[1].Addrs = append(d.Workloads[1].Addrs, addr("fd00:10:244:eb00::8c"))
		if err := m.SetDesired(d); err != nil {
			t.Fatal(err)
		}
		n := flushes()
		if err := m.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if r := m.LastResult(); r.Rebuilt || flushes() != n+1 {
			t.Fatalf("update: %+v, %d transactions", r, flushes()-n)
		}
		if got, _ := m.Dump(ctx); got != m.Render() {
			t.Fatalf("dump differs from render\n--- dump\n%s\n--- render\n%s", got, m.Render())
		}
		n = flushes()
		if err := m.Sync(ctx); err != nil || flushes() != n {
			t.Fatalf("repeat: %v, %d transactions", err, flushes()-n)
		}
	})
}

var _ nat.Conn = (*nattest.Conn)(nil)
