//go:build linux

package nat_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/nat"
	"github.com/tabbynet/tabby/nat/nattest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("%s differs (run with -update)\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

// seedDesired is the seed's worker1: pool 10.244.0.0/16 with NAT, peers
// master and worker2, two local pods.
func seedDesired() nat.Desired {
	return nat.Desired{
		Pools:               []nat.Pool{{CIDR: pfx("10.244.0.0/16"), NATOutgoing: true}},
		ExcludeDestinations: []netip.Prefix{pfx("10.4.7.0/24")},
		VXLANPeers:          []netip.Addr{addr("10.4.7.62"), addr("10.4.7.60")},
		Workloads: []nat.Workload{
			{Interface: "cali6ff8e3ade03", Addrs: []netip.Addr{addr("10.244.235.135")}},
			{Interface: "cali1292bd788a2", Addrs: []netip.Addr{addr("10.244.235.140")}},
		},
	}
}

func newFake(t *testing.T, cfg *nat.Config) (*nat.Manager, *nattest.Conn) {
	t.Helper()
	fc := &nattest.Conn{}
	m, err := nat.New(fc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, fc
}

func mustSync(t testing.TB, m *nat.Manager, d nat.Desired) {
	t.Helper()
	if err := m.SetDesired(d); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func dump(t *testing.T, m *nat.Manager) string {
	t.Helper()
	s, err := m.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGoldenMasquerade(t *testing.T) {
	m, _ := newFake(t, nil)
	mustSync(t, m, seedDesired())
	golden(t, "masquerade.golden", m.Render())
	if got := dump(t, m); got != m.Render() {
		t.Fatalf("dump of the fake differs from render\n%s", got)
	}
}

func TestGoldenSNATNoGuards(t *testing.T) {
	m, _ := newFake(t, &nat.Config{Table: "tabby-snat", VXLANPort: 8472, DisableVXLANGuard: true, DisableWorkloadGuard: true})
	d := seedDesired()
	d.SNATTo = addr("192.0.2.10")
	d.Pools = append(d.Pools, nat.Pool{CIDR: pfx("10.245.0.0/16")}, nat.Pool{CIDR: pfx("10.244.8.0/24"), NATOutgoing: true})
	mustSync(t, m, d)
	golden(t, "snat.golden", m.Render())
	if got := dump(t, m); got != m.Render() {
		t.Fatalf("dump of the fake differs from render\n%s", got)
	}
}

func TestGoldenTunnel(t *testing.T) {
	m, _ := newFake(t, &nat.Config{TunnelInterface: "vxlan.calico"})
	mustSync(t, m, seedDesired())
	golden(t, "tunnel.golden", m.Render())
	if got := dump(t, m); got != m.Render() {
		t.Fatalf("dump of the fake differs from render\n%s", got)
	}
}

func TestNoopSyncWritesNothing(t *testing.T) {
	m, fc := newFake(t, nil)
	mustSync(t, m, seedDesired())
	before := fc.Stats()
	for range 3 {
		mustSync(t, m, seedDesired()) // same state, SetDesired again
	}
	if after := fc.Stats(); after.Flushes != before.Flushes || after.Messages != before.Messages {
		t.Fatalf("no-op Syncs wrote: %+v -> %+v", before, after)
	}
	// The order of inputs does not matter either.
	d := seedDesired()
	d.Workloads[0], d.Workloads[1] = d.Workloads[1], d.Workloads[0]
	d.VXLANPeers[0], d.VXLANPeers[1] = d.VXLANPeers[1], d.VXLANPeers[0]
	mustSync(t, m, d)
	if after := fc.Stats(); after.Flushes != before.Flushes {
		t.Fatalf("reordered input caused a write")
	}
}

func ruleHandles(t *testing.T, fc *nattest.Conn) []uint64 {
	t.Helper()
	tb := &nftables.Table{Name: "tabby", Family: nftables.TableFamilyIPv4}
	chains, _ := fc.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	var hs []uint64
	for _, c := range chains {
		rs, err := fc.GetRules(tb, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			hs = append(hs, r.Handle)
		}
	}
	return hs
}

func TestIncrementalElementUpdates(t *testing.T) {
	m, fc := newFake(t, nil)
	mustSync(t, m, seedDesired())
	handles := ruleHandles(t, fc)
	before := fc.Stats()

	d := seedDesired()
	d.Pools = append(d.Pools, nat.Pool{CIDR: pfx("10.245.0.0/16"), NATOutgoing: true})
	d.VXLANPeers = append(d.VXLANPeers[:1], addr("10.4.7.63")) // one peer replaced
	d.Workloads = append(d.Workloads[:1], nat.Workload{Interface: "cali0000000000a", Addrs: []netip.Addr{addr("10.244.235.141")}})
	mustSync(t, m, d)
	after := fc.Stats()
	if after.Flushes != before.Flushes+1 {
		t.Fatalf("%d transactions, want 1", after.Flushes-before.Flushes)
	}
	// all_pools add, nat_pools add, vxlan_peers del+add,
	// workload_addrs del+add, workload_ifaces del+add.
	if n := after.Messages - before.Messages; n != 8 {
		t.Fatalf("%d messages, want 8 element messages", n)
	}
	if h := ruleHandles(t, fc); fmt.Sprint(h) != fmt.Sprint(handles) {
		t.Fatalf("rules were rewritten: handles %v -> %v", handles, h)
	}
	if got := dump(t, m); got != m.Render() {
		t.Fatalf("dump differs from render after update\n%s\n%s", got, m.Render())
	}

	// A pool resized in place (same start address).
	d.Pools[1].CIDR = pfx("10.245.0.0/17")
	mustSync(t, m, d)
	if got := dump(t, m); got != m.Render() || !strings.Contains(got, "10.245.0.0/17") {
		t.Fatalf("resize not applied\n%s", got)
	}
}

func TestRuleCountConstant(t *testing.T) {
	count := func(pods, pools int) int {
		m, fc := newFake(t, nil)
		d := seedDesired()
		d.Workloads = nil
		for i := range pods {
			d.Workloads = append(d.Workloads, nat.Workload{
				Interface: fmt.Sprintf("cali%011x", i),
				Addrs:     []netip.Addr{netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)})},
			})
		}
		for i := range pools {
			d.Pools = append(d.Pools, nat.Pool{CIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 245, byte(i), 0}), 24), NATOutgoing: i%2 == 0})
		}
		mustSync(t, m, d)
		return len(ruleHandles(t, fc))
	}
	a, b, c := count(10, 1), count(1000, 1), count(1000, 100)
	if a != b || b != c {
		t.Fatalf("rule count grows: 10 pods %d, 1000 pods %d, 1000 pods 100 pools %d", a, b, c)
	}
	if a != 5 {
		t.Fatalf("%d rules, want 5", a)
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	bad := []struct {
		name string
		mod  func(*nat.Desired)
		want error
	}{
		{"no pools", func(d *nat.Desired) { d.Pools = nil }, nat.ErrNoPools},
		{"invalid pool", func(d *nat.Desired) { d.Pools[0].CIDR = netip.Prefix{} }, nat.ErrInvalidPrefix},
		{"host bits", func(d *nat.Desired) { d.Pools[0].CIDR = pfx("10.244.1.5/16") }, nat.ErrInvalidPrefix},
		{"ipv6 pool", func(d *nat.Desired) { d.Pools[0].CIDR = pfx("fd00:10:244::/64") }, nat.ErrWrongFamily},
		{"4in6 pool", func(d *nat.Desired) { d.Pools[0].CIDR = pfx("::ffff:10.244.0.0/112") }, nat.ErrWrongFamily},
		{"ipv6 exclude", func(d *nat.Desired) { d.ExcludeDestinations = []netip.Prefix{pfx("2001:db8::/32")} }, nat.ErrWrongFamily},
		{"ipv6 peer", func(d *nat.Desired) { d.VXLANPeers = append(d.VXLANPeers, addr("2001:db8::1")) }, nat.ErrWrongFamily},
		{"zero peer", func(d *nat.Desired) { d.VXLANPeers = append(d.VXLANPeers, netip.Addr{}) }, nat.ErrInvalidPrefix},
		{"ipv6 snat", func(d *nat.Desired) { d.SNATTo = addr("2001:db8::1") }, nat.ErrWrongFamily},
		{"empty iface", func(d *nat.Desired) { d.Workloads[0].Interface = "" }, nat.ErrInvalidInterface},
		{"long iface", func(d *nat.Desired) { d.Workloads[0].Interface = "cali0123456789ab" }, nat.ErrInvalidInterface},
		{"ipv6 pod", func(d *nat.Desired) { d.Workloads[0].Addrs = []netip.Addr{addr("fd00::5")} }, nat.ErrWrongFamily},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			m, fc := newFake(t, nil)
			mustSync(t, m, seedDesired())
			before, prev := fc.Stats(), m.Render()
			d := seedDesired()
			tc.mod(&d)
			err := m.SetDesired(d)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var ve *nat.ValidationError
			if !errors.As(err, &ve) || ve.Field == "" {
				t.Fatalf("err %v is not a *ValidationError with a field", err)
			}
			if err := m.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			if fc.Stats().Flushes != before.Flushes || m.Render() != prev {
				t.Fatal("rejected input changed the desired state or wrote")
			}
		})
	}
}

func TestSyncBeforeSetDesired(t *testing.T) {
	m, fc := newFake(t, nil)
	if err := m.Sync(context.Background()); !errors.Is(err, nat.ErrNoDesiredState) {
		t.Fatalf("err = %v", err)
	}
	if fc.Stats().Flushes != 0 {
		t.Fatal("wrote")
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := nat.New(&nattest.Conn{}, &nat.Config{VXLANPort: 80}); !errors.Is(err, nat.ErrInvalidConfig) {
		t.Fatalf("port 80: %v", err)
	}
	if _, err := nat.New(&nattest.Conn{}, &nat.Config{TunnelInterface: "vxlan.calico.too-long"}); !errors.Is(err, nat.ErrInvalidInterface) {
		t.Fatalf("long tunnel name: %v", err)
	}
	if _, err := nat.New(&nattest.Conn{}, &nat.Config{PortGuardMark: 3}); !errors.Is(err, nat.ErrInvalidConfig) {
		t.Fatalf("two-bit mark: %v", err)
	}
	if _, err := nat.New(nil, nil); !errors.Is(err, nat.ErrInvalidConfig) {
		t.Fatalf("nil conn: %v", err)
	}
}

func TestFailedCommitKeepsPreviousRuleset(t *testing.T) {
	m, fc := newFake(t, nil)
	mustSync(t, m, seedDesired())
	prev := dump(t, m)
	d := seedDesired()
	d.Pools = append(d.Pools, nat.Pool{CIDR: pfx("10.245.0.0/16")})
	d.SNATTo = addr("192.0.2.10") // structural: forces a rebuild
	if err := m.SetDesired(d); err != nil {
		t.Fatal(err)
	}
	fc.FailNextFlush(unix.ENOMEM)
	if err := m.Sync(context.Background()); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("err = %v", err)
	}
	if got := dump(t, m); got != prev {
		t.Fatalf("failed commit changed the ruleset\n%s", got)
	}
	// The next Sync retries and succeeds.
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, m); got != m.Render() {
		t.Fatalf("retry did not converge\n%s", got)
	}
}

// otherTable writes a table that belongs to someone else (kube-proxy style).
func otherTable(t testing.TB, c nat.Conn) {
	t.Helper()
	tb := c.AddTable(&nftables.Table{Name: "kube-proxy", Family: nftables.TableFamilyIPv4})
	ch := c.AddChain(&nftables.Chain{Name: "nat-postrouting", Table: tb, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{&expr.Counter{}}})
	// A table with tabby's name in another family is not tabby's either.
	c.AddTable(&nftables.Table{Name: "tabby", Family: nftables.TableFamilyINet})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

func listTables(t testing.TB, c nat.Conn) string {
	t.Helper()
	var names []string
	for _, f := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyINet} {
		ts, err := c.ListTablesOfFamily(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range ts {
			n := fmt.Sprintf("%d/%s", tb.Family, tb.Name)
			if tb.Family == nftables.TableFamilyIPv4 && tb.Name == "kube-proxy" {
				rs, err := c.GetRules(tb, &nftables.Chain{Name: "nat-postrouting"})
				if err != nil {
					t.Fatal(err)
				}
				n += fmt.Sprintf("(%d rules)", len(rs))
			}
			names = append(names, n)
		}
	}
	return strings.Join(names, " ")
}

func TestStrayStateIsRepaired(t *testing.T) {
	m, fc := newFake(t, nil)
	mustSync(t, m, seedDesired())
	want := dump(t, m)
	tb := &nftables.Table{Name: "tabby", Family: nftables.TableFamilyIPv4}
	// Someone appends a rule to tabby's chain and an element to a set.
	fc.AddRule(&nftables.Rule{Table: tb, Chain: &nftables.Chain{Name: nat.ChainInput}, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
	_ = fc.SetAddElements(&nftables.Set{Table: tb, Name: nat.SetVXLANPeers}, []nftables.SetElement{{Key: []byte{192, 0, 2, 66}}})
	if err := fc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, m); got != want {
		t.Fatalf("stray state not repaired\n%s", got)
	}
}

func TestConfigChangeRebuilds(t *testing.T) {
	m, fc := newFake(t, nil)
	mustSync(t, m, seedDesired())
	m2, err := nat.New(fc, &nat.Config{VXLANPort: 8472}) // a restarted agent with a new port
	if err != nil {
		t.Fatal(err)
	}
	mustSync(t, m2, seedDesired())
	got := dump(t, m2)
	if got != m2.Render() || !strings.Contains(got, "th dport 8472") || !strings.Contains(got, "th sport 8472") {
		t.Fatalf("not rebuilt for the new port\n%s", got)
	}
}

func TestSNATPortRangeExcludesVXLANPort(t *testing.T) {
	for _, p := range []uint16{1024, 4789, 8472, 32767, 32768, 65535} {
		lo, hi := nat.SNATPortRange(p)
		if lo > hi || (p >= lo && p <= hi) || lo < 1024 {
			t.Errorf("port %d: range %d-%d", p, lo, hi)
		}
		if int(hi)-int(lo) < 30000 {
			t.Errorf("port %d: range %d-%d is small", p, lo, hi)
		}
	}
}

func TestOverlappingPrefixesCollapse(t *testing.T) {
	m, _ := newFake(t, nil)
	d := seedDesired()
	d.Pools = append(d.Pools, nat.Pool{CIDR: pfx("10.244.3.0/24"), NATOutgoing: true}, nat.Pool{CIDR: pfx("10.244.0.0/16")})
	mustSync(t, m, d)
	if got := dump(t, m); strings.Contains(got, "10.244.3.0/24") || got != m.Render() {
		t.Fatalf("contained prefix kept\n%s", got)
	}
}

// A rule replaced in place under tabby's comment is noticed and rewritten.
func TestRuleReplacedInPlaceIsRepaired(t *testing.T) {
	m, fc := newFake(t, nil)
	mustSync(t, m, seedDesired())
	want := dump(t, m)

	// Copy the table, with the input rule's expressions swapped for a
	// bare counter under the same comment.
	tb := &nftables.Table{Name: "tabby", Family: nftables.TableFamilyIPv4}
	sets, _ := fc.GetSets(tb)
	elems := map[string][]nftables.SetElement{}
	for _, s := range sets {
		elems[s.Name], _ = fc.GetSetElements(s)
	}
	chains, _ := fc.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	rules := map[string][]*nftables.Rule{}
	for _, c := range chains {
		rules[c.Name], _ = fc.GetRules(tb, c)
	}
	fc.DelTable(tb)
	fc.AddTable(tb)
	for _, s := range sets {
		if err := fc.AddSet(s, elems[s.Name]); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range chains {
		fc.AddChain(c)
		for _, r := range rules[c.Name] {
			if c.Name == nat.ChainInput {
				r.Exprs = []expr.Any{&expr.Counter{}}
			}
			fc.AddRule(r)
		}
	}
	if err := fc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, m); got == want || !strings.Contains(got, "\t\tcounter comment \"tabby:vxlan-guard:") {
		t.Fatalf("tampering failed\n%s", got)
	}
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, m); got != want {
		t.Fatalf("not repaired\n%s", got)
	}
}
