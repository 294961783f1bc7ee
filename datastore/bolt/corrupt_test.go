package bolt_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
)

// healthy writes a store with a few keys at path and returns its bytes.
func healthy(t testing.TB, path string) []byte {
	t.Helper()
	ctx := context.Background()
	s, err := bolt.Open(ctx, path, &bolt.Options{NoSync: true, NoBackup: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := s.Create(ctx, fmt.Sprintf("/k/%03d", i), make([]byte, 100+i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func isCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, datastore.ErrCorrupt) {
		t.Fatalf("%s: got %v, want ErrCorrupt", what, err)
	}
}

// An existing empty file is a lost store: Open refuses it and leaves it
// as it is (issue 15.3: it used to be re-initialised, losing every
// allocation).
func TestOpenEmptyFileIsCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tabby.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := bolt.Open(context.Background(), path, nil)
	isCorrupt(t, "open empty file", err)
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("empty file touched: %v %v", fi, err)
	}
}

// A truncated file is ErrCorrupt at Open and at every later operation,
// never a SIGBUS (issue 15.2).
func TestTruncatedFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good := healthy(t, filepath.Join(dir, "good.db"))
	ps := int(binary.NativeEndian.Uint32(good[16+8:]))
	// The high water mark of the newer meta page: every page below it is
	// in use, so the file must reach it.
	m0, m1 := good[16:], good[ps+16:]
	hwm := binary.NativeEndian.Uint64(m0[40:])
	if binary.NativeEndian.Uint64(m1[48:]) > binary.NativeEndian.Uint64(m0[48:]) {
		hwm = binary.NativeEndian.Uint64(m1[40:])
	}
	end := int(hwm) * ps
	for _, n := range []int{1, 15, 100, ps - 1, ps, ps + 100, 2 * ps, 3 * ps, end / 2, end - ps, end - 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tabby.db")
			os.WriteFile(path, good[:n], 0o600)
			_, err := bolt.Open(ctx, path, &bolt.Options{NoBackup: true})
			isCorrupt(t, "open", err)
		})
	}
	// Truncated behind the back of an open store.
	path := filepath.Join(dir, "live.db")
	os.WriteFile(path, good, 0o600)
	s, err := bolt.Open(ctx, path, &bolt.Options{NoSync: true, NoBackup: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Truncate(path, int64(3*ps)); err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(ctx, "/k/001")
	isCorrupt(t, "get", err)
	_, err = s.Create(ctx, "/k/new", []byte("x"))
	isCorrupt(t, "create", err)
	_, _, err = s.List(ctx, "/k/")
	isCorrupt(t, "list", err)
	isCorrupt(t, "check", s.Check(ctx))
}

// A store whose file disappears is lost, not recreated empty.
func TestRemovedFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tabby.db")
	s, err := bolt.Open(ctx, path, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(ctx, "/a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	_, err = s.Create(ctx, "/b", []byte("1"))
	isCorrupt(t, "create after remove", err)
	if _, err := os.Stat(path); err == nil {
		t.Fatal("file recreated")
	}
	// Open takes a backup at first use, so a missing file with a backup
	// is a lost store too.
	_, err = bolt.Open(ctx, path, nil)
	isCorrupt(t, "open with backup", err)
	// NoCreate refuses a missing file without a backup.
	other := filepath.Join(t.TempDir(), "none.db")
	if _, err := bolt.Open(ctx, other, &bolt.Options{NoCreate: true}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("NoCreate: %v", err)
	}
	if _, err := os.Stat(other); err == nil {
		t.Fatal("NoCreate created the file")
	}
}

// A record shorter than its 8-byte revision header is ErrCorrupt on every
// path that reads it (issue 15.9: it used to be an unclassified error).
func TestShortRecord(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tabby.db")
	healthy(t, path)
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("kv")).Put([]byte("/k/000"), []byte{1, 2, 3}) })
	db.Close()
	s, err := bolt.Open(ctx, path, &bolt.Options{NoBackup: true, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Get(ctx, "/k/000")
	isCorrupt(t, "get", err)
	_, _, err = s.List(ctx, "/k/")
	isCorrupt(t, "list", err)
	_, err = s.Update(ctx, "/k/000", []byte("x"), 1)
	isCorrupt(t, "update", err)
	isCorrupt(t, "check", s.Check(ctx))
	// The backup taken by a default Open refuses such a file.
	_, err = bolt.Open(ctx, path, nil)
	isCorrupt(t, "open with backup", err)
}

// One damaged meta page is tolerated as bbolt does (a torn meta write),
// but Check reports it; two are ErrCorrupt at Open.
func TestDamagedMetaPages(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good := healthy(t, filepath.Join(dir, "good.db"))
	ps := int(binary.NativeEndian.Uint32(good[16+8:]))
	one := append([]byte{}, good...)
	one[16+50] ^= 0x40 // txid of meta 0
	path := filepath.Join(dir, "one.db")
	os.WriteFile(path, one, 0o600)
	s, err := bolt.Open(ctx, path, &bolt.Options{NoBackup: true})
	if err != nil {
		t.Fatalf("one damaged meta page: %v", err)
	}
	isCorrupt(t, "check", s.Check(ctx))
	if err := s.Backup(ctx, path+".bak"); !errors.Is(err, datastore.ErrCorrupt) {
		t.Fatalf("backup of a damaged file: %v", err)
	}
	s.Close()
	two := append([]byte{}, one...)
	two[ps+16+50] ^= 0x40
	path = filepath.Join(dir, "two.db")
	os.WriteFile(path, two, 0o600)
	_, err = bolt.Open(ctx, path, &bolt.Options{NoBackup: true})
	isCorrupt(t, "two damaged meta pages", err)
}

// Restore brings back the backup Open took, moves the damaged file aside,
// and never lets revisions go backwards.
func TestRestore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tabby.db")
	s, err := bolt.Open(ctx, path, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "/a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Backup(ctx, path+bolt.BackupSuffix); err != nil {
		t.Fatal(err)
	}
	rev, err := s.Create(ctx, "/b", []byte("2")) // after the backup: lost
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	os.WriteFile(path, nil, 0o600) // the store is destroyed
	if _, err := bolt.Open(ctx, path, nil); !errors.Is(err, datastore.ErrCorrupt) {
		t.Fatal(err)
	}
	saved, err := bolt.Restore(ctx, path, path+bolt.BackupSuffix, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(saved); err != nil || fi.Size() != 0 {
		t.Fatalf("damaged file not kept at %q: %v", saved, err)
	}
	s, err = bolt.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	kvs, lrev, err := s.List(ctx, "/")
	if err != nil || len(kvs) != 1 || kvs[0].Key != "/a" {
		t.Fatalf("restored %v %v", kvs, err)
	}
	if lrev <= rev {
		t.Fatalf("revision went back: %d after %d", lrev, rev)
	}
	if _, err := s.Watch(ctx, "/", rev-1); err == nil {
		// The watch may fail at once or deliver ErrCompacted.
	}
	// A damaged snapshot is refused.
	bad := filepath.Join(t.TempDir(), "bad.bak")
	os.WriteFile(bad, []byte("not a store"), 0o600)
	if _, err := bolt.Restore(ctx, path, bad, nil); !errors.Is(err, datastore.ErrCorrupt) {
		t.Fatalf("restore from garbage: %v", err)
	}
}

// FuzzOpenDamaged: a store file truncated anywhere and with bits flipped
// anywhere never crashes Open or an operation (no panic, no SIGBUS); every
// failure is ErrCorrupt (or an ordinary datastore answer).
func FuzzOpenDamaged(f *testing.F) {
	good := healthy(f, filepath.Join(f.TempDir(), "good.db"))
	ps := binary.NativeEndian.Uint32(good[16+8:])
	f.Add(uint32(0), []byte{})
	f.Add(uint32(len(good)/2), []byte{})
	f.Add(uint32(0), []byte{0, 0, 20, 1})                 // meta 0 magic
	f.Add(uint32(0), []byte{0, 0, 20, 1, 0, 0x10, 20, 1}) // both magics
	f.Add(uint32(0), []byte{0, 0, 56, 0xff})
	f.Add(uint32(0), []byte{0, byte(2 * ps >> 8), 8, 0xff})    // freelist page flags
	f.Add(uint32(0), []byte{0, byte(3 * ps >> 8), 20, 0x80})   // root page
	f.Add(uint32(0), []byte{0, byte(3 * ps >> 8), 200, 0x01})  // a key in the root page
	f.Add(uint32(0), []byte{0, byte(3 * ps >> 8), 12, 0x7})    // root overflow
	f.Add(uint32(3*ps+10), []byte{0, byte(3 * ps >> 8), 9, 1}) // both
	f.Fuzz(func(t *testing.T, cut uint32, flips []byte) {
		b := append([]byte{}, good...)
		if cut > 0 {
			b = b[:int(cut)%len(b)]
		}
		// flips: groups of 4 bytes: 24-bit offset, xor mask.
		for i := 0; i+4 <= len(flips) && len(b) > 0; i += 4 {
			off := (int(flips[i])<<16 | int(flips[i+1])<<8 | int(flips[i+2])) % len(b)
			b[off] ^= flips[i+3]
		}
		path := filepath.Join(t.TempDir(), "tabby.db")
		os.WriteFile(path, b, 0o600)
		ctx := context.Background()
		ok := func(what string, err error) {
			if err != nil && !errors.Is(err, datastore.ErrCorrupt) && !errors.Is(err, datastore.ErrNotFound) &&
				!errors.Is(err, datastore.ErrExists) && !errors.Is(err, datastore.ErrConflict) {
				t.Fatalf("%s: %v", what, err)
			}
		}
		s, err := bolt.Open(ctx, path, &bolt.Options{NoSync: true})
		ok("open", err)
		if err != nil {
			return
		}
		defer s.Close()
		_, err = s.Get(ctx, "/k/001")
		ok("get", err)
		_, _, err = s.List(ctx, "/")
		ok("list", err)
		_, err = s.Create(ctx, "/k/new", []byte("x"))
		ok("create", err)
		ok("check", s.Check(ctx))
	})
}
