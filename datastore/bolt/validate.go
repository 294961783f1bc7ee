package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"syscall"

	bberrors "go.etcd.io/bbolt/errors"

	"github.com/tabbynet/tabby/datastore"
)

// The on-disk layout of bbolt's first two pages (go.etcd.io/bbolt
// internal/common): a 16-byte page header (id, flags, count, overflow) then
// the meta record, in the machine's byte order. Checking it before bbolt maps
// the file is what turns a truncated or damaged file into ErrCorrupt instead
// of a SIGBUS (bbolt maps at least 32 KiB and reads pages past the end of a
// short file) or a silently re-initialised store (bbolt initialises an empty
// file).
const (
	pageHeaderSize = 16
	metaSize       = 64 // magic .. checksum
	metaSumLen     = 56 // the checksum covers the fields before it
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	noFreelist     = ^uint64(0)
	minPageSize    = 512
	maxPageSize    = 1 << 16

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagMeta     = 0x04
	flagFreelist = 0x10
)

// meta is a decoded bbolt meta page.
type meta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // high water mark: pages [0, pgid) are in use
	txid     uint64
}

// decodeMeta decodes and verifies the meta page in b (at least
// pageHeaderSize+metaSize bytes).
func decodeMeta(b []byte) (meta, error) {
	if len(b) < pageHeaderSize+metaSize {
		return meta{}, errors.New("short meta page")
	}
	bo := binary.NativeEndian
	if bo.Uint16(b[8:])&flagMeta == 0 {
		return meta{}, errors.New("not a meta page")
	}
	m := b[pageHeaderSize:]
	if bo.Uint32(m[0:]) != boltMagic {
		return meta{}, errors.New("bad magic")
	}
	if v := bo.Uint32(m[4:]); v != boltVersion {
		return meta{}, fmt.Errorf("version %d", v)
	}
	h := fnv.New64a()
	h.Write(m[:metaSumLen])
	if h.Sum64() != bo.Uint64(m[metaSumLen:]) {
		return meta{}, errors.New("bad checksum")
	}
	out := meta{
		pageSize: bo.Uint32(m[8:]),
		root:     bo.Uint64(m[16:]),
		freelist: bo.Uint64(m[32:]),
		pgid:     bo.Uint64(m[40:]),
		txid:     bo.Uint64(m[48:]),
	}
	if out.pageSize < minPageSize || out.pageSize > maxPageSize || out.pageSize&(out.pageSize-1) != 0 {
		return meta{}, fmt.Errorf("page size %d", out.pageSize)
	}
	if out.pgid < 4 || out.root < 2 || out.root >= out.pgid || (out.freelist != noFreelist && (out.freelist < 2 || out.freelist >= out.pgid)) {
		return meta{}, fmt.Errorf("page ids out of range (root %d, freelist %d, high water mark %d)", out.root, out.freelist, out.pgid)
	}
	return out, nil
}

// fileState is what validateFile found.
type fileState struct {
	size   int64
	meta   meta // the newest valid meta page
	damage error
}

// verify is the full check of a validated file, run under the lock before
// bbolt's Check: no damaged meta page, and walkFile on a copy of the file.
func (st fileState) verify(path string) error {
	if st.damage != nil {
		return fmt.Errorf("%s: %w: %v", path, datastore.ErrCorrupt, st.damage)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := walkFile(b, st.meta); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// corrupt wraps a reason as ErrCorrupt.
func corrupt(path, format string, a ...any) error {
	return fmt.Errorf("%s: %w: %s", path, datastore.ErrCorrupt, fmt.Sprintf(format, a...))
}

// validateFile checks, without mapping it, that the file at path is a bbolt
// file whose every page that bbolt will read lies inside the file: its size,
// both meta pages (magic, version, checksum, page ids below the high water
// mark), the size implied by the newest valid meta page, and the headers of
// the root and freelist pages it names. A missing file is fs.ErrNotExist
// (wrapped); every other problem is datastore.ErrCorrupt.
//
// One damaged meta page is tolerated, as bbolt does (a crash while writing
// a meta page leaves the previous one valid); it is reported in damage, and
// Check fails on it.
func validateFile(path string) (fileState, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fileState{}, err
		}
		return fileState{}, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	return validateOpen(f, path, true)
}

// validateOpen is validateFile on an open file (bbolt's own descriptor, so
// that an operation opens the file once). Unless full, it skips the root
// and freelist page headers (a damaged page there panics bbolt, which the
// operation recovers; Check walks every page).
func validateOpen(f *os.File, path string, full bool) (fileState, error) {
	fi, err := f.Stat()
	if err != nil {
		return fileState{}, fmt.Errorf("%s: %w", path, err)
	}
	st := fileState{size: fi.Size()}
	if !fi.Mode().IsRegular() {
		return st, corrupt(path, "not a regular file (%s)", fi.Mode().Type())
	}
	if st.size == 0 {
		return st, corrupt(path, "empty file (a store is only created where no file exists; restore it with `tabbyctl ipam restore`)")
	}
	// The first two pages in one read when they are of the OS page size
	// (bbolt's default): the common case costs one pread.
	ps0 := int64(os.Getpagesize())
	head := make([]byte, min(st.size, 2*ps0))
	if _, err := f.ReadAt(head, 0); err != nil && err != io.EOF {
		return st, fmt.Errorf("%s: read: %w", path, err)
	}
	read := func(off int64, n int) ([]byte, error) {
		if off+int64(n) <= int64(len(head)) {
			return head[off : off+int64(n)], nil
		}
		b := make([]byte, n)
		if off >= st.size {
			return nil, io.ErrUnexpectedEOF
		}
		k, err := f.ReadAt(b, off)
		if k == n {
			return b, nil
		}
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	readErr := func(err error) error {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		return fmt.Errorf("%s: read: %w", path, err)
	}
	// Meta page 0 is at offset 0; meta page 1 one page later. bbolt finds the
	// page size in meta 0, or, if it is damaged, tries meta 1 at the OS page
	// size.
	var m0, m1 meta
	var e0, e1 error
	b0, err := read(0, pageHeaderSize+metaSize)
	if err != nil {
		if err := readErr(err); err != nil {
			return st, err
		}
		return st, corrupt(path, "truncated to %d bytes", st.size)
	}
	m0, e0 = decodeMeta(b0)
	ps := int64(os.Getpagesize())
	if e0 == nil {
		ps = int64(m0.pageSize)
	}
	if b1, err := read(ps, pageHeaderSize+metaSize); err != nil {
		if err := readErr(err); err != nil {
			return st, err
		}
		e1 = fmt.Errorf("truncated to %d bytes", st.size)
	} else {
		m1, e1 = decodeMeta(b1)
		if e1 == nil && e0 == nil && m1.pageSize != m0.pageSize {
			e1 = fmt.Errorf("page size %d, meta 0 says %d", m1.pageSize, m0.pageSize)
		}
	}
	switch {
	case e0 != nil && e1 != nil:
		return st, corrupt(path, "both meta pages damaged (meta 0: %v; meta 1: %v)", e0, e1)
	case e0 != nil:
		st.meta, st.damage = m1, fmt.Errorf("meta page 0: %v", e0)
	case e1 != nil:
		st.meta, st.damage = m0, fmt.Errorf("meta page 1: %v", e1)
	case m1.txid > m0.txid:
		st.meta = m1
	default:
		st.meta = m0
	}
	m := st.meta
	pgsz := int64(m.pageSize)
	if need := int64(m.pgid) * pgsz; m.pgid > uint64(1<<62)/uint64(pgsz) || need > st.size {
		return st, corrupt(path, "truncated: %d bytes, the newest meta page (txid %d) needs %d", st.size, m.txid, need)
	}
	if !full {
		return st, nil
	}
	// The pages bbolt reads first: the root bucket and the freelist.
	page := func(id uint64, what string, flags ...uint16) error {
		h, err := read(int64(id)*pgsz, pageHeaderSize)
		if err != nil {
			if err := readErr(err); err != nil {
				return err
			}
			return corrupt(path, "%s page %d beyond the end", what, id)
		}
		bo := binary.NativeEndian
		if got := bo.Uint64(h[0:]); got != id {
			return corrupt(path, "%s page %d has id %d", what, id, got)
		}
		fl := bo.Uint16(h[8:])
		ok := false
		for _, want := range flags {
			ok = ok || fl == want
		}
		if !ok {
			return corrupt(path, "%s page %d has flags %#x", what, id, fl)
		}
		if over := uint64(bo.Uint32(h[12:])); id+over >= m.pgid {
			return corrupt(path, "%s page %d overflows the high water mark %d", what, id, m.pgid)
		}
		return nil
	}
	if err := page(m.root, "root", flagBranch, flagLeaf); err != nil {
		return st, err
	}
	if m.freelist != noFreelist {
		if err := page(m.freelist, "freelist", flagFreelist); err != nil {
			return st, err
		}
	}
	return st, nil
}

// classify maps an error from opening the file with bbolt or from a
// transaction to the datastore's sentinels, so that every sign of a damaged
// or unusable file is ErrCorrupt (retrying will not help) with a clear reason.
func classify(path string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, datastore.ErrCorrupt):
		return err
	case errors.Is(err, bberrors.ErrInvalid), errors.Is(err, bberrors.ErrVersionMismatch),
		errors.Is(err, bberrors.ErrChecksum), errors.Is(err, bberrors.ErrInvalidMapping),
		errors.Is(err, bberrors.ErrIncompatibleValue), errors.Is(err, bberrors.ErrBucketNotFound):
		return fmt.Errorf("%s: %w: %w", path, datastore.ErrCorrupt, err)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%s: %w: the file cannot be written (read-only file system, permissions, or the immutable attribute: see lsattr): %w", path, datastore.ErrCorrupt, err)
	}
	return err
}

// walkFile checks the structure of every page reachable from m in the file
// contents b (a copy, not bbolt's mapping, so that a bad offset is an error
// here and not a fault there): page ids, flags, overflow below the high
// water mark, every branch and leaf element's key and value inside its page,
// child pages and sub-bucket roots (inline or not) in turn, and the freelist.
// bbolt's own Check reads the mapping on a goroutine of its own, where a
// fault cannot be recovered; after walkFile passes, the offsets it follows
// are all inside the file.
func walkFile(b []byte, m meta) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: malformed page: %v", datastore.ErrCorrupt, r)
		}
	}()
	bo := binary.NativeEndian
	ps := uint64(m.pageSize)
	if uint64(len(b)) < m.pgid*ps {
		return fmt.Errorf("%w: file shorter than its high water mark", datastore.ErrCorrupt)
	}
	seen := make(map[uint64]bool)
	// span returns the bytes of page id with its overflow pages.
	span := func(id uint64, want ...uint16) ([]byte, error) {
		if id < 2 || id >= m.pgid {
			return nil, fmt.Errorf("%w: page %d outside [2, %d)", datastore.ErrCorrupt, id, m.pgid)
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: page %d reached twice", datastore.ErrCorrupt, id)
		}
		seen[id] = true
		h := b[id*ps:]
		if got := bo.Uint64(h); got != id {
			return nil, fmt.Errorf("%w: page %d has id %d", datastore.ErrCorrupt, id, got)
		}
		over := uint64(bo.Uint32(h[12:]))
		if id+over >= m.pgid {
			return nil, fmt.Errorf("%w: page %d overflows the high water mark", datastore.ErrCorrupt, id)
		}
		fl := bo.Uint16(h[8:])
		for _, w := range want {
			if fl == w {
				return b[id*ps : (id+over+1)*ps], nil
			}
		}
		return nil, fmt.Errorf("%w: page %d has flags %#x", datastore.ErrCorrupt, id, fl)
	}
	var node func(p []byte, depth int) error
	var bucket func(v []byte, depth int) error
	bucket = func(v []byte, depth int) error {
		if len(v) < 16 {
			return fmt.Errorf("%w: bucket header of %d bytes", datastore.ErrCorrupt, len(v))
		}
		if root := bo.Uint64(v); root != 0 {
			p, err := span(root, flagBranch, flagLeaf)
			if err != nil {
				return err
			}
			return node(p, depth+1)
		}
		inline := v[16:]
		if len(inline) < pageHeaderSize || bo.Uint16(inline[8:]) != flagLeaf {
			return fmt.Errorf("%w: inline bucket page", datastore.ErrCorrupt)
		}
		return node(inline, depth+1)
	}
	node = func(p []byte, depth int) error {
		if depth > 64 {
			return fmt.Errorf("%w: tree deeper than 64", datastore.ErrCorrupt)
		}
		fl, n := bo.Uint16(p[8:]), int(bo.Uint16(p[10:]))
		if pageHeaderSize+16*n > len(p) {
			return fmt.Errorf("%w: %d elements overflow their page", datastore.ErrCorrupt, n)
		}
		for i := range n {
			at := pageHeaderSize + 16*i
			e := p[at : at+16]
			if fl == flagBranch {
				pos, ks := uint64(bo.Uint32(e[0:])), uint64(bo.Uint32(e[4:]))
				if uint64(at)+pos+ks > uint64(len(p)) {
					return fmt.Errorf("%w: branch key outside its page", datastore.ErrCorrupt)
				}
				c, err := span(bo.Uint64(e[8:]), flagBranch, flagLeaf)
				if err != nil {
					return err
				}
				if err := node(c, depth+1); err != nil {
					return err
				}
				continue
			}
			efl := bo.Uint32(e[0:])
			pos, ks, vs := uint64(bo.Uint32(e[4:])), uint64(bo.Uint32(e[8:])), uint64(bo.Uint32(e[12:]))
			if uint64(at)+pos+ks+vs > uint64(len(p)) {
				return fmt.Errorf("%w: leaf key or value outside its page", datastore.ErrCorrupt)
			}
			if efl&0x01 != 0 { // a sub-bucket
				v := p[uint64(at)+pos+ks : uint64(at)+pos+ks+vs]
				if err := bucket(v, depth); err != nil {
					return err
				}
			}
		}
		return nil
	}
	rp, err := span(m.root, flagBranch, flagLeaf)
	if err != nil {
		return err
	}
	if err := node(rp, 0); err != nil {
		return err
	}
	if m.freelist != noFreelist {
		fp, err := span(m.freelist, flagFreelist)
		if err != nil {
			return err
		}
		n, ids := uint64(bo.Uint16(fp[10:])), fp[pageHeaderSize:]
		if n == 0xFFFF {
			n, ids = bo.Uint64(ids), ids[8:]
		}
		if n*8 > uint64(len(ids)) {
			return fmt.Errorf("%w: freelist of %d ids overflows its page", datastore.ErrCorrupt, n)
		}
		for i := range n {
			if id := bo.Uint64(ids[8*i:]); id < 2 || id >= m.pgid {
				return fmt.Errorf("%w: free page %d outside [2, %d)", datastore.ErrCorrupt, id, m.pgid)
			}
		}
	}
	return nil
}
