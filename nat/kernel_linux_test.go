//go:build linux

package nat_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/nftables"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/nat"
	"github.com/tabbynet/tabby/nat/nattest"
)

// kernelManager returns a Manager on a real nftables connection inside ns,
// and that connection wrapped to count transactions.
func kernelManager(t testing.TB, ns *kerneltest.NS, cfg *nat.Config) (*nat.Manager, *countingConn) {
	t.Helper()
	c, err := nat.Dial(int(ns.NS))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseLasting() })
	cc := &countingConn{Conn: c}
	m, err := nat.New(cc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, cc
}

// countingConn counts Flush calls (transactions sent) on a real connection
// and can append a failing message to the next batch.
type countingConn struct {
	*nftables.Conn
	flushes  int
	poisoned bool
}

func (c *countingConn) Flush() error {
	c.flushes++
	if c.poisoned {
		c.poisoned = false
		// A set that does not exist: the kernel rejects the whole batch.
		bogus := &nftables.Set{Table: &nftables.Table{Name: "tabby", Family: nftables.TableFamilyIPv4}, Name: "no_such_set", KeyType: nftables.TypeIPAddr}
		_ = c.Conn.SetAddElements(bogus, []nftables.SetElement{{Key: []byte{192, 0, 2, 9}}})
	}
	return c.Conn.Flush()
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestKernelSyncDumpMatchesRender(t *testing.T) {
	ns := kerneltest.NewNS(t, "nat")
	m, cc := kernelManager(t, ns, nil)
	ctx := context.Background()
	d := nat.Desired{
		Pools:               []nat.Pool{{CIDR: pfx("10.244.0.0/16"), NATOutgoing: true}, {CIDR: pfx("10.245.0.0/24")}, {CIDR: pfx("10.245.1.0/24"), NATOutgoing: true}},
		ExcludeDestinations: []netip.Prefix{pfx("203.0.113.0/24"), pfx("0.0.0.0/1")},
		VXLANPeers:          []netip.Addr{addr("10.4.7.61"), addr("10.4.7.62")},
		Workloads:           []nat.Workload{{Interface: "cali6ff8e3ade03", Addrs: []netip.Addr{addr("10.244.235.135")}}},
	}
	if err := m.SetDesired(d); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := m.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := m.Render(); got != want {
		t.Fatalf("kernel dump differs from render\n--- kernel\n%s\n--- render\n%s", got, want)
	}
	t.Log("\n" + got)
	n := cc.flushes
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if cc.flushes != n {
		t.Fatalf("no-op Sync flushed %d times", cc.flushes-n)
	}
}

func kernelRuleHandles(t testing.TB, c nat.Conn) []uint64 {
	t.Helper()
	tb := &nftables.Table{Name: "tabby", Family: nftables.TableFamilyIPv4}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	var hs []uint64
	for _, ch := range chains {
		if ch.Table.Name != "tabby" {
			continue
		}
		rs, err := c.GetRules(tb, ch)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			hs = append(hs, r.Handle)
		}
	}
	return hs
}

// contract runs the same assertions against the fake and the kernel: the
// fake is only worth what it matches.
func contract(t *testing.T, run func(t *testing.T, m *nat.Manager, c nat.Conn, flushes func() int)) {
	t.Run("fake", func(t *testing.T) {
		fc := &nattest.Conn{}
		m, err := nat.New(fc, nil)
		if err != nil {
			t.Fatal(err)
		}
		run(t, m, fc, func() int { return fc.Stats().Flushes })
	})
	t.Run("kernel", func(t *testing.T) {
		ns := kerneltest.NewNS(t, "natcontract")
		m, cc := kernelManager(t, ns, nil)
		run(t, m, cc.Conn, func() int { return cc.flushes })
	})
}

// Incremental updates: adjacent and resized intervals, an interval up to
// 255.255.255.255, replaced peers and pods; each one transaction of element
// changes that leaves the rules alone, and a repeat writes nothing.
func TestContractIncrementalUpdates(t *testing.T) {
	contract(t, func(t *testing.T, m *nat.Manager, c nat.Conn, flushes func() int) {
		ctx := context.Background()
		check := func(step string) {
			t.Helper()
			got, err := m.Dump(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got != m.Render() {
				t.Fatalf("%s: dump differs from render\n--- dump\n%s\n--- render\n%s", step, got, m.Render())
			}
		}
		mustSync(t, m, seedDesired())
		check("initial")
		handles := fmt.Sprint(kernelRuleHandles(t, c))
		steps := []struct {
			name string
			mod  func(*nat.Desired)
		}{
			{"adjacent pools", func(d *nat.Desired) {
				d.Pools = append(d.Pools, nat.Pool{CIDR: pfx("10.245.0.0/25"), NATOutgoing: true}, nat.Pool{CIDR: pfx("10.245.0.128/25")})
			}},
			{"resize in place", func(d *nat.Desired) {
				d.Pools = append(d.Pools, nat.Pool{CIDR: pfx("10.245.0.0/24"), NATOutgoing: true})
			}},
			{"interval to the top", func(d *nat.Desired) {
				d.ExcludeDestinations = []netip.Prefix{pfx("224.0.0.0/3"), pfx("0.0.0.0/8")}
			}},
			{"peers and pods replaced", func(d *nat.Desired) {
				d.VXLANPeers = []netip.Addr{addr("10.4.7.63")}
				d.Workloads = d.Workloads[1:]
				d.Workloads[0].Addrs = append(d.Workloads[0].Addrs, addr("10.244.235.141"))
			}},
			{"back to the start", func(*nat.Desired) {}},
		}
		for _, s := range steps {
			d := seedDesired()
			s.mod(&d)
			n := flushes()
			mustSync(t, m, d)
			check(s.name)
			if got := flushes() - n; got != 1 {
				t.Fatalf("%s: %d transactions, want 1", s.name, got)
			}
			if h := fmt.Sprint(kernelRuleHandles(t, c)); h != handles {
				t.Fatalf("%s: rules rewritten: %s -> %s", s.name, handles, h)
			}
			mustSync(t, m, d)
			if got := flushes() - n; got != 1 {
				t.Fatalf("%s: repeated Sync wrote", s.name)
			}
		}
	})
}

// Foreign tables survive Sync and Cleanup; Cleanup without a table writes
// nothing.
func TestContractOtherTablesUntouched(t *testing.T) {
	contract(t, func(t *testing.T, m *nat.Manager, c nat.Conn, flushes func() int) {
		ctx := context.Background()
		otherTable(t, c)
		mustSync(t, m, seedDesired())
		if got, want := listTables(t, c), "2/kube-proxy(1 rules) 2/tabby 1/tabby"; got != want {
			t.Fatalf("tables %q, want %q", got, want)
		}
		if err := m.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		if got, want := listTables(t, c), "2/kube-proxy(1 rules) 1/tabby"; got != want {
			t.Fatalf("after cleanup: tables %q, want %q", got, want)
		}
		n := flushes()
		if err := m.Cleanup(ctx); err != nil || flushes() != n {
			t.Fatalf("second Cleanup: err %v, %d transactions", err, flushes()-n)
		}
	})
}

// A transaction the kernel rejects leaves the previous ruleset in place.
func TestKernelFailedCommitIsAtomic(t *testing.T) {
	ns := kerneltest.NewNS(t, "natfail")
	m, cc := kernelManager(t, ns, nil)
	ctx := context.Background()
	mustSync(t, m, seedDesired())
	before, _ := m.Dump(ctx)
	for _, name := range []string{"element update", "rebuild"} {
		d := seedDesired()
		d.VXLANPeers = append(d.VXLANPeers, addr("10.4.7.99"))
		if name == "rebuild" {
			d.SNATTo = addr("192.0.2.10")
		}
		if err := m.SetDesired(d); err != nil {
			t.Fatal(err)
		}
		cc.poisoned = true
		if err := m.Sync(ctx); err == nil {
			t.Fatalf("%s: poisoned transaction succeeded", name)
		}
		if after, _ := m.Dump(ctx); after != before {
			t.Fatalf("%s: failed commit changed the ruleset\n%s", name, after)
		}
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Dump(ctx); got != m.Render() {
		t.Fatal("retry did not converge")
	}
}

// The kernel holds the same number of rules for 10 and for 1,000 pods.
func TestKernelRuleCountConstant(t *testing.T) {
	count := func(pods int) int {
		ns := kerneltest.NewNS(t, "natcount")
		m, cc := kernelManager(t, ns, nil)
		d := seedDesired()
		d.Workloads = benchWorkloads(pods)
		d.Pools = benchPools(pods / 10)
		mustSync(t, m, d)
		return len(kernelRuleHandles(t, cc.Conn))
	}
	if a, b := count(10), count(1000); a != b {
		t.Fatalf("10 pods: %d rules, 1000 pods: %d rules", a, b)
	}
}

func TestKernelOpenOwnsItsConnection(t *testing.T) {
	ns := kerneltest.NewNS(t, "natopen")
	m, err := nat.Open(int(ns.NS), &nat.Config{Table: "tabby-open"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mustSync(t, m, seedDesired())
	if got, err := m.Dump(ctx); err != nil || got != m.Render() {
		t.Fatalf("dump: %v\n%s", err, got)
	}
	if err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Dump(ctx); err != nil || got != "" {
		t.Fatalf("after cleanup: %v %q", err, got)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// A transaction larger than the default netlink send buffer (20,000 peers,
// about 560 KiB) goes through: Dial raises the buffer.
func TestKernelLargeTransaction(t *testing.T) {
	ns := kerneltest.NewNS(t, "natbig")
	m, cc := kernelManager(t, ns, nil)
	d := seedDesired()
	d.VXLANPeers = benchPeers(20000, 0)
	mustSync(t, m, d)
	n := cc.flushes
	mustSync(t, m, d)
	if cc.flushes != n {
		t.Fatal("no-op Sync wrote")
	}
}
