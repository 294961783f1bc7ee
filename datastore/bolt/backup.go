package bolt

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tabbynet/tabby/datastore"
)

// BackupSuffix names the snapshot that Open keeps next to the file.
const BackupSuffix = ".bak"

func (s *Store) backupPath() string { return s.path + BackupSuffix }

// backupIfStale refreshes path+".bak" when it is older than
// Options.BackupInterval. A file that fails Check fails Open (and is not
// backed up); failing to write the backup is only logged.
func (s *Store) backupIfStale(ctx context.Context) error {
	if fi, err := os.Stat(s.backupPath()); err == nil && time.Since(fi.ModTime()) < s.opts.BackupInterval {
		return nil
	}
	err := s.Backup(ctx, s.backupPath())
	if errors.Is(err, datastore.ErrCorrupt) {
		return err
	}
	if err != nil {
		s.log.Warn("bolt: backup not written", "path", s.backupPath(), "err", err)
	}
	return nil
}

// Backup checks the store (as Check does) and, only if it is healthy,
// writes a consistent snapshot of it to dst (mode 0600), atomically: dst is
// replaced only by a complete snapshot. It holds a read lock meanwhile, so
// writers wait for the copy.
func (s *Store) Backup(ctx context.Context, dst string) error {
	return s.do(ctx, "backup", false, func(tx *bbolt.Tx, l *lock) error {
		if err := l.file.verify(s.path); err != nil {
			return err
		}
		if err := checkTx(tx); err != nil {
			return err
		}
		return writeSnapshot(tx, dst)
	})
}

// writeSnapshot writes tx's database to dst through a temporary file.
func writeSnapshot(tx *bbolt.Tx, dst string) error {
	f, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = tx.WriteTo(f)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(filepath.Dir(dst))
	return nil
}

// Restore replaces the store at path with the snapshot from (typically
// path+".bak", written by Open or Backup) and returns where the file it
// replaced was moved (path+".corrupt-<unix time>", "" if there was none).
//
// The snapshot is verified first (Check's tests); a damaged snapshot is
// ErrCorrupt and nothing changes. The restored store's revision is set past
// both the snapshot's and the last revision published by a writer, and its
// change log is emptied (compacted at that revision), so revisions never go
// backwards and every running watch gets ErrCompacted and lists again.
//
// Writes made after the snapshot are lost: run an IPAM check and GC after a
// restore (allocations of live pods made since the snapshot are missing from
// it; the CNI plugin re-creates them on the pod's next ADD/CHECK, GC removes
// what no longer exists). opts supplies LockTimeout and NoSync; Restore waits
// for the lock like any writer.
func Restore(ctx context.Context, path, from string, opts *Options) (string, error) {
	s, err := newStore(path, opts)
	if err != nil {
		return "", err
	}
	fail := func(err error) error { return fmt.Errorf("bolt: restore %s from %s: %w", s.path, from, err) }
	if filepath.Clean(from) == s.path {
		return "", fail(fmt.Errorf("%w: the snapshot is the store itself", datastore.ErrInvalid))
	}
	if err := verifySnapshot(from); err != nil {
		return "", fail(err)
	}
	l, err := s.acquire(ctx, true)
	if err != nil {
		return "", fail(err)
	}
	defer s.release(l)
	published := readRev(l.f)
	tmp := s.path + ".new"
	os.Remove(tmp)
	if err := copyFile(from, tmp); err != nil {
		os.Remove(tmp)
		return "", fail(err)
	}
	var rev int64
	db, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: s.opts.LockTimeout, NoSync: s.opts.NoSync})
	if err == nil {
		err = db.Update(func(tx *bbolt.Tx) error {
			rev = max(getMeta(tx, metaRev), published) + 1
			if err := tx.DeleteBucket(bucketLog); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketLog); err != nil {
				return err
			}
			meta := tx.Bucket(bucketMeta)
			for k, v := range map[string]int64{string(metaRev): rev, string(metaCompacted): rev, string(metaLogCount): 0} {
				if err := meta.Put([]byte(k), be(v)); err != nil {
					return err
				}
			}
			return nil
		})
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		os.Remove(tmp)
		return "", fail(err)
	}
	saved := ""
	if _, err := os.Lstat(s.path); err == nil {
		saved = fmt.Sprintf("%s.corrupt-%d", s.path, time.Now().Unix())
		if err := os.Rename(s.path, saved); err != nil {
			os.Remove(tmp)
			return "", fail(err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		os.Remove(tmp)
		return "", fail(err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return saved, fail(err)
	}
	syncDir(filepath.Dir(s.path))
	l.publish(rev)
	return saved, nil
}

// verifySnapshot runs Check's tests on a file that no store uses.
func verifySnapshot(path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %w: bbolt failed on a damaged page: %v", path, datastore.ErrCorrupt, r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	st, err := validateFile(path)
	if err != nil {
		return err
	}
	if err := st.verify(path); err != nil {
		return err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			return os.OpenFile(name, flag&^os.O_CREATE, mode)
		}})
	if err != nil {
		return classify(path, err)
	}
	defer db.Close()
	return classify(path, db.View(func(tx *bbolt.Tx) error {
		if ok, err := hasBuckets(tx); err != nil || !ok {
			return fmt.Errorf("%w: not a tabby store", datastore.ErrCorrupt)
		}
		return checkTx(tx)
	}))
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
