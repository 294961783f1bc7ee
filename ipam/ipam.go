package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/datastore"
)

// Config tunes an IPAM. A nil *Config means all defaults. It is a plain
// value, read only by New.
type Config struct {
	// Prefix is prepended to every key (default "tabby/ipam/"). It must end
	// in "/".
	Prefix string
	// MaxBlocksPerHost caps the blocks a host may hold an affinity for
	// (0: no limit). A host at the cap borrows (unless StrictAffinity).
	MaxBlocksPerHost int
	// StrictAffinity forbids borrowing addresses from blocks affine to other
	// hosts (or to none).
	StrictAffinity bool
	// MaxRetries bounds the attempts of one operation under write conflicts
	// (default 100). Retries wait a random, growing delay.
	MaxRetries int
	// ProbeReads bounds the random probes for a free block before a claim
	// falls back to listing the pool's blocks (default 16).
	ProbeReads int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand is the randomness for block probing and retry jitter (default:
	// the math/rand/v2 global source). It is used under a lock.
	Rand rand.Source
	// Logger receives debug logs (nil: discard).
	Logger *slog.Logger
}

// IPAM allocates addresses from pools on a datastore. Every method is safe for
// concurrent use, also by several IPAM values (in one or many processes, on
// one or many hosts) sharing the store: all shared state is in the store and
// every change is one conditional transaction.
type IPAM struct {
	st     datastore.Store
	k      keys
	maxBPH int
	strict bool
	tries  int
	probes int
	now    func() time.Time
	log    *slog.Logger

	mu  sync.Mutex // guards rnd
	rnd *rand.Rand

	// The pools record as last read by an assignment, reused by the next
	// ones: every assignment's transaction checks its revision, so a stale
	// copy can only cause a conflict (then it is dropped and re-read), and
	// an assignment that fails for a reason other than a conflict is re-run
	// on a fresh copy. Never mutated once stored.
	pmu      sync.Mutex
	poolsRec *poolsRec
	poolsRev int64
}

// assignPools returns the cached pools record (cached=true) or reads it and
// caches it.
func (m *IPAM) assignPools(ctx context.Context, useCache bool) (*poolsRec, int64, error) {
	if useCache {
		m.pmu.Lock()
		r, rev := m.poolsRec, m.poolsRev
		m.pmu.Unlock()
		if r != nil {
			return r, rev, nil
		}
	}
	r, rev, err := m.loadPools(ctx)
	if err != nil {
		return nil, 0, err
	}
	m.pmu.Lock()
	m.poolsRec, m.poolsRev = r, rev
	m.pmu.Unlock()
	return r, rev, nil
}

func (m *IPAM) dropPools() {
	m.pmu.Lock()
	m.poolsRec = nil
	m.pmu.Unlock()
}

// New returns an IPAM over st. cfg may be nil.
func New(st datastore.Store, cfg *Config) (*IPAM, error) {
	if st == nil {
		return nil, fmt.Errorf("ipam: new: %w: nil store", ErrInvalid)
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Prefix == "" {
		c.Prefix = "tabby/ipam/"
	}
	if !strings.HasSuffix(c.Prefix, "/") || !datastore.ValidKey(c.Prefix+"x") {
		return nil, fmt.Errorf("ipam: new: %w: key prefix %q", ErrInvalid, c.Prefix)
	}
	if c.MaxBlocksPerHost < 0 || c.MaxRetries < 0 || c.ProbeReads < 0 {
		return nil, fmt.Errorf("ipam: new: %w: negative limit", ErrInvalid)
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 100
	}
	if c.ProbeReads == 0 {
		c.ProbeReads = 16
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	m := &IPAM{st: st, k: keys{c.Prefix}, maxBPH: c.MaxBlocksPerHost, strict: c.StrictAffinity,
		tries: c.MaxRetries, probes: c.ProbeReads, now: c.Now, log: c.Logger}
	if c.Rand != nil {
		m.rnd = rand.New(c.Rand)
	}
	return m, nil
}

func (m *IPAM) randN(n uint64) uint64 {
	if n == 0 {
		return 0
	}
	if m.rnd == nil {
		return rand.Uint64N(n)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rnd.Uint64N(n)
}

// backoff waits before retry number attempt (1-based): a random delay in
// [0, min(50µs·2^attempt, 20ms)).
func (m *IPAM) backoff(ctx context.Context, attempt int) error {
	d := 50 * time.Microsecond << min(attempt, 9)
	d = min(d, 20*time.Millisecond)
	d = time.Duration(m.randN(uint64(d)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retry runs f until it returns something other than a conflict, at most
// m.tries times.
func (m *IPAM) retry(ctx context.Context, op string, f func() error) error {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if attempt >= m.tries {
				return fmt.Errorf("%w (%d attempts)", ErrContention, attempt)
			}
			if err := m.backoff(ctx, attempt); err != nil {
				return err
			}
		}
		err := f()
		if err == nil || !isConflict(err) {
			return err
		}
		m.log.Debug("ipam: conflict, retrying", "op", op, "attempt", attempt, "err", err)
	}
}

// isConflict reports whether err is a lost race that a retry may fix.
func isConflict(err error) bool {
	return errors.Is(err, datastore.ErrConflict) || errors.Is(err, datastore.ErrExists) || errors.Is(err, errRetry)
}

// errRetry asks retry for another attempt after re-reading state.
var errRetry = errors.New("state changed, retry")

// validRef reports whether s can be a handle or host name: 1–253 printable
// ASCII characters without spaces or "/".
func validRef(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == '/' {
			return false
		}
	}
	return true
}

func checkHandle(h string) error {
	if !validRef(h) {
		return fmt.Errorf("%w: handle %q (1-253 printable characters, no space or /)", ErrInvalid, h)
	}
	return nil
}

func checkHost(h string) error {
	if !validRef(h) {
		return fmt.Errorf("%w: host %q (1-253 printable characters, no space or /)", ErrInvalid, h)
	}
	return nil
}

// --- reading records --------------------------------------------------------

func (m *IPAM) loadPools(ctx context.Context) (*poolsRec, int64, error) {
	kv, err := m.st.Get(ctx, m.k.pools())
	if errors.Is(err, datastore.ErrNotFound) {
		return &poolsRec{}, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	r, err := decode[poolsRec]("pools", kv.Value)
	if err != nil {
		return nil, 0, err
	}
	return r, kv.Revision, nil
}

func (m *IPAM) loadHost(ctx context.Context, host string) (*hostRec, int64, error) {
	kv, err := m.st.Get(ctx, m.k.host(host))
	if errors.Is(err, datastore.ErrNotFound) {
		return &hostRec{Host: host}, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	r, err := decode[hostRec]("host "+host, kv.Value)
	if err != nil {
		return nil, 0, err
	}
	return r, kv.Revision, nil
}

func (m *IPAM) loadHandle(ctx context.Context, h string) (*handleRec, int64, error) {
	kv, err := m.st.Get(ctx, m.k.handle(h))
	if errors.Is(err, datastore.ErrNotFound) {
		return &handleRec{Handle: h}, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	r, err := decode[handleRec]("handle "+h, kv.Value)
	if err != nil {
		return nil, 0, err
	}
	return r, kv.Revision, nil
}

// loadBlock returns the block or (nil, 0, nil) if it does not exist.
func (m *IPAM) loadBlock(ctx context.Context, pool string, b netip.Prefix) (*blockRec, int64, error) {
	kv, err := m.st.Get(ctx, m.k.block(pool, b))
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	r, err := decodeBlock(kv.Value)
	if err != nil {
		return nil, 0, err
	}
	return r, kv.Revision, nil
}

// putOp writes value at key: a Create when rev is 0, else an Update at rev.
func putOp(key string, v any, rev int64) datastore.Op {
	if rev == 0 {
		return datastore.Create(key, encode(v))
	}
	return datastore.Update(key, encode(v), rev)
}

// --- a write set -------------------------------------------------------------

// change collects the blocks and handles one transaction modifies.
type change struct {
	m       *IPAM
	blocks  map[string]*loadedBlock
	handles map[string]*loadedHandle
	order   []string // block keys in first-touch order
	horder  []string
}

type loadedBlock struct {
	key   string
	rec   *blockRec
	rev   int64
	dirty bool
}

type loadedHandle struct {
	rec   *handleRec
	rev   int64
	dirty bool
}

func (m *IPAM) newChange() *change {
	return &change{m: m, blocks: map[string]*loadedBlock{}, handles: map[string]*loadedHandle{}}
}

// block returns the (copy of the) block, loading it once; nil if absent.
func (c *change) block(ctx context.Context, pool string, b netip.Prefix) (*loadedBlock, error) {
	key := c.m.k.block(pool, b)
	if lb, ok := c.blocks[key]; ok {
		return lb, nil
	}
	rec, rev, err := c.m.loadBlock(ctx, pool, b)
	if err != nil {
		return nil, err
	}
	lb := &loadedBlock{key: key, rec: rec, rev: rev}
	c.blocks[key] = lb
	c.order = append(c.order, key)
	return lb, nil
}

func (c *change) handle(ctx context.Context, h string) (*loadedHandle, error) {
	if lh, ok := c.handles[h]; ok {
		return lh, nil
	}
	rec, rev, err := c.m.loadHandle(ctx, h)
	if err != nil {
		return nil, err
	}
	lh := &loadedHandle{rec: rec, rev: rev}
	c.handles[h] = lh
	c.horder = append(c.horder, h)
	return lh, nil
}

// ops returns the transaction's operations for every dirty record.
func (c *change) ops() []datastore.Op {
	var ops []datastore.Op
	for _, key := range c.order {
		lb := c.blocks[key]
		if lb.dirty {
			ops = append(ops, datastore.Update(key, encode(lb.rec), lb.rev))
		}
	}
	for _, h := range c.horder {
		lh := c.handles[h]
		if !lh.dirty {
			continue
		}
		key := c.m.k.handle(h)
		switch {
		case len(lh.rec.Addrs) == 0 && lh.rev != 0:
			ops = append(ops, datastore.Delete(key, lh.rev))
		case len(lh.rec.Addrs) == 0:
		default:
			ops = append(ops, putOp(key, lh.rec, lh.rev))
		}
	}
	return ops
}

// releaseAddr frees one allocation in a loaded block and drops it from its
// handle's record. It reports whether anything was freed.
func (c *change) releaseAddr(ctx context.Context, lb *loadedBlock, a netip.Addr, handle string, seq uint64) (bool, error) {
	if lb.rec == nil {
		return false, nil
	}
	ord := ordinal(lb.rec.CIDR, a)
	al := lb.rec.alloc(ord)
	if al == nil || (handle != "" && al.Handle != handle) || (seq != 0 && al.Seq != seq) {
		return false, nil
	}
	lb.dirty = true // records in a change are private copies, decoded for it
	lh, err := c.handle(ctx, al.Handle)
	if errors.Is(err, ErrCorrupt) {
		// Release from the block's side: the handle's record is left for
		// Repair (Check reports it), the address is freed.
		c.m.log.Warn("ipam: releasing an address whose handle record is corrupt", "addr", a, "handle", al.Handle, "err", err)
		lb.rec.release(ord, "", 0, c.m.now())
		return true, nil
	}
	if err != nil {
		return false, err
	}
	lb.rec.release(ord, "", 0, c.m.now())
	if i := slices.IndexFunc(lh.rec.Addrs, func(x handleAddr) bool { return x.Addr == a && x.Seq == al.Seq }); i >= 0 {
		lh.rec.Addrs = slices.Delete(slices.Clone(lh.rec.Addrs), i, i+1)
		lh.dirty = true
	}
	return true, nil
}
