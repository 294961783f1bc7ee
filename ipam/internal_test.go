package ipam

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
)

func TestAddrMath(t *testing.T) {
	for _, tc := range []struct {
		pool string
		bs   int
		idx  uint64
		want string
	}{
		{"10.244.0.0/16", 26, 0, "10.244.0.0/26"},
		{"10.244.0.0/16", 26, 1, "10.244.0.64/26"},
		{"10.244.0.0/16", 26, 1023, "10.244.255.192/26"},
		{"10.0.0.0/8", 26, 262143, "10.255.255.192/26"},
		{"10.0.0.0/8", 32, 5, "10.0.0.5/32"},
		{"fd00::/48", 122, 1, "fd00::40/122"},
		{"fd00::/48", 122, 1 << 40, "fd00::4000:0:0/122"}, {"fd00::/48", 122, 1 << 58, "fd00:0:0:1::/122"},
		{"fd00::/8", 116, 3, "fd00::3000/116"},
	} {
		p := netip.MustParsePrefix(tc.pool)
		b := blockAt(p, tc.bs, tc.idx)
		if b.String() != tc.want {
			t.Errorf("blockAt(%s, %d, %d) = %s, want %s", p, tc.bs, tc.idx, b, tc.want)
		}
		if got := blockIndex(p, b); got != tc.idx {
			t.Errorf("blockIndex(%s, %s) = %d, want %d", p, b, got, tc.idx)
		}
		last := addrAt(b, blockLen(b)-1)
		if !b.Contains(last) || ordinal(b, last) != blockLen(b)-1 || blockOf(last, tc.bs) != b {
			t.Errorf("%s: last address %s", b, last)
		}
	}
	if n := numBlocks(netip.MustParsePrefix("10.0.0.0/8"), 26); n != 262144 {
		t.Errorf("numBlocks /8 /26 = %d", n)
	}
	if n := numBlocks(netip.MustParsePrefix("fd00::/8"), 128); n != maxBlockIndexes {
		t.Errorf("numBlocks huge = %d", n)
	}
	for _, s := range []string{"10.244.0.64-26", "fd00::40-122"} {
		b, err := parseBlockSegment(s)
		if err != nil || blockSegment(b) != s {
			t.Errorf("parseBlockSegment(%s) = %v, %v", s, b, err)
		}
	}
	for _, s := range []string{"", "10.244.0.64", "10.244.0.65-26", "x-26", "10.0.0.0-33", "10.0.0.0-x"} {
		if _, err := parseBlockSegment(s); err == nil {
			t.Errorf("parseBlockSegment(%q) accepted", s)
		}
	}
}

func TestKeyLayout(t *testing.T) {
	k := keys{"tabby/ipam/"}
	for got, want := range map[string]string{
		k.pools(): "tabby/ipam/pools",
		k.block("default", netip.MustParsePrefix("10.244.235.128/26")): "tabby/ipam/blocks/default/10.244.235.128-26",
		k.block("v6", netip.MustParsePrefix("fd00::40/122")):           "tabby/ipam/blocks/v6/fd00::40-122",
		k.host("worker1"):                    "tabby/ipam/hosts/worker1",
		k.handle("k8s-pod-network.0123abcd"): "tabby/ipam/handles/k8s-pod-network.0123abcd",
		k.handle(TunnelHandle("worker1")):    "tabby/ipam/handles/vxlan-tunnel-addr-worker1",
	} {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
		if !datastore.ValidKey(got) {
			t.Errorf("key %q not valid", got)
		}
	}
}

func TestBlockRecord(t *testing.T) {
	now := time.Unix(100, 0)
	b := newBlock("p", netip.MustParsePrefix("10.0.0.0/30"), "n")
	var got []netip.Addr
	for range 4 {
		a, _, ok := b.take("h", "n", nil, now)
		if !ok {
			t.Fatal("take failed")
		}
		got = append(got, a)
	}
	if _, _, ok := b.take("h", "n", nil, now); ok {
		t.Fatal("took from a full block")
	}
	if got[0].String() != "10.0.0.0" || got[3].String() != "10.0.0.3" {
		t.Fatalf("order %v", got)
	}
	if !b.release(1, "h", 2, now) || b.release(1, "h", 2, now) || b.release(2, "other", 0, now) || b.release(2, "", 99, now) {
		t.Fatal("release conditions")
	}
	if err := b.check(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := b.takeOrd(2, "h", "n", nil, now); ok {
		t.Fatal("takeOrd of an allocated ordinal")
	}
	if a, seq, ok := b.takeOrd(1, "h", "n", nil, now); !ok || a.String() != "10.0.0.1" || seq != 5 {
		t.Fatalf("takeOrd = %v %d %v", a, seq, ok)
	}
	b.Allocs[2].Attrs = map[string]string{"pod": "web", "ns": "default"}
	b.EmptySince, b.SeenEmpty = now.UTC(), true
	back, err := decodeBlock(encode(b))
	if err == nil {
		if back.alloc(2).Attrs["pod"] != "web" || back.nallocs() != 4 {
			t.Fatalf("lazy block: %+v", back.alloc(2))
		}
		back.materialize()
	}
	if err != nil || !reflect.DeepEqual(back, b) {
		t.Fatalf("binary round trip: %v\n%+v\n%+v", err, back, b)
	}
	j, _ := json.Marshal(b)
	if back, err = decodeBlock(j); err == nil {
		back.materialize()
	}
	if err != nil || !reflect.DeepEqual(back, b) {
		t.Fatalf("JSON decode: %v", err)
	}
	enc := encode(b)
	for i := range enc {
		if _, err := decodeBlock(enc[:i]); err == nil {
			t.Fatalf("truncated block (%d of %d bytes) accepted", i, len(enc))
		}
	}
	for _, bad := range []string{
		`{`, `{}`, `{"cidr":"10.0.0.1/30","free":[0,1,2,3]}`,
		`{"cidr":"10.0.0.0/30","free":[0,1,2]}`,
		`{"cidr":"10.0.0.0/30","free":[0,1,2,2]}`,
		`{"cidr":"10.0.0.0/30","free":[0,1,2,4]}`,
		`{"cidr":"10.0.0.0/30","free":[0,1,2],"allocs":{"3":null}}`,
		`{"cidr":"10.0.0.0/30","seq":1,"free":[0,1,2],"allocs":{"3":{"handle":"h","seq":2}}}`,
		`{"cidr":"10.0.0.0/16","free":[]}`,
	} {
		if _, err := decodeBlock([]byte(bad)); err == nil {
			t.Errorf("decodeBlock(%s) accepted", bad)
		}
	}
}

func newTestIPAM(t testing.TB, st datastore.Store, cfg *Config) *IPAM {
	t.Helper()
	if cfg == nil {
		cfg = &Config{}
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.NewPCG(3, 4)
	}
	m, err := New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestInterruptedClaim: a process that dies between the two steps of a
// claim leaves a pending affinity; the host's next assignment confirms it
// and uses the block, and nothing is inconsistent meanwhile.
func TestInterruptedClaim(t *testing.T) {
	ctx := context.Background()
	st := memory.New(nil)
	defer st.Close()
	m := newTestIPAM(t, st, nil)
	if err := m.CreatePool(ctx, Pool{Name: "p", CIDR: netip.MustParsePrefix("10.244.0.0/16"), VXLANMode: VXLANAlways}); err != nil {
		t.Fatal(err)
	}
	pr, prev, _ := m.loadPools(ctx)
	b := blockAt(pr.Pools[0].CIDR, 26, 7)
	hr := &hostRec{Host: "n1", Blocks: []hostBlock{{Pool: "p", CIDR: b, Pending: true}}}
	if _, err := st.Txn(ctx, datastore.Check(m.k.pools(), prev),
		datastore.Create(m.k.block("p", b), encode(newBlock("p", b, "n1"))),
		datastore.Create(m.k.host("n1"), encode(hr))); err != nil {
		t.Fatal(err)
	}
	if ps, _ := m.Check(ctx, []string{"n1"}); len(ps) != 0 {
		t.Fatalf("pending claim reported: %v", ps)
	}
	if bs, _ := m.HostBlocks(ctx, "n1"); len(bs) != 0 {
		t.Fatalf("pending block listed as the host's: %v", bs)
	}
	if aff, _ := m.BlockAffinity(ctx, b); aff != "" {
		t.Fatalf("pending block affine to %q", aff)
	}
	// Another host cannot take it.
	hr2 := &hostRec{Host: "n2", Blocks: []hostBlock{{Pool: "p", CIDR: b, Pending: true}}}
	if _, err := st.Txn(ctx, datastore.Create(m.k.block("p", b), encode(newBlock("p", b, "n2"))),
		datastore.Create(m.k.host("n2"), encode(hr2))); err == nil {
		t.Fatal("second claim of the same block succeeded")
	}
	as, err := m.AutoAssign(ctx, AutoAssignArgs{Handle: "h", Host: "n1", Num4: 1})
	if err != nil {
		t.Fatal(err)
	}
	if as[0].Block != b {
		t.Fatalf("assigned from %s, want the pending block %s", as[0].Block, b)
	}
	if bs, _ := m.HostBlocks(ctx, "n1"); len(bs) != 1 || bs[0] != b {
		t.Fatalf("HostBlocks after recovery %v", bs)
	}
	// A stale pending entry (block taken by someone else) is dropped by GC.
	hr3 := &hostRec{Host: "n3", Blocks: []hostBlock{{Pool: "p", CIDR: b, Pending: true}}}
	st.Create(ctx, m.k.host("n3"), encode(hr3))
	res, err := m.GC(ctx, GCOptions{})
	if err != nil || res.Confirmed != 1 {
		t.Fatalf("gc %+v %v", res, err)
	}
	if _, err := st.Get(ctx, m.k.host("n3")); err != nil {
		t.Fatal(err)
	}
	h3, _, _ := m.loadHost(ctx, "n3")
	if len(h3.Blocks) != 0 {
		t.Fatalf("stale pending kept: %+v", h3)
	}
}

// countStore counts reads.
type countStore struct {
	datastore.Store
	gets, lists atomic.Int64
}

func (c *countStore) Get(ctx context.Context, k string) (datastore.KV, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, k)
}

func (c *countStore) List(ctx context.Context, p string) ([]datastore.KV, int64, error) {
	c.lists.Add(1)
	return c.Store.List(ctx, p)
}

// fillPool writes blocks directly (fast) so that frac of pool p is taken by
// hosts "other-<i%100>". It does not write host records (only claims read
// block keys).
func fillPool(t testing.TB, st datastore.Store, m *IPAM, p Pool, taken uint64, pick func(uint64) uint64) {
	t.Helper()
	ctx := context.Background()
	for i := uint64(0); i < taken; i++ {
		idx := pick(i)
		b := blockAt(p.CIDR, p.BlockSize, idx)
		host := "other-" + string(rune('a'+i%26))
		rec := newBlock(p.Name, b, host)
		if _, err := st.Create(ctx, m.k.block(p.Name, b), encode(rec)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestClaimReadsAreBounded(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(nil)
	defer mem.Close()
	cs := &countStore{Store: mem}
	m := newTestIPAM(t, cs, nil)
	p := Pool{Name: "big", CIDR: netip.MustParsePrefix("10.0.0.0/12"), BlockSize: 26, VXLANMode: VXLANAlways}
	if err := m.CreatePool(ctx, p); err != nil {
		t.Fatal(err)
	}
	n := numBlocks(p.CIDR, 26) // 16384
	fillPool(t, mem, m, p, n/2, func(i uint64) uint64 { return 2 * i })
	for i := range 20 {
		g0, l0 := cs.gets.Load(), cs.lists.Load()
		if _, err := m.ClaimBlock(ctx, "h"+string(rune('a'+i)), "big"); err != nil {
			t.Fatal(err)
		}
		// pools + host + probes + confirm (host + block) reads.
		if g, l := cs.gets.Load()-g0, cs.lists.Load()-l0; l != 0 || g > int64(m.probes)+4 {
			t.Fatalf("claim %d: %d gets, %d lists", i, g, l)
		}
	}
	// Nearly full: the fallback lists once and still finds the gaps.
	fill := memory.New(nil)
	defer fill.Close()
	cs2 := &countStore{Store: fill}
	m2 := newTestIPAM(t, cs2, nil)
	small := Pool{Name: "s", CIDR: netip.MustParsePrefix("10.0.0.0/20"), BlockSize: 26, VXLANMode: VXLANAlways}
	m2.CreatePool(ctx, small)
	fillPool(t, fill, m2, small, 63, func(i uint64) uint64 { return i + 1 }) // only block 0 is free
	b, err := m2.ClaimBlock(ctx, "h", "s")
	if err != nil || b != blockAt(small.CIDR, 26, 0) {
		t.Fatalf("claim in nearly full pool: %v %v", b, err)
	}
	if _, err := m2.ClaimBlock(ctx, "h2", "s"); err == nil {
		t.Fatal("claim in full pool succeeded")
	}
}

// FuzzDecodeBlock: any bytes either fail to decode or give a block whose
// operations keep its invariants.
func FuzzDecodeBlock(f *testing.F) {
	b := newBlock("p", netip.MustParsePrefix("10.0.0.0/29"), "n")
	b.take("h", "n", map[string]string{"k": "v"}, time.Unix(1, 0))
	f.Add(encode(b))
	j, _ := json.Marshal(b)
	f.Add(j)
	b6 := newBlock("v6", netip.MustParsePrefix("fd00::/124"), "")
	b6.take("h", "n", nil, time.Unix(1, 0))
	b6.release(0, "", 0, time.Unix(3, 0))
	f.Add(encode(b6))
	f.Add([]byte(`{"cidr":"10.0.0.0/30","free":[3,1,0],"seq":4,"allocs":{"2":{"handle":"h","seq":4}}}`))
	f.Add([]byte(`{"cidr":"fd00::/126","free":[0,1,2,3]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeBlock(data)
		if err != nil {
			return
		}
		if len(data) > 0 && data[0] == blockFormat {
			// A lazily decoded block re-encodes to the same allocations.
			again, err := decodeBlock(encode(b))
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			again.materialize()
			if again.nallocs() != b.nallocs() {
				t.Fatalf("re-encode: %d allocations, had %d", again.nallocs(), b.nallocs())
			}
		}
		b.materialize()
		now := time.Unix(2, 0)
		for {
			a, _, ok := b.take("x", "n", nil, now)
			if !ok {
				break
			}
			if !b.CIDR.Contains(a) {
				t.Fatalf("%s outside %s", a, b.CIDR)
			}
		}
		for ord := range b.Allocs {
			b.release(ord, "", 0, now)
		}
		if err := b.check(); err != nil || len(b.Free) != blockLen(b.CIDR) {
			t.Fatalf("after take/release: %v", err)
		}
		if _, err := decodeBlock(encode(b)); err != nil {
			t.Fatal(err)
		}
	})
}
