//go:build linux

package nat_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/nat"
)

// Benchmarks run against the kernel, in a namespace of their own (root).
// Results and commands: bench/nat/RESULTS.md.

func benchPools(n int) []nat.Pool {
	ps := make([]nat.Pool, n)
	for i := range ps {
		// /24 pools inside 10.244.0.0/16, every other one with NAT.
		ps[i] = nat.Pool{CIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24), NATOutgoing: i%2 == 0}
	}
	return ps
}

// benchPeers returns n underlay addresses in 10.4.0.0/16. They are only set
// elements: nothing is ever sent to them.
func benchPeers(n, offset int) []netip.Addr {
	as := make([]netip.Addr, n)
	for i := range as {
		v := i + offset + 256 // skip 10.4.0.x
		as[i] = netip.AddrFrom4([4]byte{10, 4, byte(v >> 8), byte(v)})
	}
	return as
}

func benchWorkloads(n int) []nat.Workload {
	ws := make([]nat.Workload, n)
	for i := range ws {
		ws[i] = nat.Workload{Interface: fmt.Sprintf("cali%011x", i), Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)})}}
	}
	return ws
}

func benchSync(b *testing.B, m *nat.Manager, d nat.Desired) {
	b.Helper()
	if err := m.SetDesired(d); err != nil {
		b.Fatal(err)
	}
	if err := m.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSyncPools: a Sync that creates the whole table with n pools, and
// a Sync with nothing to change (reads only).
func BenchmarkSyncPools(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		d := seedDesired()
		d.Pools = benchPools(n)
		b.Run(fmt.Sprintf("pools=%d/create", n), func(b *testing.B) {
			ns := kerneltest.NewNS(b, "natbench")
			m, _ := kernelManager(b, ns, nil)
			if err := m.SetDesired(d); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				b.StopTimer()
				if err := m.Cleanup(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := m.Sync(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("pools=%d/add-one", n), func(b *testing.B) {
			ns := kerneltest.NewNS(b, "natbench")
			m, _ := kernelManager(b, ns, nil)
			more := d
			more.Pools = append(benchPools(n), nat.Pool{CIDR: pfx("10.245.0.0/16"), NATOutgoing: true})
			benchSync(b, m, d)
			i := 0
			for b.Loop() {
				if i++; i%2 == 1 {
					benchSync(b, m, more)
				} else {
					benchSync(b, m, d)
				}
			}
		})
		b.Run(fmt.Sprintf("pools=%d/noop", n), func(b *testing.B) {
			ns := kerneltest.NewNS(b, "natbench")
			m, cc := kernelManager(b, ns, nil)
			benchSync(b, m, d)
			n := cc.flushes
			for b.Loop() {
				if err := m.Sync(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			if cc.flushes != n {
				b.Fatal("no-op Sync wrote")
			}
		})
	}
}

// BenchmarkAllowList5000: the VXLAN allow-list with 5,000 peers.
//   - load: 0 -> 5,000 peers in an existing table (one Sync);
//   - change-one: one peer replaced while 5,000 are present;
//   - replace-all: all 5,000 peers replaced by 5,000 others.
func BenchmarkAllowList5000(b *testing.B) {
	const n = 5000
	base := seedDesired()
	base.VXLANPeers = nil
	full := base
	full.VXLANPeers = benchPeers(n, 0)
	other := base
	other.VXLANPeers = benchPeers(n, n)
	oneOff := base
	oneOff.VXLANPeers = append(benchPeers(n-1, 0), benchPeers(1, 2*n)...)

	b.Run("load", func(b *testing.B) {
		ns := kerneltest.NewNS(b, "natbench")
		m, _ := kernelManager(b, ns, nil)
		benchSync(b, m, base)
		for b.Loop() {
			benchSync(b, m, full)
			b.StopTimer()
			benchSync(b, m, base)
			b.StartTimer()
		}
	})
	b.Run("change-one", func(b *testing.B) {
		ns := kerneltest.NewNS(b, "natbench")
		m, _ := kernelManager(b, ns, nil)
		benchSync(b, m, full)
		i := 0
		for b.Loop() {
			if i++; i%2 == 1 {
				benchSync(b, m, oneOff)
			} else {
				benchSync(b, m, full)
			}
		}
	})
	b.Run("replace-all", func(b *testing.B) {
		ns := kerneltest.NewNS(b, "natbench")
		m, _ := kernelManager(b, ns, nil)
		benchSync(b, m, full)
		i := 0
		for b.Loop() {
			if i++; i%2 == 1 {
				benchSync(b, m, other)
			} else {
				benchSync(b, m, full)
			}
		}
	})
}

// BenchmarkWorkloads: a table with n pods created from scratch; reports the
// rule count in the kernel, which must not depend on n.
func BenchmarkWorkloads(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			ns := kerneltest.NewNS(b, "natbench")
			m, cc := kernelManager(b, ns, nil)
			d := seedDesired()
			d.Workloads = benchWorkloads(n)
			if err := m.SetDesired(d); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				b.StopTimer()
				if err := m.Cleanup(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := m.Sync(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(kernelRuleHandles(b, cc.Conn))), "rules")
		})
	}
}

// benchPeers6 returns n IPv6 underlay addresses in 2001:db8:4::/48 (set
// elements only).
func benchPeers6(n, offset int) []netip.Addr {
	as := make([]netip.Addr, n)
	for i := range as {
		v := i + offset + 1
		as[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 4, 14: byte(v >> 8), 15: byte(v)})
	}
	return as
}

// benchDual is the seed with an IPv6 pool, n IPv6 /64 pools in
// fd00:10:244::/48, and pods with an address of each family.
func benchDual(pools6, pods int) nat.Desired {
	d := seedDesired()
	for i := range pools6 {
		d.Pools = append(d.Pools, nat.Pool{CIDR: netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x10, 0x02, 0x44, byte(i >> 8), byte(i)}), 64), NATOutgoing: i%2 == 0})
	}
	if pods > 0 {
		d.Workloads = benchWorkloads(pods)
		for i := range d.Workloads {
			d.Workloads[i].Addrs = append(d.Workloads[i].Addrs, netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 0, 14: byte(i >> 8), 15: byte(i)}))
		}
	}
	return d
}

// BenchmarkAllowList6_5000: BenchmarkAllowList5000 with 5,000 IPv6 peers in
// the ip6 table of a dual-stack node (both tables read by every Sync).
func BenchmarkAllowList6_5000(b *testing.B) {
	const n = 5000
	base := benchDual(1, 0)
	full := base
	full.VXLANPeers = append(benchPeers6(n, 0), base.VXLANPeers...)
	other := base
	other.VXLANPeers = append(benchPeers6(n, n), base.VXLANPeers...)
	oneOff := base
	oneOff.VXLANPeers = append(append(benchPeers6(n-1, 0), benchPeers6(1, 2*n)...), base.VXLANPeers...)
	flip := func(b *testing.B, m *nat.Manager, x, y nat.Desired) {
		benchSync(b, m, y)
		i := 0
		for b.Loop() {
			if i++; i%2 == 1 {
				benchSync(b, m, x)
			} else {
				benchSync(b, m, y)
			}
		}
	}
	b.Run("load", func(b *testing.B) {
		ns := kerneltest.NewNS(b, "natbench")
		m, _ := kernelManager(b, ns, nil)
		benchSync(b, m, base)
		for b.Loop() {
			benchSync(b, m, full)
			b.StopTimer()
			benchSync(b, m, base)
			b.StartTimer()
		}
	})
	b.Run("change-one", func(b *testing.B) {
		ns := kerneltest.NewNS(b, "natbench")
		m, _ := kernelManager(b, ns, nil)
		flip(b, m, oneOff, full)
	})
	b.Run("replace-all", func(b *testing.B) {
		ns := kerneltest.NewNS(b, "natbench")
		m, _ := kernelManager(b, ns, nil)
		flip(b, m, other, full)
	})
}

// BenchmarkDualStack: both tables created in one transaction with IPv6
// sets (100 IPv6 pools, 1,000 dual-stack pods), and the no-op Sync that
// reads both back.
func BenchmarkDualStack(b *testing.B) {
	d := benchDual(100, 1000)
	b.Run("create", func(b *testing.B) {
		ns := kerneltest.NewNS(b, "natbench")
		m, _ := kernelManager(b, ns, nil)
		if err := m.SetDesired(d); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			b.StopTimer()
			if err := m.Cleanup(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := m.Sync(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("noop", func(b *testing.B) {
		ns := kerneltest.NewNS(b, "natbench")
		m, cc := kernelManager(b, ns, nil)
		benchSync(b, m, d)
		n := cc.flushes
		for b.Loop() {
			if err := m.Sync(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		if cc.flushes != n {
			b.Fatal("no-op Sync wrote")
		}
	})
}
