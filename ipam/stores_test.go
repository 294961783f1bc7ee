package ipam_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/datastore/etcd"
	"github.com/tabbynet/tabby/datastore/etcd/etcdtest"
	"github.com/tabbynet/tabby/ipam"
)

// Child processes are this test binary re-executed with childEnv set to a
// role; TestMain runs the role instead of the tests.
const childEnv = "TABBY_IPAM_CHILD"

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		if err := child(role, os.Getenv("TABBY_IPAM_PATH"), os.Getenv("TABBY_IPAM_ID"), os.Getenv("TABBY_IPAM_N")); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child allocates n addresses (role "assign"; n <= 0: forever, alternating
// assign and release, role "churn") from the bolt file at path, printing
// "<addr> <handle>" after each assignment commits.
func child(role, path, id, nstr string) error {
	ctx := context.Background()
	n, _ := strconv.Atoi(nstr)
	st, err := bolt.Open(ctx, path, &bolt.Options{LockTimeout: time.Minute})
	if err != nil {
		return err
	}
	defer st.Close()
	m, err := ipam.New(st, &ipam.Config{MaxRetries: 1000})
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	host := "node-" + id
	if role == "bench" {
		// Ready: wait for the parent's start signal on stdin.
		fmt.Fprintln(w, "ready")
		w.Flush()
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return err
		}
	}
	for i := 0; n <= 0 || i < n; i++ {
		h := fmt.Sprintf("p%s-%d", id, i)
		as, err := m.AutoAssign(ctx, ipam.AutoAssignArgs{Handle: h, Host: host, Num4: 1 + i%2,
			Attrs: map[string]string{"pid": strconv.Itoa(os.Getpid())}})
		if err != nil {
			return err
		}
		for _, a := range as {
			fmt.Fprintf(w, "%s %s\n", a.Addr, h)
		}
		w.Flush()
		if role == "churn" && i%3 == 2 {
			// Announced before, so that the parent knows this release may
			// have committed when the process is killed.
			fmt.Fprintf(w, "releasing p%s-%d\n", id, i-1)
			w.Flush()
			if _, err := m.ReleaseByHandle(ctx, fmt.Sprintf("p%s-%d", id, i-1)); err != nil {
				return err
			}
		}
	}
	return nil
}

func startChild(t *testing.T, role, path string, id, n int) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, "TABBY_IPAM_PATH="+path,
		"TABBY_IPAM_ID="+strconv.Itoa(id), "TABBY_IPAM_N="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}

func openBolt(t *testing.T, path string) (*bolt.Store, *ipam.IPAM) {
	t.Helper()
	st, err := bolt.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m, err := ipam.New(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st, m
}

// TestBoltProcesses: several OS processes allocate from one bolt file at
// once; every address is distinct and every one that a process saw
// committed is in the file (nothing lost), and the file is consistent.
func TestBoltProcesses(t *testing.T) {
	procs, per := 4, 40
	if testing.Short() {
		procs, per = 3, 10
	}
	path := filepath.Join(t.TempDir(), "sub", "tabby.db")
	ctx := context.Background()
	_, m := openBolt(t, path)
	if err := m.CreatePool(ctx, pool("default", "10.244.0.0/16", 0)); err != nil {
		t.Fatal(err)
	}
	type line struct{ addr, handle string }
	var mu sync.Mutex
	var got []line
	var wg sync.WaitGroup
	for p := range procs {
		cmd, sc := startChild(t, "assign", path, p, per)
		wg.Go(func() {
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				mu.Lock()
				got = append(got, line{f[0], f[1]})
				mu.Unlock()
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("child %d: %v", p, err)
			}
		})
	}
	wg.Wait()
	want := procs * (per + per/2) // 1 or 2 addresses, alternating
	if len(got) != want {
		t.Fatalf("children reported %d addresses, want %d", len(got), want)
	}
	seen := map[string]string{}
	for _, l := range got {
		if h, dup := seen[l.addr]; dup {
			t.Fatalf("%s handed to %s and %s", l.addr, h, l.handle)
		}
		seen[l.addr] = l.handle
	}
	al, err := m.Allocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(al) != len(seen) {
		t.Fatalf("file holds %d allocations, children reported %d", len(al), len(seen))
	}
	for _, a := range al {
		if seen[a.Addr.String()] != a.Handle {
			t.Fatalf("%s in file for %q, reported for %q", a.Addr, a.Handle, seen[a.Addr.String()])
		}
	}
	hosts := make([]string, procs)
	for i := range hosts {
		hosts[i] = fmt.Sprint("node-", i)
	}
	ps, err := m.Check(ctx, hosts)
	if err != nil || len(ps) > 0 {
		t.Fatalf("check: %v %v", ps, err)
	}
}

// TestBoltKilledMidAssignment: processes SIGKILLed while assigning and
// releasing leave a file that opens, passes the consistency check, and
// still holds every assignment they reported and did not start releasing.
func TestBoltKilledMidAssignment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tabby.db")
	ctx := context.Background()
	_, m := openBolt(t, path)
	// Small blocks: claims (two steps) are frequent, so kills land between
	// them too.
	if err := m.CreatePool(ctx, pool("default", "10.244.0.0/16", 29)); err != nil {
		t.Fatal(err)
	}
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	for round := range rounds {
		var cmds []*exec.Cmd
		var wg sync.WaitGroup
		reported := map[string]string{} // addr -> handle, as reported
		released := map[string]bool{}   // release started: may or may not have committed
		var mu sync.Mutex
		for p := range 2 {
			cmd, sc := startChild(t, "churn", path, round*10+p, 0)
			cmds = append(cmds, cmd)
			wg.Go(func() {
				for sc.Scan() {
					f := strings.Fields(sc.Text())
					mu.Lock()
					if f[0] == "releasing" {
						released[f[1]] = true
					} else {
						reported[f[0]] = f[1]
					}
					mu.Unlock()
				}
			})
		}
		// Let them run a while (progress, not time: at least 10 lines each
		// or a generous deadline), then kill without warning.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			n := len(reported)
			mu.Unlock()
			if n >= 20+round*7 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGKILL)
		}
		for _, c := range cmds {
			c.Wait()
		}
		wg.Wait()
		// Reopen the file from scratch and check it.
		st, err := bolt.Open(ctx, path, nil)
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		m2, _ := ipam.New(st, nil)
		ps, err := m2.Check(ctx, nil)
		if err != nil || len(ps) > 0 {
			t.Fatalf("round %d: check after SIGKILL: %v %v", round, ps, err)
		}
		for addr, h := range reported {
			al, ok, err := m2.AddrAllocation(ctx, netip.MustParseAddr(addr))
			if err != nil {
				t.Fatal(err)
			}
			if released[h] {
				continue
			}
			if !ok || al.Handle != h {
				t.Fatalf("round %d: reported %s for %s, file has %+v (%v)", round, addr, h, al, ok)
			}
		}
		// The killed hosts assign again (completing any interrupted claim).
		for p := range 2 {
			if _, err := m2.AutoAssign(ctx, ipam.AutoAssignArgs{Handle: fmt.Sprint("after-", round, "-", p), Host: fmt.Sprint("node-", round*10+p), Num4: 1}); err != nil {
				t.Fatalf("round %d: assign after the kill: %v", round, err)
			}
		}
		if ps, err := m2.Check(ctx, nil); err != nil || len(ps) > 0 {
			t.Fatalf("round %d: check after recovery: %v %v", round, ps, err)
		}
		st.Close()
		t.Logf("round %d: %d assignments reported before the kill", round, len(reported))
	}
}

// TestEtcdHostsRaceForBlocks: two hosts, each through its own etcd client,
// race to claim every block of a small pool and to fill it; no block ends
// up with both, and no address is handed out twice.
func TestEtcdHostsRaceForBlocks(t *testing.T) {
	eps := etcdtest.Start(t)
	ctx := context.Background()
	newM := func() *ipam.IPAM {
		st, err := etcd.New(ctx, &etcd.Config{Endpoints: eps})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		m, err := ipam.New(st, &ipam.Config{MaxRetries: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ms := []*ipam.IPAM{newM(), newM()}
	if err := ms[0].CreatePool(ctx, pool("p", "10.244.0.0/24", 28)); err != nil {
		t.Fatal(err)
	}
	hosts := []string{"host-a", "host-b"}
	claimed := make([][]netip.Prefix, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			for {
				b, err := ms[i].ClaimBlock(ctx, hosts[i], "p")
				if errors.Is(err, ipam.ErrExhausted) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				claimed[i] = append(claimed[i], b)
			}
		})
	}
	wg.Wait()
	owner := map[netip.Prefix]string{}
	for i, bs := range claimed {
		for _, b := range bs {
			if o, dup := owner[b]; dup {
				t.Fatalf("block %s claimed by %s and %s", b, o, hosts[i])
			}
			owner[b] = hosts[i]
		}
	}
	if len(owner) != 16 {
		t.Fatalf("%d blocks claimed, want 16", len(owner))
	}
	for b, h := range owner {
		if aff, err := ms[0].BlockAffinity(ctx, b); err != nil || aff != h {
			t.Fatalf("block %s: affinity %q (%v), claimed by %s", b, aff, err, h)
		}
	}
	t.Logf("host-a %d blocks, host-b %d blocks", len(claimed[0]), len(claimed[1]))
	// Now both fill the pool concurrently (borrowing at the end).
	addrs := make([][]netip.Addr, 2)
	for i := range 2 {
		wg.Go(func() {
			for j := 0; ; j++ {
				as, err := ms[i].AutoAssign(ctx, ipam.AutoAssignArgs{Handle: fmt.Sprintf("%s-%d", hosts[i], j), Host: hosts[i], Num4: 1})
				if errors.Is(err, ipam.ErrExhausted) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				addrs[i] = append(addrs[i], as[0].Addr)
			}
		})
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for _, as := range addrs {
		for _, a := range as {
			if seen[a] {
				t.Fatalf("%s handed out twice", a)
			}
			seen[a] = true
		}
	}
	if len(seen) != 256 {
		t.Fatalf("%d addresses handed out, want 256", len(seen))
	}
	if ps, err := ms[1].Check(ctx, hosts); err != nil || len(ps) > 0 {
		t.Fatalf("check: %v %v", ps, err)
	}
}

var _ datastore.Store = (*bolt.Store)(nil)

// TestEtcdUnavailable: with etcd down, assignment fails with
// datastore.ErrUnavailable (it does not retry it as a conflict, nor hang
// past the caller's deadline), and works again once etcd is back.
func TestEtcdUnavailable(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd (seconds)")
	}
	srv := etcdtest.New(t, nil)
	ctx := context.Background()
	st, err := etcd.New(ctx, &etcd.Config{Endpoints: srv.Endpoints(), DialTimeout: time.Second, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, _ := ipam.New(st, nil)
	if err := m.CreatePool(ctx, pool("p", "10.244.0.0/16", 0)); err != nil {
		t.Fatal(err)
	}
	a := mustAssign(t, m, "before")
	srv.Stop()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = m.AutoAssign(dctx, ipam.AutoAssignArgs{Handle: "during", Host: "n1", Num4: 1})
	cancel()
	if !errors.Is(err, datastore.ErrUnavailable) {
		t.Fatalf("AutoAssign with etcd down: %v", err)
	}
	srv.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = m.AutoAssign(ctx, ipam.AutoAssignArgs{Handle: "after", Host: "n1", Num4: 1})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if got, _ := m.HandleAddrs(ctx, "before"); len(got) != 1 || got[0] != a {
		t.Fatalf("lost %s: %v", a, got)
	}
	if got, _ := m.HandleAddrs(ctx, "during"); len(got) != 0 {
		t.Fatalf("failed assignment left %v", got)
	}
	if ps, err := m.Check(ctx, nil); err != nil || len(ps) > 0 {
		t.Fatalf("check: %v %v", ps, err)
	}
}

func mustAssign(t *testing.T, m *ipam.IPAM, handle string) netip.Addr {
	t.Helper()
	as, err := m.AutoAssign(context.Background(), ipam.AutoAssignArgs{Handle: handle, Host: "n1", Num4: 1})
	if err != nil {
		t.Fatal(err)
	}
	return as[0].Addr
}
