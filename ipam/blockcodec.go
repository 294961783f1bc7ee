package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// Blocks are the records read and written on every assignment, so they use
// a compact binary form instead of JSON (about 5x cheaper to decode). Other
// records stay JSON. decodeBlock also accepts the JSON form of blockRec.
//
//	0xB1                         format version
//	string pool, string affinity (uvarint length + bytes)
//	addr (1 byte length 4|16, bytes), 1 byte prefix length
//	uvarint seq
//	uvarint len(free), uvarint each ordinal
//	uvarint len(allocs), then per allocation in ordinal order:
//	  uvarint ordinal, string handle, string host, varint unix-nano time,
//	  uvarint seq, uvarint len(attrs), then key, value strings sorted by key
//	varint emptySince unix-nano (0: zero time), byte seenEmpty
const blockFormat = 0xB1

func (b *blockRec) marshal() []byte {
	buf := make([]byte, 0, 64+2*len(b.Free)+len(b.raw)+48*len(b.Allocs))
	str := func(s string) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	tm := func(t time.Time) {
		if t.IsZero() {
			buf = binary.AppendVarint(buf, 0)
			return
		}
		buf = binary.AppendVarint(buf, t.UnixNano())
	}
	buf = append(buf, blockFormat)
	str(b.Pool)
	str(b.Affinity)
	a := b.CIDR.Addr().AsSlice()
	buf = append(buf, byte(len(a)))
	buf = append(buf, a...)
	buf = append(buf, byte(b.CIDR.Bits()))
	buf = binary.AppendUvarint(buf, b.Seq)
	buf = binary.AppendUvarint(buf, uint64(len(b.Free)))
	for _, o := range b.Free {
		buf = binary.AppendUvarint(buf, uint64(o))
	}
	buf = binary.AppendUvarint(buf, uint64(b.nallocs()))
	for _, r := range b.rawIdx { // undecoded entries are copied as they are
		if r.ord >= 0 {
			buf = binary.AppendUvarint(buf, uint64(r.ord))
			buf = append(buf, b.raw[r.start:r.end]...)
		}
	}
	ords := make([]int, 0, len(b.Allocs))
	for o := range b.Allocs {
		ords = append(ords, o)
	}
	slices.Sort(ords)
	for _, o := range ords {
		al := b.Allocs[o]
		buf = binary.AppendUvarint(buf, uint64(o))
		str(al.Handle)
		str(al.Host)
		tm(al.Time)
		buf = binary.AppendUvarint(buf, al.Seq)
		keys := make([]string, 0, len(al.Attrs))
		for k := range al.Attrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf = binary.AppendUvarint(buf, uint64(len(keys)))
		for _, k := range keys {
			str(k)
			str(al.Attrs[k])
		}
	}
	tm(b.EmptySince)
	if b.SeenEmpty {
		buf = append(buf, 1)
	} else {
		buf = append(buf, 0)
	}
	return buf
}

var errShort = errors.New("truncated")

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a length that must fit in the remaining bytes (each element
// takes at least one byte), so a corrupt length cannot allocate much.
func (r *reader) count(max int) int {
	n := r.uvarint()
	if r.err == nil && (n > uint64(len(r.b)) || n > uint64(max)) {
		r.err = fmt.Errorf("length %d out of range", n)
		return 0
	}
	return int(n)
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = errShort
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string { return string(r.bytes(r.count(math.MaxInt32))) }

func (r *reader) skipStr() { r.bytes(r.count(math.MaxInt32)) }

func (r *reader) time() time.Time {
	v := r.varint()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

// decodeAlloc decodes one allocation entry validated by unmarshalBlock.
func decodeAlloc(v []byte) *allocRec {
	r := &reader{b: v}
	a := &allocRec{Handle: r.str(), Host: r.str(), Time: r.time(), Seq: r.uvarint()}
	if k := r.count(1 << 16); k > 0 {
		a.Attrs = make(map[string]string, k)
		for range k {
			key := r.str()
			a.Attrs[key] = r.str()
		}
	}
	return a
}

func unmarshalBlock(v []byte) (*blockRec, error) {
	r := &reader{b: v[1:]}
	b := &blockRec{Pool: r.str(), Affinity: r.str()}
	var al []byte
	if l := r.bytes(1); r.err == nil {
		al = r.bytes(int(l[0]))
	}
	if r.err == nil {
		a, ok := netip.AddrFromSlice(al)
		bits := r.bytes(1)
		if !ok || r.err != nil {
			return nil, fmt.Errorf("%w: block: bad address", ErrCorrupt)
		}
		b.CIDR = netip.PrefixFrom(a, int(bits[0]))
		if !b.CIDR.IsValid() || addrBits(a)-b.CIDR.Bits() > 12 {
			return nil, fmt.Errorf("%w: block: bad prefix %v/%d", ErrCorrupt, a, bits[0])
		}
	}
	b.Seq = r.uvarint()
	n := r.count(4096)
	b.Free = make([]int, n)
	for i := range b.Free {
		b.Free[i] = int(r.uvarint())
	}
	// Allocations are only located and validated here; alloc and
	// materialize decode them.
	n = r.count(4096)
	b.raw = v
	b.rawIdx = make([]rawAlloc, 0, n)
	for range n {
		o := r.uvarint()
		start := len(v) - len(r.b)
		r.skipStr() // handle
		r.skipStr() // host
		r.varint()  // time
		if seq := r.uvarint(); r.err == nil && (seq == 0 || seq > b.Seq) {
			r.err = fmt.Errorf("ordinal %d: sequence %d (block at %d)", o, seq, b.Seq)
		}
		for k := r.count(1 << 16); k > 0; k-- {
			r.skipStr()
			r.skipStr()
		}
		if r.err == nil && o >= 4096 {
			r.err = fmt.Errorf("ordinal %d", o)
		}
		if r.err != nil {
			break
		}
		b.rawIdx = append(b.rawIdx, rawAlloc{ord: int32(o), start: int32(start), end: int32(len(v) - len(r.b))})
	}
	b.rawLive = len(b.rawIdx)
	b.EmptySince = r.time()
	seen := r.bytes(1)
	if r.err == nil && (len(r.b) != 0 || seen[0] > 1) {
		r.err = errors.New("trailing bytes")
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: block: %v", ErrCorrupt, r.err)
	}
	b.SeenEmpty = seen[0] == 1
	return b, nil
}
