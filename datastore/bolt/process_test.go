package bolt_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
)

// Child processes are this test binary re-executed with TABBY_BOLT_CHILD
// set; TestMain runs the child's role instead of the tests.
const childEnv = "TABBY_BOLT_CHILD"

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		if err := child(role, os.Getenv("TABBY_BOLT_PATH"), os.Getenv("TABBY_BOLT_ID")); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	childIncrements = 40
	childCreates    = 20
)

func child(role, path, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := bolt.Open(ctx, path, &bolt.Options{LockTimeout: time.Minute})
	if err != nil {
		return err
	}
	defer s.Close()
	switch role {
	case "increment":
		for i := 0; i < childIncrements; i++ {
			for {
				kv, err := s.Get(ctx, "/counter")
				if err != nil {
					return err
				}
				n, _ := strconv.Atoi(string(kv.Value))
				_, err = s.Update(ctx, "/counter", []byte(strconv.Itoa(n+1)), kv.Revision)
				if err == nil {
					break
				}
				if !errors.Is(err, datastore.ErrConflict) {
					return err
				}
			}
			if _, err := s.Create(ctx, fmt.Sprintf("/items/%s/%03d", id, i%childCreates), nil); err != nil && !errors.Is(err, datastore.ErrExists) {
				return err
			}
		}
		return nil
	case "churn":
		// Transactions of 10 keys plus a counter, forever, until killed.
		for i := 0; ; i++ {
			kv, err := s.Get(ctx, "/counter")
			if err != nil {
				return err
			}
			ops := []datastore.Op{datastore.Update("/counter", []byte(strconv.Itoa(i)), kv.Revision)}
			for j := 0; j < 10; j++ {
				ops = append(ops, datastore.Create(fmt.Sprintf("/batch/%s/%06d/%d", id, i, j), make([]byte, 2000)))
			}
			if _, err := s.Txn(ctx, ops...); err != nil && !errors.Is(err, datastore.ErrConflict) {
				return err
			}
			if i == 5 {
				fmt.Println("writing")
			}
		}
	case "lease-grant":
		// Grant a lease, attach a key, say so, and exit without ever
		// keeping it alive.
		lease, err := s.Grant(ctx, time.Second)
		if err != nil {
			return err
		}
		if _, err := s.Txn(ctx, datastore.CreateWithLease("/leased/"+id, []byte(id), lease)); err != nil {
			return err
		}
		fmt.Println(int64(lease))
		return nil
	case "lease-keep":
		// Keep the lease named by id alive for 3 s.
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			return err
		}
		end := time.Now().Add(3 * time.Second)
		for time.Now().Before(end) {
			if err := s.KeepAlive(ctx, datastore.LeaseID(n)); err != nil {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Println("done")
		return nil
	}
	return fmt.Errorf("unknown role %q", role)
}

// TestLeaseAcrossProcesses: a lease granted by another process and never
// kept alive expires here (a delete event reaches this process's watch),
// and keep-alives sent by another process keep a lease granted here alive.
func TestLeaseAcrossProcesses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "tabby.db")
	s := openT(t, path)
	_, rev, err := s.List(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	events, err := s.Watch(ctx, "/leased/", rev)
	if err != nil {
		t.Fatal(err)
	}
	out, err := startChild(t, "lease-grant", path, "child").Output()
	if err != nil {
		t.Fatalf("lease-grant child: %v", err)
	}
	lease, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("child printed %q", out)
	}
	var got []datastore.Event
	for len(got) < 2 {
		select {
		case ev := <-events:
			if ev.Err != nil {
				t.Fatal(ev.Err)
			}
			got = append(got, ev)
		case <-ctx.Done():
			t.Fatalf("events before the deadline: %+v", got)
		}
	}
	if got[0].Type != datastore.EventPut || got[1].Type != datastore.EventDelete || got[1].Key != "/leased/child" {
		t.Fatalf("events %+v, want put then delete of /leased/child", got)
	}
	if err := s.KeepAlive(ctx, datastore.LeaseID(lease)); !errors.Is(err, datastore.ErrLeaseNotFound) {
		t.Fatalf("KeepAlive of the expired lease: %v", err)
	}

	// The other way round: granted here with a 1 s TTL, kept alive by a
	// child for 3 s, alive here throughout.
	mine, err := s.Grant(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	krev, err := s.Txn(ctx, datastore.CreateWithLease("/leased/parent", nil, mine))
	if err != nil {
		t.Fatal(err)
	}
	cmd := startChild(t, "lease-keep", path, strconv.FormatInt(int64(mine), 10))
	if out, err := cmd.Output(); err != nil || strings.TrimSpace(string(out)) != "done" {
		t.Fatalf("lease-keep child: %q %v", out, err)
	}
	kv, err := s.Get(ctx, "/leased/parent")
	if err != nil {
		t.Fatalf("key kept alive by another process: %v", err)
	}
	if kv.Revision != krev {
		t.Fatalf("keep-alives wrote: revision %d, want %d", kv.Revision, krev)
	}
	if err := s.KeepAlive(ctx, mine); err != nil {
		t.Fatal(err)
	}
}

func startChild(t *testing.T, role, path, id string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, "TABBY_BOLT_PATH="+path, "TABBY_BOLT_ID="+id)
	cmd.Stderr = os.Stderr
	return cmd
}

func openT(t *testing.T, path string) *bolt.Store {
	t.Helper()
	// A generous lock wait: this process competes with busy children on a
	// loaded machine; the bound itself is tested separately.
	s, err := bolt.Open(context.Background(), path, &bolt.Options{LockTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestProcessesShareFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "shared", "tabby.db")
	s := openT(t, path)
	if _, err := s.Create(ctx, "/counter", []byte("0")); err != nil {
		t.Fatal(err)
	}
	_, rev, _ := s.List(ctx, "/")
	events, err := s.Watch(ctx, "/items/", rev)
	if err != nil {
		t.Fatal(err)
	}
	const procs = 6
	var cmds []*exec.Cmd
	for i := 0; i < procs; i++ {
		cmd := startChild(t, "increment", path, strconv.Itoa(i))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	// This process competes too.
	for i := 0; i < childIncrements; i++ {
		for {
			kv, err := s.Get(ctx, "/counter")
			if err != nil {
				t.Fatal(err)
			}
			n, _ := strconv.Atoi(string(kv.Value))
			if _, err = s.Update(ctx, "/counter", []byte(strconv.Itoa(n+1)), kv.Revision); err == nil {
				break
			} else if !errors.Is(err, datastore.ErrConflict) {
				t.Fatal(err)
			}
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v", i, err)
		}
	}
	kv, err := s.Get(ctx, "/counter")
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa((procs + 1) * childIncrements); string(kv.Value) != want {
		t.Fatalf("counter = %s, want %s", kv.Value, want)
	}
	items, _, _ := s.List(ctx, "/items/")
	if len(items) != procs*childCreates {
		t.Fatalf("%d items, want %d", len(items), procs*childCreates)
	}
	// The watch in this process saw every create made by the others.
	seen := map[string]bool{}
	for len(seen) < procs*childCreates {
		select {
		case ev := <-events:
			if ev.Err != nil {
				t.Fatal(ev.Err)
			}
			seen[ev.Key] = true
		case <-ctx.Done():
			t.Fatalf("watch saw %d of %d creates", len(seen), procs*childCreates)
		}
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v", fi.Mode().Perm())
	}
}

func TestKilledWriterLeavesConsistentFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "tabby.db")
	s := openT(t, path)
	if _, err := s.Create(ctx, "/counter", []byte("0")); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 3; round++ {
		cmd := startChild(t, "churn", path, strconv.Itoa(round))
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		if strings.TrimSpace(line) != "writing" {
			t.Fatalf("child said %q", line)
		}
		// Let it write a varying while, then kill it mid-stream.
		for i := 0; i < 3+round*5; i++ {
			s.Get(ctx, "/counter")
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		if err := s.Check(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		// Every transaction is all or nothing.
		kvs, _, err := s.List(ctx, fmt.Sprintf("/batch/%d/", round))
		if err != nil {
			t.Fatal(err)
		}
		if len(kvs) == 0 || len(kvs)%10 != 0 {
			t.Fatalf("round %d: %d keys, not whole transactions", round, len(kvs))
		}
		per := map[string]int{}
		for _, kv := range kvs {
			per[kv.Key[:strings.LastIndexByte(kv.Key, '/')]]++
		}
		for txn, n := range per {
			if n != 10 {
				t.Fatalf("transaction %s has %d of 10 keys", txn, n)
			}
		}
		// And the file still takes writes.
		if _, err := s.Create(ctx, fmt.Sprintf("/after/%d", round), nil); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLockTimeoutIsUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tabby.db")
	s := openT(t, path)
	s2, err := bolt.Open(context.Background(), path, &bolt.Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	// Another "process" holds the lock: an independent open file description.
	f, err := os.OpenFile(path+".lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := bolt.HoldLock(f, true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = s.Create(ctx, "/k", nil)
	if !errors.Is(err, datastore.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Create while locked: %v", err)
	}
	// The abandoned wait does not wedge the store once the lock is free.
	bolt.DropLock(f)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	if _, err := s.Get(ctx2, "/k"); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("Get after a timed-out Create: %v", err)
	}

	// LockTimeout bounds the wait even without a caller deadline.
	bolt.HoldLock(f, true)
	if _, err := s2.Create(context.Background(), "/k", nil); !errors.Is(err, datastore.ErrUnavailable) {
		t.Fatalf("Create with LockTimeout while locked: %v", err)
	}
	bolt.DropLock(f)
	if _, err := s.Get(ctx2, "/k"); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("timed-out Create wrote: %v", err)
	}
}

func TestOpenCreatesDirAndRejectsEmptyPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := openT(t, filepath.Join(dir, "tabby.db"))
	if s.Path() != filepath.Join(dir, "tabby.db") {
		t.Fatal(s.Path())
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("parent dir: %v %v", fi.Mode(), err)
	}
	if _, err := bolt.Open(context.Background(), "", nil); !errors.Is(err, datastore.ErrInvalid) {
		t.Fatalf("empty path: %v", err)
	}
}

func TestSlowWatcherCompacted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := bolt.Open(ctx, filepath.Join(t.TempDir(), "tabby.db"), &bolt.Options{NoSync: true, LogSize: 10, WatchBuffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ch, err := s.Watch(ctx, "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 600; i++ { // never waits for the watcher
		if _, err := s.Create(ctx, fmt.Sprintf("/k/%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	// A transaction larger than the whole log is trimmed as a unit.
	var ops []datastore.Op
	for i := 0; i < 30; i++ {
		ops = append(ops, datastore.Create(fmt.Sprintf("/t/%d", i), nil))
	}
	rev, err := s.Txn(ctx, ops...)
	if err != nil {
		t.Fatal(err)
	}
	var last datastore.Event
	for ev := range ch {
		last = ev
	}
	if !errors.Is(last.Err, datastore.ErrCompacted) {
		t.Fatalf("last event %+v", last)
	}
	if _, err := s.Watch(ctx, "/", 5); !errors.Is(err, datastore.ErrCompacted) {
		t.Fatalf("watch from a trimmed revision: %v", err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	// The log keeps whole transactions, and always the newest one.
	w, err := s.Watch(ctx, "/t/", rev-1)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		if ev := <-w; ev.Err != nil || ev.Revision != rev {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
}

// TestReadersShareTheLock: while another process reads (holds the lock
// shared), reads go ahead and writes wait.
func TestReadersShareTheLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tabby.db")
	s := openT(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.Create(ctx, "/k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path+".lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := bolt.HoldLock(f, false); err != nil {
		t.Fatal(err)
	}
	if kv, err := s.Get(ctx, "/k"); err != nil || string(kv.Value) != "v" {
		t.Fatalf("Get beside a reader: %+v %v", kv, err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if _, err := s.Create(short, "/k2", nil); !errors.Is(err, datastore.ErrUnavailable) {
		t.Fatalf("Create beside a reader: %v", err)
	}
	bolt.DropLock(f)
	if _, err := s.Create(ctx, "/k2", nil); err != nil {
		t.Fatalf("Create after the reader left: %v", err)
	}
}
