package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Allocation is one allocated address as reported. A plain value.
type Allocation struct {
	Addr   netip.Addr
	Pool   string
	Block  netip.Prefix
	Handle string
	Host   string // the host that asked for it
	Attrs  map[string]string
	Time   time.Time
	Seq    uint64
}

// snapshot is every IPAM record read at one store revision.
type snapshot struct {
	pools   *poolsRec
	blocks  map[string]*blockRec // by key
	bkeys   []string
	hosts   map[string]*hostRec
	handles map[string]*handleRec
	corrupt []Problem
}

// snap lists everything under the prefix in one List, so reports see a
// consistent state.
func (m *IPAM) snap(ctx context.Context) (*snapshot, error) {
	kvs, _, err := m.st.List(ctx, m.k.prefix)
	if err != nil {
		return nil, err
	}
	s := &snapshot{pools: &poolsRec{}, blocks: map[string]*blockRec{}, hosts: map[string]*hostRec{}, handles: map[string]*handleRec{}}
	bad := func(key string, err error) {
		s.corrupt = append(s.corrupt, Problem{Kind: ProblemCorrupt, Key: key, Detail: err.Error()})
	}
	for _, kv := range kvs {
		rest := kv.Key[len(m.k.prefix):]
		switch {
		case rest == "pools":
			p, err := decode[poolsRec]("pools", kv.Value)
			if err != nil {
				bad(kv.Key, err)
				continue
			}
			s.pools = p
		case strings.HasPrefix(rest, "blocks/"):
			b, err := decodeBlock(kv.Value)
			if err != nil {
				bad(kv.Key, err)
				continue
			}
			b.materialize()
			s.blocks[kv.Key] = b
			s.bkeys = append(s.bkeys, kv.Key)
		case strings.HasPrefix(rest, "hosts/"):
			h, err := decode[hostRec]("host", kv.Value)
			if err != nil {
				bad(kv.Key, err)
				continue
			}
			s.hosts[rest[len("hosts/"):]] = h
		case strings.HasPrefix(rest, "handles/"):
			h, err := decode[handleRec]("handle", kv.Value)
			if err != nil {
				bad(kv.Key, err)
				continue
			}
			s.handles[rest[len("handles/"):]] = h
		}
	}
	slices.SortFunc(s.bkeys, func(a, b string) int { return s.blocks[a].CIDR.Addr().Compare(s.blocks[b].CIDR.Addr()) })
	return s, nil
}

// Allocations lists every allocated address, sorted by address.
func (m *IPAM) Allocations(ctx context.Context) ([]Allocation, error) {
	s, err := m.snap(ctx)
	if err != nil {
		return nil, fmt.Errorf("ipam: allocations: %w", err)
	}
	var out []Allocation
	for _, k := range s.bkeys {
		b := s.blocks[k]
		for ord, a := range b.Allocs {
			out = append(out, Allocation{Addr: addrAt(b.CIDR, ord), Pool: b.Pool, Block: b.CIDR, Handle: a.Handle,
				Host: a.Host, Attrs: cloneAttrs(a.Attrs), Time: a.Time, Seq: a.Seq})
		}
	}
	slices.SortFunc(out, func(a, b Allocation) int { return a.Addr.Compare(b.Addr) })
	return out, nil
}

// PoolUsage is one pool's utilization. Usage and its parts are plain values.
type PoolUsage struct {
	Pool        string
	CIDR        netip.Prefix
	Disabled    bool
	TotalBlocks uint64 // blocks the pool can hold (capped at 2^63)
	Blocks      int    // blocks in existence
	Capacity    int    // addresses in those blocks
	InUse       int
}

// BlockUsage is one block's utilization.
type BlockUsage struct {
	Pool     string
	CIDR     netip.Prefix
	Affinity string // "" if none
	Capacity int
	InUse    int
}

// HostUsage is one host's utilization of its affine blocks.
type HostUsage struct {
	Host     string
	Blocks   int // confirmed affine blocks
	Capacity int // addresses in them
	InUse    int // allocated addresses in them
	Borrowed int // addresses allocated for this host outside its blocks
}

// Usage is a utilization report.
type Usage struct {
	Pools  []PoolUsage
	Blocks []BlockUsage
	Hosts  []HostUsage
}

// Usage reports utilization per pool, block and host.
func (m *IPAM) Usage(ctx context.Context) (Usage, error) {
	s, err := m.snap(ctx)
	if err != nil {
		return Usage{}, fmt.Errorf("ipam: usage: %w", err)
	}
	var u Usage
	pidx := map[string]int{}
	for _, p := range s.pools.Pools {
		pidx[p.Name] = len(u.Pools)
		u.Pools = append(u.Pools, PoolUsage{Pool: p.Name, CIDR: p.CIDR, Disabled: !p.usable(), TotalBlocks: numBlocks(p.CIDR, p.BlockSize)})
	}
	hosts := map[string]*HostUsage{}
	hu := func(h string) *HostUsage {
		if hosts[h] == nil {
			hosts[h] = &HostUsage{Host: h}
		}
		return hosts[h]
	}
	for h, hr := range s.hosts {
		hu(h).Blocks = hr.confirmed()
	}
	for _, k := range s.bkeys {
		b := s.blocks[k]
		n := blockLen(b.CIDR)
		u.Blocks = append(u.Blocks, BlockUsage{Pool: b.Pool, CIDR: b.CIDR, Affinity: b.Affinity, Capacity: n, InUse: b.nallocs()})
		if i, ok := pidx[b.Pool]; ok {
			u.Pools[i].Blocks++
			u.Pools[i].Capacity += n
			u.Pools[i].InUse += b.nallocs()
		}
		if b.Affinity != "" {
			h := hu(b.Affinity)
			h.Capacity += n
			h.InUse += b.nallocs()
		}
		for _, a := range b.Allocs {
			if a.Host != "" && a.Host != b.Affinity {
				hu(a.Host).Borrowed++
			}
		}
	}
	for _, h := range hosts {
		u.Hosts = append(u.Hosts, *h)
	}
	slices.SortFunc(u.Hosts, func(a, b HostUsage) int { return strings.Compare(a.Host, b.Host) })
	return u, nil
}

// ProblemKind classifies a consistency problem. The zero value is invalid.
type ProblemKind int

const (
	// ProblemCorrupt: a record does not decode or breaks invariants.
	ProblemCorrupt ProblemKind = iota + 1
	// ProblemDanglingHandle: a handle lists an address that is not
	// allocated to it (with that sequence number).
	ProblemDanglingHandle
	// ProblemOrphanAllocation: an allocation whose handle does not list it.
	ProblemOrphanAllocation
	// ProblemUnknownHost: a block is affine to, or a host record exists for,
	// a host not in the given list (GC with GCOptions.LiveHosts, or
	// ReleaseHost, removes both).
	ProblemUnknownHost
	// ProblemAffinityMismatch: a host's confirmed affinity and the block's
	// affinity disagree.
	ProblemAffinityMismatch
	// ProblemNoPool: a block belongs to no pool, or lies outside its pool.
	ProblemNoPool
)

func (k ProblemKind) String() string {
	switch k {
	case ProblemCorrupt:
		return "corrupt"
	case ProblemDanglingHandle:
		return "dangling-handle"
	case ProblemOrphanAllocation:
		return "orphan-allocation"
	case ProblemUnknownHost:
		return "unknown-host"
	case ProblemAffinityMismatch:
		return "affinity-mismatch"
	case ProblemNoPool:
		return "no-pool"
	}
	return fmt.Sprintf("ProblemKind(%d)", int(k))
}

// Problem is one inconsistency found by Check. A plain value.
type Problem struct {
	Kind   ProblemKind
	Key    string // the datastore key of the offending record
	Detail string
}

func (p Problem) String() string { return p.Kind.String() + " " + p.Key + ": " + p.Detail }

// Check verifies the stored state at one revision: handles pointing at
// nothing, allocations with no handle, host and block affinities that
// disagree, blocks outside their pool, undecodable records and, if hosts is
// not nil, blocks affine to, and host records of, hosts not in hosts.
// Pending affinities (an interrupted claim) are not problems. It returns no
// problems for a consistent store.
func (m *IPAM) Check(ctx context.Context, hosts []string) ([]Problem, error) {
	s, err := m.snap(ctx)
	if err != nil {
		return nil, fmt.Errorf("ipam: check: %w", err)
	}
	out := slices.Clone(s.corrupt)
	add := func(k ProblemKind, key, f string, a ...any) {
		out = append(out, Problem{Kind: k, Key: key, Detail: fmt.Sprintf(f, a...)})
	}
	// Handles -> allocations.
	type ref struct {
		handle string
		seq    uint64
	}
	listed := map[netip.Addr]ref{}
	hnames := make([]string, 0, len(s.handles))
	for h := range s.handles {
		hnames = append(hnames, h)
	}
	slices.Sort(hnames)
	for _, h := range hnames {
		for _, a := range s.handles[h].Addrs {
			listed[a.Addr] = ref{h, a.Seq}
			b := s.blocks[m.k.block(a.Pool, a.Block)]
			var al *allocRec
			if b != nil && b.CIDR.Contains(a.Addr) {
				al = b.alloc(ordinal(b.CIDR, a.Addr))
			}
			if al == nil || al.Handle != h || al.Seq != a.Seq {
				add(ProblemDanglingHandle, m.k.handle(h), "lists %s (seq %d) which is not allocated to it", a.Addr, a.Seq)
			}
		}
	}
	known := map[string]bool{}
	for _, h := range hosts {
		known[h] = true
	}
	for _, k := range s.bkeys {
		b := s.blocks[k]
		// Allocations -> handles.
		ords := make([]int, 0, b.nallocs())
		for o := range b.Allocs {
			ords = append(ords, o)
		}
		slices.Sort(ords)
		for _, o := range ords {
			a, al := addrAt(b.CIDR, o), b.Allocs[o]
			if r, ok := listed[a]; !ok || r.handle != al.Handle || r.seq != al.Seq {
				add(ProblemOrphanAllocation, k, "%s allocated to handle %q (seq %d) which does not list it", a, al.Handle, al.Seq)
			}
		}
		// Block -> pool.
		i := s.pools.find(b.Pool)
		if i < 0 || !s.pools.Pools[i].CIDR.Contains(b.CIDR.Addr()) || s.pools.Pools[i].BlockSize != b.CIDR.Bits() || k != m.k.block(b.Pool, b.CIDR) {
			add(ProblemNoPool, k, "block %s of pool %q does not fit the pool", b.CIDR, b.Pool)
		}
		// Block -> host.
		if b.Affinity != "" {
			if hosts != nil && !known[b.Affinity] {
				add(ProblemUnknownHost, k, "block %s affine to unknown host %q", b.CIDR, b.Affinity)
			}
			hr := s.hosts[b.Affinity]
			if hr == nil || hr.index(b.CIDR) < 0 {
				add(ProblemAffinityMismatch, k, "block %s affine to %q which does not list it", b.CIDR, b.Affinity)
			}
		}
	}
	// Host -> blocks.
	hn := make([]string, 0, len(s.hosts))
	for h := range s.hosts {
		hn = append(hn, h)
	}
	slices.Sort(hn)
	for _, h := range hn {
		if hosts != nil && !known[h] {
			add(ProblemUnknownHost, m.k.host(h), "record of unknown host %q (%d blocks)", h, len(s.hosts[h].Blocks))
		}
		for _, hb := range s.hosts[h].Blocks {
			if hb.Pending {
				continue
			}
			b := s.blocks[m.k.block(hb.Pool, hb.CIDR)]
			if b == nil || b.Affinity != h {
				add(ProblemAffinityMismatch, m.k.host(h), "lists block %s which is not affine to it", hb.CIDR)
			}
		}
	}
	return out, nil
}

// --- queries for the reflector and the CNI plugin ---------------------------

// HostBlocks returns the blocks host holds a confirmed affinity for, in
// claim order.
func (m *IPAM) HostBlocks(ctx context.Context, host string) ([]netip.Prefix, error) {
	if err := checkHost(host); err != nil {
		return nil, fmt.Errorf("ipam: host blocks: %w", err)
	}
	hr, _, err := m.loadHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("ipam: host blocks of %s: %w", host, err)
	}
	var out []netip.Prefix
	for _, b := range hr.Blocks {
		if !b.Pending {
			out = append(out, b.CIDR)
		}
	}
	return out, nil
}

// HandleAddrs returns the addresses held by handle (none for an unknown
// handle).
func (m *IPAM) HandleAddrs(ctx context.Context, handle string) ([]netip.Addr, error) {
	if err := checkHandle(handle); err != nil {
		return nil, fmt.Errorf("ipam: handle addresses: %w", err)
	}
	h, _, err := m.loadHandle(ctx, handle)
	if err != nil {
		return nil, fmt.Errorf("ipam: handle addresses of %s: %w", handle, err)
	}
	out := make([]netip.Addr, 0, len(h.Addrs))
	for _, a := range h.Addrs {
		out = append(out, a.Addr)
	}
	return out, nil
}

// BlockAffinity returns the host whose confirmed affinity block is ("" if
// none, including a block that does not exist). ErrNotInPool if block is
// not a block of any pool.
func (m *IPAM) BlockAffinity(ctx context.Context, block netip.Prefix) (string, error) {
	pr, _, err := m.loadPools(ctx)
	if err != nil {
		return "", fmt.Errorf("ipam: block affinity %s: %w", block, err)
	}
	i := pr.containing(block.Addr())
	if i < 0 || !block.IsValid() || pr.Pools[i].BlockSize != block.Bits() || block.Masked() != block {
		return "", fmt.Errorf("ipam: block affinity %s: %w", block, ErrNotInPool)
	}
	b, _, err := m.loadBlock(ctx, pr.Pools[i].Name, block)
	if err != nil {
		return "", fmt.Errorf("ipam: block affinity %s: %w", block, err)
	}
	if b == nil || b.Affinity == "" {
		return "", nil
	}
	hr, _, err := m.loadHost(ctx, b.Affinity)
	if err != nil {
		return "", fmt.Errorf("ipam: block affinity %s: %w", block, err)
	}
	if i := hr.index(block); i < 0 || hr.Blocks[i].Pending {
		return "", nil
	}
	return b.Affinity, nil
}

// IsBlockAffine reports whether host holds a confirmed affinity for block.
func (m *IPAM) IsBlockAffine(ctx context.Context, block netip.Prefix, host string) (bool, error) {
	h, err := m.BlockAffinity(ctx, block)
	return err == nil && h == host && host != "", err
}

// AddrAllocation returns the allocation of a, or ok=false if a is free.
// ErrNotInPool if a is in no pool.
func (m *IPAM) AddrAllocation(ctx context.Context, a netip.Addr) (Allocation, bool, error) {
	pr, _, err := m.loadPools(ctx)
	if err != nil {
		return Allocation{}, false, fmt.Errorf("ipam: allocation of %s: %w", a, err)
	}
	i := pr.containing(a)
	if i < 0 {
		return Allocation{}, false, fmt.Errorf("ipam: allocation of %s: %w", a, ErrNotInPool)
	}
	p := pr.Pools[i]
	b, _, err := m.loadBlock(ctx, p.Name, blockOf(a, p.BlockSize))
	if err != nil {
		return Allocation{}, false, fmt.Errorf("ipam: allocation of %s: %w", a, err)
	}
	if b == nil {
		return Allocation{}, false, nil
	}
	al := b.alloc(ordinal(b.CIDR, a))
	if al == nil {
		return Allocation{}, false, nil
	}
	return Allocation{Addr: a, Pool: p.Name, Block: b.CIDR, Handle: al.Handle, Host: al.Host,
		Attrs: cloneAttrs(al.Attrs), Time: al.Time, Seq: al.Seq}, true, nil
}

// IsAssignedTo reports whether a is allocated for host (by AutoAssign,
// AssignIP or AssignTunnelAddress naming that host), wherever its block is.
func (m *IPAM) IsAssignedTo(ctx context.Context, a netip.Addr, host string) (bool, error) {
	al, ok, err := m.AddrAllocation(ctx, a)
	if err != nil {
		if errors.Is(err, ErrNotInPool) {
			return false, nil
		}
		return false, err
	}
	return ok && al.Host == host, nil
}
