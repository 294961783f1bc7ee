package nat_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/nftables"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/nat"
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
