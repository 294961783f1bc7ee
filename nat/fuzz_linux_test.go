//go:build linux

package nat

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/nftables"
)

func flatten(items map[string]item) []nftables.SetElement {
	var es []nftables.SetElement
	for _, it := range sortedItems(items) {
		es = append(es, it.elems...)
	}
	return es
}

func ids(items map[string]item) []string {
	var out []string
	for _, it := range sortedItems(items) {
		out = append(out, it.text)
	}
	return out
}

// Prefixes turned into interval elements, listed in any order (the kernel
// lists rbtree sets backwards), parse back to the same prefixes.
func FuzzIntervalRoundTrip(f *testing.F) {
	f.Add(uint32(0x0af40000), uint8(16), uint32(0x0af50000), uint8(24), uint32(0), uint8(0))
	f.Add(uint32(0xe0000000), uint8(3), uint32(0), uint8(8), uint32(0x0a000080), uint8(25))
	f.Add(uint32(0x0af50000), uint8(25), uint32(0x0af50080), uint8(25), uint32(0xffffffff), uint8(32))
	f.Fuzz(func(t *testing.T, a1 uint32, b1 uint8, a2 uint32, b2 uint8, a3 uint32, b3 uint8) {
		var ps []netip.Prefix
		for _, x := range []struct {
			a uint32
			b uint8
		}{{a1, b1}, {a2, b2}, {a3, b3}} {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, x.a))), int(x.b%33)).Masked()
			ps = append(ps, p)
		}
		want := map[string]item{}
		for _, it := range prefixItems(ps) {
			want[it.id] = it
		}
		es := flatten(want)
		slices.Reverse(es)
		got, err := itemsFromKernel(fam4(), kindPrefix, es)
		if err != nil {
			t.Fatalf("%v: %v (elements %v)", ps, err, es)
		}
		if g, w := ids(got), ids(want); !slices.Equal(g, w) {
			t.Fatalf("%v: parsed %v, want %v", ps, g, w)
		}
		for _, it := range got {
			if _, err := netip.ParsePrefix(it.text); err != nil {
				t.Fatalf("%v: %q is not a prefix", ps, it.text)
			}
		}
	})
}

// The same for IPv6 prefixes (16-byte keys, the interval reaching
// ffff:...:ffff without an end element).
func FuzzIntervalRoundTrip6(f *testing.F) {
	f.Add([]byte("\xfd\x00\x00\x10\x02\x44\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), uint8(64), []byte("\x20\x01\x0d\xb8"), uint8(32), []byte{0xff}, uint8(128))
	f.Add([]byte{0xff}, uint8(8), []byte{}, uint8(0), []byte{0xfe, 0x80}, uint8(10))
	f.Fuzz(func(t *testing.T, a1 []byte, b1 uint8, a2 []byte, b2 uint8, a3 []byte, b3 uint8) {
		var ps []netip.Prefix
		for _, x := range []struct {
			a []byte
			b uint8
		}{{a1, b1}, {a2, b2}, {a3, b3}} {
			var k [16]byte
			copy(k[:], x.a)
			p := netip.PrefixFrom(netip.AddrFrom16(k), int(x.b%129)).Masked()
			if p.Addr().Is4In6() {
				continue
			}
			ps = append(ps, p)
		}
		want := map[string]item{}
		for _, it := range prefixItems(ps) {
			want[it.id] = it
		}
		es := flatten(want)
		slices.Reverse(es)
		got, err := itemsFromKernel(fam6(), kindPrefix, es)
		if err != nil {
			t.Fatalf("%v: %v (elements %v)", ps, err, es)
		}
		if g, w := ids(got), ids(want); !slices.Equal(g, w) {
			t.Fatalf("%v: parsed %v, want %v", ps, g, w)
		}
		for _, it := range got {
			if _, err := netip.ParsePrefix(it.text); err != nil {
				t.Fatalf("%v: %q is not a prefix", ps, it.text)
			}
		}
	})
}

// Arbitrary kernel elements never panic the parser, and whatever parses
// re-encodes to elements that parse to the same items.
func FuzzItemsFromKernel(f *testing.F) {
	f.Add([]byte{10, 244, 0, 0, 0, 10, 245, 0, 0, 1}, uint8(kindPrefix))
	f.Add([]byte{0, 0, 0, 0, 1, 10, 0, 0, 0, 0}, uint8(kindPrefix))
	f.Add([]byte("cali6ff8e3ade03\x00\x0a\xf4\xeb\x87"), uint8(kindIfnameAddr))
	f.Add([]byte("cali6ff8e3ade03\x00\xfd\x00\x00\x10\x02\x44\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05"), uint8(kindIfnameAddr+4))
	f.Fuzz(func(t *testing.T, data []byte, k uint8) {
		kind := setKind(k%4 + 1)
		fam := fam4()
		if k&4 != 0 {
			fam = fam6()
		}
		size := kind.keyLen(fam)
		if kind == kindPrefix {
			size++ // one more byte: the interval-end flag
		}
		var es []nftables.SetElement
		for len(data) >= size {
			e := nftables.SetElement{Key: slices.Clone(data[:size])}
			if kind == kindPrefix {
				e.Key, e.IntervalEnd = e.Key[:size-1], data[size-1]&1 == 1
			}
			es = append(es, e)
			data = data[size:]
		}
		items, err := itemsFromKernel(fam, kind, es)
		if err != nil {
			return
		}
		again, err := itemsFromKernel(fam, kind, flatten(items))
		if err != nil {
			t.Fatalf("re-encoded items do not parse: %v", err)
		}
		if g, w := ids(again), ids(items); !slices.Equal(g, w) {
			t.Fatalf("round trip %v -> %v", w, g)
		}
	})
}
