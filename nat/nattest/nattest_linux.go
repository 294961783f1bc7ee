//go:build linux

// Linux only: it stores google/nftables values, which exist only there.
package nattest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Conn is the fake connection. The zero value is an empty kernel, ready to
// use. Safe for concurrent use.
type Conn struct {
	mu      sync.Mutex
	state   state // committed
	pending []func(*state) error
	stats   Stats
	failAt  error // returned by the next non-empty Flush, nothing applied
	handles uint64
	setIDs  map[uint32]string // IDs of the sets added in the pending transaction

	touched  []tableKey // tables the pending transaction writes to
	flushAll bool       // the pending transaction flushes the ruleset
	watchers map[*watcher]struct{}
}

type watcher struct {
	name    string
	changed chan<- struct{}
}

// Stats counts what reached the fake kernel. A plain value.
type Stats struct {
	Flushes  int // Flush calls with at least one queued message
	Messages int // queued write messages sent by those Flushes
	Reads    int // list/get calls
}

type tableKey struct {
	family nftables.TableFamily
	name   string
}

type state struct {
	tables map[tableKey]*table
	order  []tableKey
}

type table struct {
	t      nftables.Table
	sets   map[string]*set
	chains []*chain
}

type set struct {
	s     nftables.Set
	elems map[string]nftables.SetElement // key+flag -> element
}

type chain struct {
	c     nftables.Chain
	rules []nftables.Rule
}

func (s *state) clone() state {
	n := state{tables: map[tableKey]*table{}, order: slices.Clone(s.order)}
	for k, t := range s.tables {
		nt := &table{t: t.t, sets: map[string]*set{}}
		for name, st := range t.sets {
			ns := &set{s: st.s, elems: make(map[string]nftables.SetElement, len(st.elems))}
			for ek, e := range st.elems {
				ns.elems[ek] = e
			}
			nt.sets[name] = ns
		}
		for _, c := range t.chains {
			nt.chains = append(nt.chains, &chain{c: c.c, rules: slices.Clone(c.rules)})
		}
		n.tables[k] = nt
	}
	return n
}

func (s *state) table(family nftables.TableFamily, name string) (*table, error) {
	t := s.tables[tableKey{family, name}]
	if t == nil {
		return nil, fmt.Errorf("table %s: %w", name, unix.ENOENT)
	}
	return t, nil
}

// Stats returns the counters so far.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// FailNextFlush makes the next Flush that has queued messages return err
// (wrapping it like the kernel's rejection of a batch) and apply nothing.
func (c *Conn) FailNextFlush(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failAt = err
}

func (c *Conn) queue(k tableKey, op func(*state) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append(c.pending, op)
	c.touched = append(c.touched, k)
}

// Flush applies the queued messages as one transaction.
func (c *Conn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops, touched, all := c.pending, c.touched, c.flushAll
	c.pending, c.touched, c.flushAll = nil, nil, false
	c.setIDs = nil
	if len(ops) == 0 {
		return nil
	}
	c.stats.Flushes++
	c.stats.Messages += len(ops)
	if err := c.failAt; err != nil {
		c.failAt = nil
		return fmt.Errorf("conn.Receive: %w", err)
	}
	if c.state.tables == nil {
		c.state.tables = map[tableKey]*table{}
	}
	next := c.state.clone()
	for _, op := range ops {
		if err := op(&next); err != nil {
			return fmt.Errorf("conn.Receive: %w", err)
		}
	}
	c.state = next
	c.notify(touched, all)
	return nil
}

// notify signals the watchers of the tables a committed transaction wrote
// to (every table, for a flushed ruleset). c.mu is held.
func (c *Conn) notify(touched []tableKey, all bool) {
	for w := range c.watchers {
		hit := all
		for _, k := range touched {
			if k.name == w.name && (k.family == nftables.TableFamilyIPv4 || k.family == nftables.TableFamilyIPv6) {
				hit = true
			}
		}
		if hit {
			select {
			case w.changed <- struct{}{}:
			default:
			}
		}
	}
}

// WatchTables implements nat.Watcher like the kernel's: one signal once
// subscribed, then one after every committed Flush that wrote to a table
// named name of family ip or ip6 (the Manager's own writes included), or
// flushed the ruleset; sends never block. It returns nil when ctx is done.
func (c *Conn) WatchTables(ctx context.Context, name string, changed chan<- struct{}) error {
	w := &watcher{name: name, changed: changed}
	c.mu.Lock()
	if c.watchers == nil {
		c.watchers = map[*watcher]struct{}{}
	}
	c.watchers[w] = struct{}{}
	select {
	case changed <- struct{}{}:
	default:
	}
	c.mu.Unlock()
	<-ctx.Done()
	c.mu.Lock()
	delete(c.watchers, w)
	c.mu.Unlock()
	return nil
}

// FlushRuleset queues the deletion of every table of every family, like
// *nftables.Conn's FlushRuleset (`nft flush ruleset`); Flush applies it.
func (c *Conn) FlushRuleset() {
	c.mu.Lock()
	c.flushAll = true
	c.mu.Unlock()
	c.queue(tableKey{}, func(s *state) error {
		s.tables = map[tableKey]*table{}
		s.order = nil
		return nil
	})
}

// ---------------------------------------------------------------- reads

func (c *Conn) read() func() {
	c.mu.Lock()
	c.stats.Reads++
	return c.mu.Unlock
}

// ListTablesOfFamily lists the committed tables of family (all families for
// TableFamilyUnspecified).
func (c *Conn) ListTablesOfFamily(family nftables.TableFamily) ([]*nftables.Table, error) {
	defer c.read()()
	var out []*nftables.Table
	for _, k := range c.state.order {
		if family == nftables.TableFamilyUnspecified || k.family == family {
			t := c.state.tables[k].t
			out = append(out, &t)
		}
	}
	return out, nil
}

// ListChainsOfTableFamily lists the chains of every table of family.
func (c *Conn) ListChainsOfTableFamily(family nftables.TableFamily) ([]*nftables.Chain, error) {
	defer c.read()()
	var out []*nftables.Chain
	for _, k := range c.state.order {
		if family != nftables.TableFamilyUnspecified && k.family != family {
			continue
		}
		t := c.state.tables[k]
		for _, ch := range t.chains {
			cc := ch.c
			tt := t.t
			cc.Table = &tt
			out = append(out, &cc)
		}
	}
	return out, nil
}

// GetSets lists the sets of t.
func (c *Conn) GetSets(t *nftables.Table) ([]*nftables.Set, error) {
	defer c.read()()
	tb, err := c.state.table(t.Family, t.Name)
	if err != nil {
		return nil, err
	}
	var out []*nftables.Set
	for _, s := range tb.sets {
		ss := s.s
		tt := tb.t
		ss.Table = &tt
		out = append(out, &ss)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// GetSetElements lists the elements of s, in reverse key order like the
// kernel's rbtree sets (callers must not depend on the order).
func (c *Conn) GetSetElements(s *nftables.Set) ([]nftables.SetElement, error) {
	defer c.read()()
	tb, err := c.state.table(s.Table.Family, s.Table.Name)
	if err != nil {
		return nil, err
	}
	st := tb.sets[s.Name]
	if st == nil {
		return nil, fmt.Errorf("set %s: %w", s.Name, unix.ENOENT)
	}
	var out []nftables.SetElement
	for _, e := range st.elems {
		e.Key = slices.Clone(e.Key)
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Key, out[j].Key) > 0 })
	return out, nil
}

// GetRules lists the rules of chain c in table t.
func (c *Conn) GetRules(t *nftables.Table, ch *nftables.Chain) ([]*nftables.Rule, error) {
	defer c.read()()
	tb, err := c.state.table(t.Family, t.Name)
	if err != nil {
		return nil, err
	}
	for _, x := range tb.chains {
		if x.c.Name == ch.Name {
			var out []*nftables.Rule
			for _, r := range x.rules {
				r := r
				out = append(out, &r)
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("chain %s: %w", ch.Name, unix.ENOENT)
}

// ---------------------------------------------------------------- writes

// AddTable queues the creation of t (no error if it exists).
func (c *Conn) AddTable(t *nftables.Table) *nftables.Table {
	tt := *t
	c.queue(tableKey{tt.Family, tt.Name}, func(s *state) error {
		k := tableKey{tt.Family, tt.Name}
		if s.tables[k] == nil {
			s.tables[k] = &table{t: tt, sets: map[string]*set{}}
			s.order = append(s.order, k)
		}
		return nil
	})
	return t
}

// DelTable queues the deletion of t and everything in it.
func (c *Conn) DelTable(t *nftables.Table) {
	k := tableKey{t.Family, t.Name}
	c.queue(k, func(s *state) error {
		if s.tables[k] == nil {
			return fmt.Errorf("delete table %s: %w", k.name, unix.ENOENT)
		}
		delete(s.tables, k)
		s.order = slices.DeleteFunc(s.order, func(x tableKey) bool { return x == k })
		return nil
	})
}

// AddSet queues the creation of set st with vals.
//
// Stricter than the kernel, it rejects a set without an ID (Set.ID 0) and
// one whose ID another set in the same transaction has: with ID 0,
// nftables' own Conn would take an ID from its unsynchronised package-level
// counter, which races between connections in one process.
func (c *Conn) AddSet(st *nftables.Set, vals []nftables.SetElement) error {
	if st.Table == nil {
		return errors.New("nattest: set without table")
	}
	if err := c.claimSetID(st); err != nil {
		return err
	}
	ss := *st
	ss.Table = nil
	k := tableKey{st.Table.Family, st.Table.Name}
	c.queue(k, func(s *state) error {
		tb, err := s.table(k.family, k.name)
		if err != nil {
			return err
		}
		if tb.sets[ss.Name] == nil {
			tb.sets[ss.Name] = &set{s: ss, elems: map[string]nftables.SetElement{}}
		}
		return nil
	})
	if len(vals) > 0 {
		return c.SetAddElements(st, vals)
	}
	return nil
}

func (c *Conn) claimSetID(st *nftables.Set) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.ID == 0 {
		return fmt.Errorf("nattest: set %s without ID (nftables would take one from its unsynchronised global counter): %w", st.Name, unix.EINVAL)
	}
	if other, ok := c.setIDs[st.ID]; ok {
		return fmt.Errorf("nattest: set %s: ID %d already used by set %s in this transaction: %w", st.Name, st.ID, other, unix.EEXIST)
	}
	if c.setIDs == nil {
		c.setIDs = map[uint32]string{}
	}
	c.setIDs[st.ID] = st.Name
	return nil
}

func elemKey(e nftables.SetElement) string {
	if e.IntervalEnd {
		return string(e.Key) + "\x00end"
	}
	return string(e.Key)
}

func (c *Conn) elems(st *nftables.Set, vals []nftables.SetElement, f func(*set, nftables.SetElement) error) error {
	if st.Table == nil {
		return errors.New("nattest: set without table")
	}
	k := tableKey{st.Table.Family, st.Table.Name}
	name := st.Name
	vs := make([]nftables.SetElement, len(vals))
	for i, v := range vals {
		v.Key = slices.Clone(v.Key)
		vs[i] = v
	}
	c.queue(k, func(s *state) error {
		tb, err := s.table(k.family, k.name)
		if err != nil {
			return err
		}
		set := tb.sets[name]
		if set == nil {
			return fmt.Errorf("set %s: %w", name, unix.ENOENT)
		}
		for _, v := range vs {
			if uint32(len(v.Key)) != set.s.KeyType.Bytes {
				return fmt.Errorf("set %s: key of %d bytes, want %d: %w", name, len(v.Key), set.s.KeyType.Bytes, unix.EINVAL)
			}
			if v.IntervalEnd && !set.s.Interval {
				return fmt.Errorf("set %s: interval end in a set without intervals: %w", name, unix.EINVAL)
			}
			if err := f(set, v); err != nil {
				return err
			}
		}
		return nil
	})
	return nil
}

// SetAddElements queues adding vals to st (existing elements are kept).
func (c *Conn) SetAddElements(st *nftables.Set, vals []nftables.SetElement) error {
	return c.elems(st, vals, func(s *set, e nftables.SetElement) error {
		s.elems[elemKey(e)] = e
		return nil
	})
}

// SetDeleteElements queues deleting vals from st; a missing element fails
// the transaction with ENOENT, as in the kernel.
func (c *Conn) SetDeleteElements(st *nftables.Set, vals []nftables.SetElement) error {
	return c.elems(st, vals, func(s *set, e nftables.SetElement) error {
		k := elemKey(e)
		if _, ok := s.elems[k]; !ok {
			return fmt.Errorf("set %s: delete element %x: %w", s.s.Name, e.Key, unix.ENOENT)
		}
		delete(s.elems, k)
		return nil
	})
}

// AddChain queues the creation of ch (no error if it exists).
func (c *Conn) AddChain(ch *nftables.Chain) *nftables.Chain {
	cc := *ch
	k := tableKey{ch.Table.Family, ch.Table.Name}
	cc.Table = nil
	c.queue(k, func(s *state) error {
		tb, err := s.table(k.family, k.name)
		if err != nil {
			return err
		}
		for _, x := range tb.chains {
			if x.c.Name == cc.Name {
				return nil
			}
		}
		tb.chains = append(tb.chains, &chain{c: cc})
		return nil
	})
	return ch
}

// AddRule queues appending r to its chain; the rule gets a fresh handle.
func (c *Conn) AddRule(r *nftables.Rule) *nftables.Rule {
	rr := *r
	rr.Exprs = slices.Clone(r.Exprs)
	rr.UserData = slices.Clone(r.UserData)
	k := tableKey{r.Table.Family, r.Table.Name}
	chainName := r.Chain.Name
	c.queue(k, func(s *state) error {
		tb, err := s.table(k.family, k.name)
		if err != nil {
			return err
		}
		for _, x := range tb.chains {
			if x.c.Name == chainName {
				c.handles++
				rr.Handle = c.handles
				x.rules = append(x.rules, rr)
				return nil
			}
		}
		return fmt.Errorf("chain %s: %w", chainName, unix.ENOENT)
	})
	return r
}
