package ipam_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/datastore/etcd"
	"github.com/tabbynet/tabby/datastore/etcd/etcdtest"
	"github.com/tabbynet/tabby/ipam"
)

// BenchmarkBoltAssign: AutoAssign throughput on one bolt file (fsync on)
// from 1 and from 8 OS processes at once. b.N assignments are split across
// the processes; the clock runs from the start signal (all processes have
// opened the file) until the last one exits. Reported as assignments/s.
func BenchmarkBoltAssign(b *testing.B) {
	for _, procs := range []int{1, 8} {
		b.Run(fmt.Sprintf("procs=%d", procs), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "tabby.db")
			st, m := openBoltB(b, path)
			if err := m.CreatePool(context.Background(), pool("default", "10.0.0.0/8", 0)); err != nil {
				b.Fatal(err)
			}
			st.Close()
			per := (b.N + procs - 1) / procs
			type kid struct {
				cmd   *exec.Cmd
				stdin io.WriteCloser
			}
			var kids []kid
			for p := range procs {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), childEnv+"=bench", "TABBY_IPAM_PATH="+path,
					"TABBY_IPAM_ID="+strconv.Itoa(p), "TABBY_IPAM_N="+strconv.Itoa(per))
				cmd.Stderr = os.Stderr
				in, _ := cmd.StdinPipe()
				out, _ := cmd.StdoutPipe()
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, 6)
				if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "ready\n" {
					b.Fatalf("child %d not ready: %q %v", p, buf, err)
				}
				go io.Copy(io.Discard, out)
				kids = append(kids, kid{cmd, in})
			}
			b.ResetTimer()
			start := time.Now()
			for _, k := range kids {
				io.WriteString(k.stdin, "go\n")
			}
			for _, k := range kids {
				if err := k.cmd.Wait(); err != nil {
					b.Fatal(err)
				}
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(per*procs)/el.Seconds(), "assign/s")
		})
	}
}

func openBoltB(b *testing.B, path string) (*bolt.Store, *ipam.IPAM) {
	b.Helper()
	st, err := bolt.Open(context.Background(), path, nil)
	if err != nil {
		b.Fatal(err)
	}
	m, err := ipam.New(st, nil)
	if err != nil {
		b.Fatal(err)
	}
	return st, m
}

// BenchmarkEtcdAutoAssign: AutoAssign latency on an embedded etcd (same
// process, loopback), uncontended (one host) and with 8 hosts assigning at
// once, each through its own client. Each iteration assigns and releases
// one address; only the AutoAssign is timed for the percentiles.
func BenchmarkEtcdAutoAssign(b *testing.B) {
	eps := etcdtest.Start(b)
	run := 0 // each run of a sub-benchmark gets fresh keys
	for _, hosts := range []int{1, 8} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) {
			ctx := context.Background()
			run++
			prefix := fmt.Sprintf("bench%d/", run)
			ms := make([]*ipam.IPAM, hosts)
			for i := range ms {
				st, err := etcd.New(ctx, &etcd.Config{Endpoints: eps})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { st.Close() })
				if ms[i], err = ipam.New(st, &ipam.Config{Prefix: prefix}); err != nil {
					b.Fatal(err)
				}
			}
			if err := ms[0].CreatePool(ctx, pool("default", "10.244.0.0/16", 0)); err != nil {
				b.Fatal(err)
			}
			for i, m := range ms { // each host holds a block already
				if _, err := m.AutoAssign(ctx, ipam.AutoAssignArgs{Handle: fmt.Sprint("resident-", i), Host: fmt.Sprint("host-", i), Num4: 1}); err != nil {
					b.Fatal(err)
				}
			}
			per := (b.N + hosts - 1) / hosts
			lat := make([][]time.Duration, hosts)
			var wg sync.WaitGroup
			b.ResetTimer()
			for i := range hosts {
				wg.Go(func() {
					host := fmt.Sprint("host-", i)
					for j := range per {
						h := fmt.Sprintf("%s-%d", host, j)
						t0 := time.Now()
						if _, err := ms[i].AutoAssign(ctx, ipam.AutoAssignArgs{Handle: h, Host: host, Num4: 1}); err != nil {
							b.Error(err)
							return
						}
						lat[i] = append(lat[i], time.Since(t0))
						if _, err := ms[i].ReleaseByHandle(ctx, h); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}
