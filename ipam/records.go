package ipam

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Key layout under Config.Prefix (default "tabby/ipam/"), values are JSON:
//
//	pools                          one record holding every pool (poolsRec)
//	blocks/<pool>/<addr>-<bits>    one block (blockRec)
//	hosts/<host>                   a host's block affinities (hostRec)
//	handles/<handle>               what a handle holds (handleRec)
type keys struct{ prefix string }

func (k keys) pools() string             { return k.prefix + "pools" }
func (k keys) blocksAll() string         { return k.prefix + "blocks/" }
func (k keys) blocks(pool string) string { return k.prefix + "blocks/" + pool + "/" }
func (k keys) hostsAll() string          { return k.prefix + "hosts/" }
func (k keys) host(h string) string      { return k.prefix + "hosts/" + h }
func (k keys) handlesAll() string        { return k.prefix + "handles/" }
func (k keys) handle(h string) string    { return k.prefix + "handles/" + h }
func blockSegment(b netip.Prefix) string { return b.Addr().String() + "-" + strconv.Itoa(b.Bits()) }
func (k keys) block(pool string, b netip.Prefix) string {
	return k.blocks(pool) + blockSegment(b)
}

// parseBlockSegment parses "<addr>-<bits>".
func parseBlockSegment(s string) (netip.Prefix, error) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return netip.Prefix{}, fmt.Errorf("%w: block key %q", ErrCorrupt, s)
	}
	a, err := netip.ParseAddr(s[:i])
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: block key %q", ErrCorrupt, s)
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: block key %q", ErrCorrupt, s)
	}
	p, err := a.Prefix(n)
	if err != nil || p.Addr() != a {
		return netip.Prefix{}, fmt.Errorf("%w: block key %q", ErrCorrupt, s)
	}
	return p, nil
}

// poolRec is a Pool as stored, with the internal deletion marker.
type poolRec struct {
	Pool
	// Deleting is set by DeletePool before it removes the pool's blocks;
	// a deleting pool is treated as disabled.
	Deleting bool `json:"deleting,omitempty"`
}

func (p poolRec) usable() bool { return !p.Disabled && !p.Deleting }

type poolsRec struct {
	Pools []poolRec `json:"pools"`
}

func (r *poolsRec) find(name string) int {
	for i := range r.Pools {
		if r.Pools[i].Name == name {
			return i
		}
	}
	return -1
}

// containing returns the pool that holds a, or -1.
func (r *poolsRec) containing(a netip.Addr) int {
	for i := range r.Pools {
		if r.Pools[i].CIDR.Contains(a) {
			return i
		}
	}
	return -1
}

// allocRec is one allocated address in a block.
type allocRec struct {
	Handle string            `json:"handle"`
	Host   string            `json:"host,omitempty"`
	Attrs  map[string]string `json:"attrs,omitempty"`
	Time   time.Time         `json:"time"`
	Seq    uint64            `json:"seq"`
}

// blockRec is one block. Free lists unallocated ordinals in reuse order: an
// allocation takes the first, a release appends, so the address free for the
// longest is handed out first. Seq counts allocations; each allocation keeps
// its number so a release naming an old Seq cannot free a reused address.
type blockRec struct {
	Pool     string            `json:"pool"`
	CIDR     netip.Prefix      `json:"cidr"`
	Affinity string            `json:"affinity,omitempty"`
	Seq      uint64            `json:"seq"`
	Free     []int             `json:"free"`
	Allocs   map[int]*allocRec `json:"allocs,omitempty"`
	// EmptySince is when the last allocation was released (zero while in
	// use or if the block was never used); SeenEmpty is set by a GC pass
	// that found the block empty. Both are cleared by an allocation.
	EmptySince time.Time `json:"emptySince,omitzero"`
	SeenEmpty  bool      `json:"seenEmpty,omitempty"`

	// Allocations of a block decoded from the binary form stay undecoded
	// in raw until used (an assignment touches one or two of them): rawIdx
	// locates them, an entry with ord -1 was moved to Allocs or released,
	// rawLive counts the others. Allocs then holds only decoded entries.
	raw     []byte
	rawIdx  []rawAlloc
	rawLive int
}

// rawAlloc locates one undecoded allocation: raw[start:end] is everything
// after its ordinal.
type rawAlloc struct{ ord, start, end int32 }

// nallocs is the number of allocated addresses.
func (b *blockRec) nallocs() int { return len(b.Allocs) + b.rawLive }

// alloc returns the allocation at ord (nil if free), decoding it if needed.
func (b *blockRec) alloc(ord int) *allocRec {
	if a := b.Allocs[ord]; a != nil {
		return a
	}
	if b.rawLive == 0 {
		return nil
	}
	for i := range b.rawIdx {
		if r := &b.rawIdx[i]; int(r.ord) == ord {
			b.promote(r)
			return b.Allocs[ord]
		}
	}
	return nil
}

func (b *blockRec) promote(r *rawAlloc) {
	if b.Allocs == nil {
		b.Allocs = map[int]*allocRec{}
	}
	b.Allocs[int(r.ord)] = decodeAlloc(b.raw[r.start:r.end])
	r.ord = -1
	b.rawLive--
}

// materialize decodes every allocation into Allocs.
func (b *blockRec) materialize() {
	for i := range b.rawIdx {
		if b.rawIdx[i].ord >= 0 {
			b.promote(&b.rawIdx[i])
		}
	}
	b.raw, b.rawIdx, b.rawLive = nil, nil, 0
	if b.Allocs == nil {
		b.Allocs = map[int]*allocRec{}
	}
}

func newBlock(pool string, cidr netip.Prefix, affinity string) *blockRec {
	n := blockLen(cidr)
	b := &blockRec{Pool: pool, CIDR: cidr, Affinity: affinity, Free: make([]int, n), Allocs: map[int]*allocRec{}}
	for i := range b.Free {
		b.Free[i] = i
	}
	return b
}

// take allocates the longest-free address.
func (b *blockRec) take(handle, host string, attrs map[string]string, now time.Time) (netip.Addr, uint64, bool) {
	if len(b.Free) == 0 {
		return netip.Addr{}, 0, false
	}
	ord := b.Free[0]
	b.Free = b.Free[1:]
	return b.put(ord, handle, host, attrs, now)
}

// takeAvoiding allocates the longest-free address other than ordinal avoid.
func (b *blockRec) takeAvoiding(avoid int, handle, host string, attrs map[string]string, now time.Time) (netip.Addr, uint64, bool) {
	for i, ord := range b.Free {
		if ord != avoid {
			b.Free = slices.Delete(b.Free, i, i+1)
			return b.put(ord, handle, host, attrs, now)
		}
	}
	return netip.Addr{}, 0, false
}

// takeOrd allocates a specific ordinal; false if it is in use.
func (b *blockRec) takeOrd(ord int, handle, host string, attrs map[string]string, now time.Time) (netip.Addr, uint64, bool) {
	i := slices.Index(b.Free, ord)
	if i < 0 {
		return netip.Addr{}, 0, false
	}
	b.Free = slices.Delete(b.Free, i, i+1)
	return b.put(ord, handle, host, attrs, now)
}

func (b *blockRec) put(ord int, handle, host string, attrs map[string]string, now time.Time) (netip.Addr, uint64, bool) {
	b.Seq++
	if b.Allocs == nil {
		b.Allocs = map[int]*allocRec{}
	}
	b.Allocs[ord] = &allocRec{Handle: handle, Host: host, Attrs: maps.Clone(attrs), Time: now.UTC(), Seq: b.Seq}
	b.EmptySince = time.Time{}
	b.SeenEmpty = false
	return addrAt(b.CIDR, ord), b.Seq, true
}

// release frees ord if it is allocated and (when given) held by handle with
// sequence number seq.
func (b *blockRec) release(ord int, handle string, seq uint64, now time.Time) bool {
	a := b.alloc(ord)
	if a == nil || (handle != "" && a.Handle != handle) || (seq != 0 && a.Seq != seq) {
		return false
	}
	delete(b.Allocs, ord)
	b.Free = append(b.Free, ord)
	if b.nallocs() == 0 {
		b.EmptySince = now.UTC()
	}
	return true
}

// check verifies the block's invariants.
func (b *blockRec) check() error {
	if !b.CIDR.IsValid() || b.CIDR.Masked() != b.CIDR {
		return fmt.Errorf("%w: block CIDR %v", ErrCorrupt, b.CIDR)
	}
	bits := addrBits(b.CIDR.Addr())
	if bits-b.CIDR.Bits() > 12 {
		return fmt.Errorf("%w: block %s too large", ErrCorrupt, b.CIDR)
	}
	n := blockLen(b.CIDR)
	if len(b.Free)+b.nallocs() != n {
		return fmt.Errorf("%w: block %s: %d free + %d allocated != %d", ErrCorrupt, b.CIDR, len(b.Free), b.nallocs(), n)
	}
	seen := make([]bool, n)
	for _, o := range b.Free {
		if o < 0 || o >= n || seen[o] {
			return fmt.Errorf("%w: block %s: free ordinal %d", ErrCorrupt, b.CIDR, o)
		}
		seen[o] = true
	}
	for o, a := range b.Allocs {
		if o < 0 || o >= n || seen[o] || a == nil {
			return fmt.Errorf("%w: block %s: allocated ordinal %d", ErrCorrupt, b.CIDR, o)
		}
		seen[o] = true
		if a.Seq == 0 || a.Seq > b.Seq {
			return fmt.Errorf("%w: block %s: ordinal %d sequence %d (block at %d)", ErrCorrupt, b.CIDR, o, a.Seq, b.Seq)
		}
	}
	// Undecoded entries: their sequence numbers were checked by
	// unmarshalBlock.
	for _, r := range b.rawIdx {
		if o := int(r.ord); o >= 0 {
			if o >= n || seen[o] {
				return fmt.Errorf("%w: block %s: allocated ordinal %d", ErrCorrupt, b.CIDR, o)
			}
			seen[o] = true
		}
	}
	return nil
}

func decodeBlock(v []byte) (*blockRec, error) {
	var b *blockRec
	if len(v) > 0 && v[0] == blockFormat {
		var err error
		if b, err = unmarshalBlock(v); err != nil {
			return nil, err
		}
	} else {
		b = &blockRec{}
		if err := json.Unmarshal(v, b); err != nil {
			return nil, fmt.Errorf("%w: block: %v", ErrCorrupt, err)
		}
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	return b, nil
}

// hostBlock is one affinity of a host. Pending is true between the two
// steps of a claim. Full is a hint kept by assignments (a block seen with no
// free address): assignments try the other blocks first, so a host with many
// full blocks does not read them all; releases do not clear it.
type hostBlock struct {
	Pool    string       `json:"pool"`
	CIDR    netip.Prefix `json:"cidr"`
	Pending bool         `json:"pending,omitempty"`
	Full    bool         `json:"full,omitempty"`
}

// hostRec lists a host's block affinities in claim order, and its tunnel
// addresses once assigned (so that assignments know whether to keep the
// first address of its first block free for the tunnel).
type hostRec struct {
	Host    string      `json:"host"`
	Blocks  []hostBlock `json:"blocks"`
	Tunnel4 netip.Addr  `json:"tunnel4,omitzero"`
	Tunnel6 netip.Addr  `json:"tunnel6,omitzero"`
}

func (h *hostRec) tunnel(is4 bool) netip.Addr {
	if is4 {
		return h.Tunnel4
	}
	return h.Tunnel6
}

func (h *hostRec) setTunnel(a netip.Addr) {
	if a.Is4() {
		h.Tunnel4 = a
	} else {
		h.Tunnel6 = a
	}
}

// firstBlock returns the host's first confirmed block of the family.
func (h *hostRec) firstBlock(is4 bool) (netip.Prefix, bool) {
	for _, b := range h.Blocks {
		if !b.Pending && b.CIDR.Addr().Is4() == is4 {
			return b.CIDR, true
		}
	}
	return netip.Prefix{}, false
}

func (h *hostRec) index(b netip.Prefix) int {
	for i := range h.Blocks {
		if h.Blocks[i].CIDR == b {
			return i
		}
	}
	return -1
}

func (h *hostRec) confirmed() int {
	n := 0
	for _, b := range h.Blocks {
		if !b.Pending {
			n++
		}
	}
	return n
}

// handleAddr is one address held by a handle.
type handleAddr struct {
	Pool  string       `json:"pool"`
	Block netip.Prefix `json:"block"`
	Addr  netip.Addr   `json:"addr"`
	Seq   uint64       `json:"seq"`
}

// handleRec lists what a handle holds, so releasing it reads only those
// blocks.
type handleRec struct {
	Handle string       `json:"handle"`
	Addrs  []handleAddr `json:"addrs"`
}

func decode[T any](what string, v []byte) (*T, error) {
	var t T
	if err := json.Unmarshal(v, &t); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, what, err)
	}
	return &t, nil
}

func encode(v any) []byte {
	if b, ok := v.(*blockRec); ok {
		return b.marshal()
	}
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain structs are encoded; this cannot happen.
		panic("ipam: encode: " + err.Error())
	}
	return b
}
