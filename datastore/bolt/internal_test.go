package bolt

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/tabbynet/tabby/datastore"
)

// FuzzDecode: records read back from a file never panic the decoders, and
// what encodeEvent writes decodes to the same event.
func FuzzDecode(f *testing.F) {
	f.Add(logKey(7, 0), encodeEvent(byte(datastore.EventPut), datastore.Create("/a/b", []byte("v"))), "/a/b", []byte("v"))
	f.Add(logKey(1, 3), encodeEvent(byte(datastore.EventDelete), datastore.Delete("/x", 1)), "/x", []byte(nil))
	f.Add([]byte{1, 2}, []byte{1, 0xff, 0xff, 0xff}, "", []byte{})
	f.Fuzz(func(t *testing.T, k, v []byte, key string, val []byte) {
		decodeEvent(k, v)
		decodeKV(k, v)
		if !datastore.ValidKey(key) {
			return
		}
		ev, err := decodeEvent(logKey(42, 1), encodeEvent(byte(datastore.EventPut), datastore.Create(key, val)))
		if err != nil || ev.Key != key || string(ev.Value) != string(val) || ev.Revision != 42 || ev.Type != datastore.EventPut {
			t.Fatalf("round trip of %q=%q: %+v %v", key, val, ev, err)
		}
	})
}

// A file that cannot be written (read-only mount, permissions, chattr +i)
// is ErrCorrupt with a reason, not an unclassified error (issue 15.9: the
// CNI plugin answered code 999). The real case needs root and a file system
// with the immutable attribute, so the mapping is tested here.
func TestClassifyUnwritable(t *testing.T) {
	for _, e := range []error{syscall.EPERM, syscall.EACCES, syscall.EROFS} {
		err := classify("/x/tabby.db", &fs.PathError{Op: "open", Path: "/x/tabby.db", Err: e})
		if !errors.Is(err, datastore.ErrCorrupt) || !errors.Is(err, e) || !strings.Contains(err.Error(), "cannot be written") {
			t.Errorf("%v: %v", e, err)
		}
	}
	if err := classify("/x", datastore.ErrUnavailable); errors.Is(err, datastore.ErrCorrupt) {
		t.Errorf("unavailable became corrupt: %v", err)
	}
}
