package ipam_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/ipam"
)

// refModel is the reference: which handle holds which address, with the
// allocation's sequence number and time.
type refAlloc struct {
	handle string
	seq    uint64
	at     time.Time
}

type refModel struct {
	size   int // addresses in the pool
	addrs  map[netip.Addr]refAlloc
	byHand map[string][]netip.Addr
}

func (r *refModel) add(h string, a ipam.Assigned, at time.Time) {
	r.addrs[a.Addr] = refAlloc{h, a.Seq, at}
	r.byHand[h] = append(r.byHand[h], a.Addr)
}

func (r *refModel) drop(a netip.Addr) {
	h := r.addrs[a].handle
	delete(r.addrs, a)
	r.byHand[h] = slices.DeleteFunc(r.byHand[h], func(x netip.Addr) bool { return x == a })
	if len(r.byHand[h]) == 0 {
		delete(r.byHand, h)
	}
}

// opReader turns bytes into small numbers (zeros once exhausted).
type opReader struct {
	b []byte
	i int
}

func (o *opReader) next(n int) int {
	if o.i >= len(o.b) {
		return 0
	}
	v := int(o.b[o.i])
	o.i++
	return v % n
}

func (o *opReader) more() bool { return o.i < len(o.b) }

// runModel applies the operations encoded in ops to two small pools (32
// IPv4 addresses in four /29 blocks and 32 IPv6 in four /125 blocks, for 3
// hosts and 64 handles, so exhaustion, claims and borrowing all happen;
// now and then a host is released) and compares IPAM with the reference
// after each one.
func runModel(t *testing.T, ops []byte) {
	e := newEnv(t, &ipam.Config{MaxRetries: 5}, pool("p", "10.244.0.0/27", 29), pool("q", "fd00::/123", 125))
	ref := &refModel{size: 32, addrs: map[netip.Addr]refAlloc{}, byHand: map[string][]netip.Addr{}}
	hosts := []string{"n1", "n2", "n3"}
	o := &opReader{b: ops}
	for step := 0; o.more(); step++ {
		handle := fmt.Sprintf("h%d", o.next(64))
		var what string
		switch [...]int{0, 0, 0, 0, 2, 3, 4, 5}[o.next(8)] { // half assignments
		case 0: // assign (IPv4, IPv6 or both)
			n4, n6 := o.next(4), o.next(3)
			if n4+n6 == 0 {
				n4 = 1
			}
			host := hosts[o.next(len(hosts))]
			what = fmt.Sprintf("assign %s %s %d+%d", handle, host, n4, n6)
			got, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: handle, Host: host, Num4: n4, Num6: n6})
			var held4, held6 []netip.Addr
			for _, a := range ref.byHand[handle] {
				if a.Is4() {
					held4 = append(held4, a)
				} else {
					held6 = append(held6, a)
				}
			}
			need4, need6 := n4, n6
			if len(held4) > 0 {
				need4 = 0
			}
			if len(held6) > 0 {
				need6 = 0
			}
			free4, free6 := ref.size, ref.size
			for a := range ref.addrs {
				if a.Is4() {
					free4--
				} else {
					free6--
				}
			}
			if free4 < need4 || free6 < need6 {
				if !errors.Is(err, ipam.ErrExhausted) {
					t.Fatalf("step %d %s: %d+%d free, got %v", step, what, free4, free6, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d %s: %d+%d free: %v", step, what, free4, free6, err)
			}
			var c4, c6 int
			for i, a := range got {
				switch {
				case a.Addr.Is4():
					c4++
				default:
					c6++
				}
				if i > 0 && a.Addr.Is4() && !got[i-1].Addr.Is4() {
					t.Fatalf("step %d %s: IPv4 after IPv6 in %v", step, what, got)
				}
			}
			if (n4 > 0 && c4 != max(len(held4), need4)) || (n6 > 0 && c6 != max(len(held6), need6)) || (n4 == 0 && c4 > 0) || (n6 == 0 && c6 > 0) {
				t.Fatalf("step %d %s: got %v (held %v %v)", step, what, got, held4, held6)
			}
			for _, a := range got {
				if slices.Contains(held4, a.Addr) || slices.Contains(held6, a.Addr) {
					continue
				}
				if _, dup := ref.addrs[a.Addr]; dup {
					t.Fatalf("step %d %s: %s handed out twice", step, what, a.Addr)
				}
				ref.add(handle, a, e.clock.Now())
			}
			for _, h := range append(held4, held6...) {
				if (h.Is4() && n4 > 0 || h.Is6() && n6 > 0) && !slices.ContainsFunc(got, func(a ipam.Assigned) bool { return a.Addr == h }) {
					t.Fatalf("step %d %s: held %s not returned: %v", step, what, h, got)
				}
			}
		case 2: // release by handle
			what = "release " + handle
			rel, err := e.m.ReleaseByHandle(e.ctx, handle)
			if err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			want := slices.Clone(ref.byHand[handle])
			for _, a := range want {
				ref.drop(a)
			}
			slices.SortFunc(rel, netip.Addr.Compare)
			slices.SortFunc(want, netip.Addr.Compare)
			if !slices.Equal(rel, want) {
				t.Fatalf("step %d %s: released %v, want %v", step, what, rel, want)
			}
		case 3: // release one address, maybe with a stale sequence number
			a := netip.AddrFrom4([4]byte{10, 244, 0, byte(o.next(32))})
			if o.next(2) == 1 {
				a = netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(o.next(32))})
			}
			cur, ok := ref.addrs[a]
			var seq uint64
			switch o.next(3) {
			case 1:
				seq = cur.seq
			case 2:
				seq = cur.seq + 1 // never valid
			}
			what = fmt.Sprintf("release-ip %s seq %d", a, seq)
			rel, err := e.m.ReleaseIPs(e.ctx, ipam.Release{Addr: a, Seq: seq})
			if err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			want := ok && (seq == 0 || seq == cur.seq)
			if want != (len(rel) == 1) {
				t.Fatalf("step %d %s: released %v, want %v", step, what, rel, want)
			}
			if want {
				ref.drop(a)
			}
		case 4: // GC with a random valid set
			keep := o.next(256)
			valid := func(h string) bool {
				var i int
				fmt.Sscanf(h, "h%d", &i)
				return keep&(1<<(i%8)) != 0
			}
			grace := time.Duration(o.next(3)) * time.Minute
			what = fmt.Sprintf("gc keep=%08b grace=%v", keep, grace)
			res, err := e.m.GC(e.ctx, ipam.GCOptions{Valid: valid, GracePeriod: grace})
			if err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			var want []netip.Addr
			now := e.clock.Now()
			for a, al := range ref.addrs {
				if !valid(al.handle) && now.Sub(al.at) >= grace {
					want = append(want, a)
				}
			}
			for _, a := range want {
				ref.drop(a)
			}
			slices.SortFunc(want, netip.Addr.Compare)
			got := slices.Clone(res.Released)
			slices.SortFunc(got, netip.Addr.Compare)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d %s: released %v, want %v", step, what, got, want)
			}
		case 5:
			v := o.next(128)
			if v < 120 {
				what = "tick"
				e.clock.Advance(time.Duration(v) * time.Second)
				break
			}
			// Now and then a host leaves: its addresses stay.
			host := hosts[v%len(hosts)]
			what = "release-host " + host
			if _, err := e.m.ReleaseHost(e.ctx, host, ipam.ReleaseHostOptions{Scan: v%2 == 0}); err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			if bs, err := e.m.HostBlocks(e.ctx, host); err != nil || len(bs) > 0 {
				t.Fatalf("step %d %s: still holds %v (%v)", step, what, bs, err)
			}
			u, _ := e.m.Usage(e.ctx)
			for _, b := range u.Blocks {
				if b.Affinity == host {
					t.Fatalf("step %d %s: %s still affine", step, what, b.CIDR)
				}
			}
		}
		// Compare the whole state.
		al, err := e.m.Allocations(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(al) != len(ref.addrs) {
			t.Fatalf("step %d %s: %d allocations, reference has %d", step, what, len(al), len(ref.addrs))
		}
		for _, a := range al {
			r, ok := ref.addrs[a.Addr]
			if !ok || r.handle != a.Handle || r.seq != a.Seq {
				t.Fatalf("step %d %s: %s is %s/%d, reference %+v (%v)", step, what, a.Addr, a.Handle, a.Seq, r, ok)
			}
		}
		u, _ := e.m.Usage(e.ctx)
		if u.Pools[0].InUse+u.Pools[1].InUse != len(ref.addrs) {
			t.Fatalf("step %d %s: usage %d+%d, reference %d", step, what, u.Pools[0].InUse, u.Pools[1].InUse, len(ref.addrs))
		}
		if ps, _ := e.m.Check(e.ctx, hosts); len(ps) > 0 {
			t.Fatalf("step %d %s: inconsistent: %v", step, what, ps)
		}
	}
}

func TestModel(t *testing.T) {
	steps := 3000
	if testing.Short() || raceEnabled {
		steps = 500
	}
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 42))
			ops := make([]byte, steps*5)
			for i := range ops {
				ops[i] = byte(r.Uint32())
			}
			runModel(t, ops)
		})
	}
}

func FuzzModel(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0})
	f.Add([]byte{1, 0, 3, 0, 1, 1, 2, 0, 1, 4, 0, 2, 5, 100, 4, 0, 0})
	f.Add([]byte("assign, release, gc, tick: a byte soup drives them all"))
	f.Add([]byte{1, 0, 3, 0, 1, 0, 7, 121, 1, 0, 2, 0, 0, 0, 7, 126}) // assign, release the host, assign again
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 600 {
			ops = ops[:600]
		}
		runModel(t, ops)
	})
}

// TestConcurrentAssign: 16 goroutines × 1,000 assignments (4 hosts, so
// goroutines share blocks) are all distinct, and the store is consistent.
func TestConcurrentAssign(t *testing.T) {
	const workers = 16
	per := 1000
	switch {
	case testing.Short():
		per = 100
	case raceEnabled:
		per = 250
	}
	e := newEnv(t, nil)
	var mu sync.Mutex
	seen := map[netip.Addr]string{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			host := fmt.Sprintf("node-%d", w%4)
			for i := range per {
				h := fmt.Sprintf("w%d-%d", w, i)
				as, err := e.m.AutoAssign(e.ctx, ipam.AutoAssignArgs{Handle: h, Host: host, Num4: 1})
				if err != nil {
					errs <- fmt.Errorf("%s: %w", h, err)
					return
				}
				mu.Lock()
				if prev, dup := seen[as[0].Addr]; dup {
					mu.Unlock()
					errs <- fmt.Errorf("%s handed to %s and %s", as[0].Addr, prev, h)
					return
				}
				seen[as[0].Addr] = h
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != workers*per {
		t.Fatalf("%d distinct addresses, want %d", len(seen), workers*per)
	}
	al, err := e.m.Allocations(e.ctx)
	if err != nil || len(al) != workers*per {
		t.Fatalf("%d allocations stored (%v), want %d", len(al), err, workers*per)
	}
	for _, a := range al {
		if seen[a.Addr] != a.Handle {
			t.Fatalf("%s stored for %s, handed to %s", a.Addr, a.Handle, seen[a.Addr])
		}
	}
	e.clean([]string{"node-0", "node-1", "node-2", "node-3"})
}
