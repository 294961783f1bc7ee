// Package datastore_bench measures the datastore implementations. Results
// and the commands that produced them are in RESULTS.md.
package datastore_bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/datastore/etcd"
	"github.com/tabbynet/tabby/datastore/etcd/etcdtest"
	"github.com/tabbynet/tabby/datastore/memory"
)

const childEnv = "TABBY_BENCH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		if err := child(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child opens the file, says "ready", waits for a line on stdin, then runs
// its share of operations.
func child() error {
	ctx := context.Background()
	n, _ := strconv.Atoi(os.Getenv("TABBY_BENCH_N"))
	s, err := bolt.Open(ctx, os.Getenv("TABBY_BENCH_PATH"), &bolt.Options{LockTimeout: time.Minute})
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	return runOps(ctx, s, os.Getenv(childEnv), os.Getenv("TABBY_BENCH_ID"), n)
}

func runOps(ctx context.Context, s datastore.Store, op, id string, n int) error {
	for i := 0; i < n; i++ {
		var err error
		switch op {
		case "create":
			_, err = s.Create(ctx, fmt.Sprintf("/bench/%s/%d", id, i), make([]byte, 200))
		case "get":
			_, err = s.Get(ctx, "/bench/counter")
		case "cas":
			err = increment(ctx, s, "/bench/counter")
		default:
			return fmt.Errorf("op %q", op)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func increment(ctx context.Context, s datastore.Store, key string) error {
	for {
		kv, err := s.Get(ctx, key)
		if err != nil {
			return err
		}
		v, _ := strconv.Atoi(string(kv.Value))
		_, err = s.Update(ctx, key, []byte(strconv.Itoa(v+1)), kv.Revision)
		if !errors.Is(err, datastore.ErrConflict) {
			return err
		}
	}
}

func setup(b *testing.B, s datastore.Store) {
	if _, err := s.Create(context.Background(), "/bench/counter", []byte("0")); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkBoltOneProcess: one goroutine of one process. cas is one
// successful Get+Update increment.
func BenchmarkBoltOneProcess(b *testing.B) {
	for _, sync := range []bool{true, false} {
		for _, op := range []string{"get", "create", "cas"} {
			b.Run(fmt.Sprintf("fsync=%v/op=%s", sync, op), func(b *testing.B) {
				s, err := bolt.Open(context.Background(), filepath.Join(b.TempDir(), "b.db"), &bolt.Options{NoSync: !sync})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				setup(b, s)
				b.ResetTimer()
				if err := runOps(context.Background(), s, op, "0", b.N); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}

// BenchmarkBoltProcesses: procs OS processes on one file at once, b.N
// operations in total; the clock runs from "go" until the last one exits.
func BenchmarkBoltProcesses(b *testing.B) {
	for _, procs := range []int{1, 8} {
		for _, op := range []string{"create", "cas"} {
			b.Run(fmt.Sprintf("procs=%d/op=%s", procs, op), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "b.db")
				s, err := bolt.Open(context.Background(), path, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				setup(b, s)
				per := (b.N + procs - 1) / procs
				var cmds []*exec.Cmd
				var stdins []*os.File
				for p := 0; p < procs; p++ {
					cmd := exec.Command(os.Args[0], "-test.run=^$")
					cmd.Env = append(os.Environ(), childEnv+"="+op, "TABBY_BENCH_PATH="+path,
						"TABBY_BENCH_ID="+strconv.Itoa(p), "TABBY_BENCH_N="+strconv.Itoa(per))
					cmd.Stderr = os.Stderr
					out, _ := cmd.StdoutPipe()
					r, w, _ := os.Pipe()
					cmd.Stdin = r
					if err := cmd.Start(); err != nil {
						b.Fatal(err)
					}
					r.Close()
					bufio.NewReader(out).ReadString('\n') // "ready"
					cmds = append(cmds, cmd)
					stdins = append(stdins, w)
				}
				b.ResetTimer()
				for _, w := range stdins {
					w.WriteString("go\n")
					w.Close()
				}
				for _, cmd := range cmds {
					if err := cmd.Wait(); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(per*procs)/b.Elapsed().Seconds(), "ops/s")
				if op == "cas" {
					kv, _ := s.Get(context.Background(), "/bench/counter")
					if string(kv.Value) != strconv.Itoa(per*procs) {
						b.Fatalf("counter %s, want %d", kv.Value, per*procs)
					}
				}
			})
		}
	}
}

// BenchmarkEtcdLatency: single operations against an embedded etcd (one
// member, no fsync, through etcdtest's loopback relay), p50 and p99.
func BenchmarkEtcdLatency(b *testing.B) {
	endpoints := etcdtest.Start(b)
	var run atomic.Int64 // each sub-benchmark run in its own key space
	for _, op := range []string{"get", "create", "cas"} {
		for _, conc := range []int{1, 8} {
			b.Run(fmt.Sprintf("op=%s/clients=%d", op, conc), func(b *testing.B) {
				s, err := etcd.New(context.Background(), &etcd.Config{Endpoints: endpoints, Prefix: fmt.Sprintf("/run%d", run.Add(1))})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				setup(b, s)
				lat := make([][]time.Duration, conc)
				per := (b.N + conc - 1) / conc
				var wg sync.WaitGroup
				errs := make(chan error, conc)
				b.ResetTimer()
				for c := 0; c < conc; c++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ctx := context.Background()
						for i := 0; i < per; i++ {
							t0 := time.Now()
							if err := runOps1(ctx, s, op, fmt.Sprintf("%d-%d", c, i)); err != nil {
								errs <- err
								return
							}
							lat[c] = append(lat[c], time.Since(t0))
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				all := slices.Concat(lat...)
				slices.Sort(all)
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
				b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}

func runOps1(ctx context.Context, s datastore.Store, op, id string) error {
	switch op {
	case "create":
		_, err := s.Create(ctx, "/bench/"+id, make([]byte, 200))
		return err
	case "get":
		_, err := s.Get(ctx, "/bench/counter")
		return err
	default:
		return increment(ctx, s, "/bench/counter")
	}
}

// BenchmarkMemory: the in-process store, for reference.
func BenchmarkMemory(b *testing.B) {
	s := memory.New(nil)
	defer s.Close()
	setup(b, s)
	run := 0
	b.Run("op=cas", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := increment(context.Background(), s, "/bench/counter"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=create", func(b *testing.B) {
		run++
		for i := 0; i < b.N; i++ {
			if _, err := s.Create(context.Background(), fmt.Sprintf("/bench/c/%d-%d", run, i), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkKeepAlive: one lease keep-alive (the whole steady-state cost of
// lease liveness: no write, no event), per store; with 8 clients, 8
// goroutines each keep their own lease alive through one Store. ops/s
// bounds how many nodes one store can keep alive: N/interval must stay
// below it.
func BenchmarkKeepAlive(b *testing.B) {
	endpoints := etcdtest.Start(b)
	stores := map[string]func(b *testing.B) datastore.Store{
		"memory": func(*testing.B) datastore.Store { return memory.New(nil) },
		"bolt": func(b *testing.B) datastore.Store {
			s, err := bolt.Open(context.Background(), filepath.Join(b.TempDir(), "b.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
		"etcd": func(b *testing.B) datastore.Store {
			s, err := etcd.New(context.Background(), &etcd.Config{Endpoints: endpoints})
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
	}
	var run atomic.Int64 // each run in its own key space
	for _, name := range []string{"memory", "bolt", "etcd"} {
		for _, conc := range []int{1, 8} {
			b.Run(fmt.Sprintf("store=%s/clients=%d", name, conc), func(b *testing.B) {
				r := run.Add(1)
				s := stores[name](b)
				defer s.Close()
				l := s.(datastore.Leaser)
				ctx := context.Background()
				ids := make([]datastore.LeaseID, conc)
				for c := range ids {
					var err error
					if ids[c], err = l.Grant(ctx, time.Minute); err != nil {
						b.Fatal(err)
					}
					if _, err := s.Txn(ctx, datastore.CreateWithLease(fmt.Sprintf("/ka/%d/%d", r, c), make([]byte, 200), ids[c])); err != nil {
						b.Fatal(err)
					}
				}
				lat := make([][]time.Duration, conc)
				per := (b.N + conc - 1) / conc
				var wg sync.WaitGroup
				errs := make(chan error, conc)
				b.ResetTimer()
				for c := range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range per {
							t0 := time.Now()
							if err := l.KeepAlive(ctx, ids[c]); err != nil {
								errs <- err
								return
							}
							lat[c] = append(lat[c], time.Since(t0))
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				all := slices.Concat(lat...)
				slices.Sort(all)
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
				b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}
