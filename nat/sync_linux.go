//go:build linux

package nat

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
)

// observed is one of the Manager's tables as read from the kernel.
type observed struct {
	fam    family
	table  *nftables.Table
	sets   map[string]*observedSet
	chains map[string]*observedChain
	order  []string // chain names in kernel order
}

type observedSet struct {
	set   *nftables.Set
	kind  setKind // 0 if tabby cannot parse it
	items map[string]item
	err   error // why the elements could not be parsed
}

type observedChain struct {
	chain *nftables.Chain
	rules []*nftables.Rule
}

// kindOf guesses the kind of a kernel set from its definition.
func kindOf(f family, s *nftables.Set) setKind {
	for _, k := range []setKind{kindPrefix, kindAddr, kindIfname, kindIfnameAddr} {
		if k.matches(f, s) {
			return k
		}
	}
	return 0
}

// observeAll reads the Manager's table of every family; a family without
// one is missing from the map.
func (m *Manager) observeAll() (map[nftables.TableFamily]*observed, error) {
	out := map[nftables.TableFamily]*observed{}
	for _, f := range families() {
		o, err := m.observe(f)
		if err != nil {
			return nil, err
		}
		if o != nil {
			out[f.tf] = o
		}
	}
	return out, nil
}

// observe reads the table of family f, or returns nil if it does not exist.
func (m *Manager) observe(f family) (*observed, error) {
	t, err := m.findTable(f)
	if err != nil || t == nil {
		return nil, err
	}
	o := &observed{fam: f, table: t, sets: map[string]*observedSet{}, chains: map[string]*observedChain{}}
	sets, err := m.conn.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("list sets of %s table: %w", f.name, err)
	}
	for _, s := range sets {
		os := &observedSet{set: s, kind: kindOf(f, s)}
		o.sets[s.Name] = os
		if os.kind == 0 {
			continue
		}
		elems, err := m.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("list elements of set %s %s: %w", f.name, s.Name, err)
		}
		os.items, os.err = itemsFromKernel(f, os.kind, elems)
	}
	chains, err := m.conn.ListChainsOfTableFamily(f.tf)
	if err != nil {
		return nil, fmt.Errorf("list %s chains: %w", f.name, err)
	}
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != t.Name {
			continue
		}
		rules, err := m.conn.GetRules(t, c)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s %s: %w", f.name, c.Name, err)
		}
		o.chains[c.Name] = &observedChain{chain: c, rules: rules}
		o.order = append(o.order, c.Name)
	}
	return o, nil
}

// sameStructure reports whether everything but set contents matches, and
// if not, why.
func sameStructure(want *ruleset, o *observed) (bool, string) {
	if o == nil {
		return false, "table missing"
	}
	if len(o.sets) != len(want.sets) {
		return false, fmt.Sprintf("%d sets, want %d", len(o.sets), len(want.sets))
	}
	for _, s := range want.sets {
		os := o.sets[s.name]
		switch {
		case os == nil:
			return false, "set " + s.name + " missing"
		case os.kind != s.kind:
			return false, "set " + s.name + " has another type"
		case os.err != nil:
			return false, "set " + s.name + ": " + os.err.Error()
		}
	}
	if len(o.chains) != len(want.chains) {
		return false, fmt.Sprintf("%d chains, want %d", len(o.chains), len(want.chains))
	}
	for _, c := range want.chains {
		oc := o.chains[c.name]
		if oc == nil {
			return false, "chain " + c.name + " missing"
		}
		if !c.matches(oc.chain) {
			return false, "chain " + c.name + " has another type, hook or priority"
		}
		if len(oc.rules) != len(c.rules) {
			return false, fmt.Sprintf("chain %s has %d rules, want %d", c.name, len(oc.rules), len(c.rules))
		}
		for i, r := range c.rules {
			if got := ruleComment(oc.rules[i]); got != r.comment {
				return false, fmt.Sprintf("chain %s rule %d is %q, want %q", c.name, i, got, r.comment)
			}
			// The comment names the rule; the expressions must match too
			// (a rule replaced in place keeps its comment).
			if got := exprText(oc.rules[i].Exprs); got != r.text {
				return false, fmt.Sprintf("chain %s rule %d reads %q, want %q", c.name, i, got, r.text)
			}
		}
	}
	return true, ""
}

// elemChunk bounds the elements per netlink message (the kernel and the
// socket buffer limit message sizes; a transaction may hold many messages).
const elemChunk = 1024

func chunks(es []nftables.SetElement, f func([]nftables.SetElement) error) error {
	for len(es) > 0 {
		n := min(len(es), elemChunk)
		if err := f(es[:n]); err != nil {
			return err
		}
		es = es[n:]
	}
	return nil
}

// apply queues the difference between want and the observed tables and
// flushes it as one transaction covering both families. It returns what was
// applied (zero: nothing sent, or an error).
//
// A table whose structure differs is rebuilt; the other one, in the same
// transaction, only gets its element changes. A table of a family that has
// no pool any more is deleted.
func (m *Manager) apply(want *plan, obs map[nftables.TableFamily]*observed) (Result, error) {
	var r Result
	var reasons []string
	wanted := map[nftables.TableFamily]bool{}
	for _, rs := range want.tables {
		wanted[rs.fam.tf] = true
		o := obs[rs.fam.tf]
		if ok, why := sameStructure(rs, o); !ok {
			if rs.fam.addrLen == 16 {
				why = "ip6: " + why
			}
			m.log.Debug("nat: rebuilding table", "family", rs.fam.name, "table", rs.table, "reason", why)
			rr, err := m.queueRebuild(rs, o)
			if err != nil {
				return Result{}, err
			}
			r.Rebuilt = true
			reasons = append(reasons, why)
			r.Added += rr.Added
			r.Removed += rr.Removed
			continue
		}
		add, del, err := m.queueElements(rs, o)
		if err != nil {
			return Result{}, err
		}
		r.Added += add
		r.Removed += del
	}
	for _, f := range families() {
		if o := obs[f.tf]; o != nil && !wanted[f.tf] {
			m.log.Debug("nat: deleting table of a family without pools", "family", f.name, "table", m.cfg.Table)
			m.conn.DelTable(o.table)
			r.Rebuilt = true
			reasons = append(reasons, f.name+": no pool of the family")
			for _, os := range o.sets {
				r.Removed += len(os.items)
			}
		}
	}
	if !r.Rebuilt && r.Added+r.Removed == 0 {
		return Result{}, nil
	}
	if err := m.conn.Flush(); err != nil {
		return Result{}, err
	}
	r.Writes = 1
	r.Reason = strings.Join(reasons, "; ")
	return r, nil
}

// queueElements queues the element changes that make o's sets equal to
// want's (same structure) and returns how many items it adds and removes.
func (m *Manager) queueElements(want *ruleset, o *observed) (nadd, ndel int, err error) {
	for _, s := range want.sets {
		os := o.sets[s.name]
		var add, del []nftables.SetElement
		var sadd, sdel int
		for _, it := range sortedItems(os.items) {
			if _, ok := s.items[it.id]; !ok {
				del = append(del, it.elems...)
				sdel++
			}
		}
		for _, it := range sortedItems(s.items) {
			if _, ok := os.items[it.id]; !ok {
				add = append(add, it.elems...)
				sadd++
			}
		}
		// Deletes first: an interval may be replaced by one with the same
		// start (a pool resized) in the same transaction.
		if err := chunks(del, func(es []nftables.SetElement) error { return m.conn.SetDeleteElements(os.set, es) }); err != nil {
			return 0, 0, fmt.Errorf("delete elements of set %s %s: %w", want.fam.name, s.name, err)
		}
		if err := chunks(add, func(es []nftables.SetElement) error { return m.conn.SetAddElements(os.set, es) }); err != nil {
			return 0, 0, fmt.Errorf("add elements to set %s %s: %w", want.fam.name, s.name, err)
		}
		if sadd+sdel > 0 {
			m.log.Debug("nat: set update", "family", want.fam.name, "set", s.name, "add", sadd, "delete", sdel)
		}
		nadd += sadd
		ndel += sdel
	}
	return nadd, ndel, nil
}

// queueRebuild queues the replacement of one table: delete (if present)
// and create with every set, element, chain and rule. The caller flushes.
//
// Every set gets its transaction ID here (1, 2, ... within the
// transaction, which is all the kernel needs: rules and elements refer to a
// set added in the same batch by name or by this ID). With Set.ID 0,
// nftables v0.3.0 would take one from its package-level counter, which is
// not synchronised and races between Managers in one process. The IDs
// continue across the tables of one transaction (m.setID, reset by Sync).
func (m *Manager) queueRebuild(want *ruleset, o *observed) (Result, error) {
	var r Result
	if o != nil {
		m.conn.DelTable(o.table)
		for _, os := range o.sets {
			r.Removed += len(os.items)
		}
	}
	t := m.conn.AddTable(&nftables.Table{Name: want.table, Family: want.fam.tf})
	sets := map[string]*nftables.Set{}
	for _, s := range want.sets {
		ns := s.kind.set(want.fam, t, s.name)
		m.setID++
		ns.ID = m.setID
		if err := m.conn.AddSet(ns, nil); err != nil {
			return Result{}, fmt.Errorf("add set %s %s: %w", want.fam.name, s.name, err)
		}
		sets[s.name] = ns
		var es []nftables.SetElement
		for _, it := range sortedItems(s.items) {
			es = append(es, it.elems...)
		}
		if err := chunks(es, func(es []nftables.SetElement) error { return m.conn.SetAddElements(ns, es) }); err != nil {
			return Result{}, fmt.Errorf("add elements to set %s %s: %w", want.fam.name, s.name, err)
		}
		r.Added += len(s.items)
	}
	for _, c := range want.chains {
		ch := m.conn.AddChain(c.chain(t))
		for _, rl := range c.rules {
			m.conn.AddRule(&nftables.Rule{
				Table: t, Chain: ch, Exprs: rl.exprs(sets),
				UserData: commentData(rl.comment),
			})
		}
	}
	return r, nil
}

// render shows what the kernel holds, decoded from its elements and rule
// expressions, in the format of ruleset.render.
func (o *observed) render(table string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", o.fam.name, table)
	names := make([]string, 0, len(o.sets))
	for n := range o.sets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		os := o.sets[n]
		if os.kind == 0 || os.err != nil {
			fmt.Fprintf(&b, "\tset %s {\n\t\t# not written by tabby: %v\n\t}\n", n, os.err)
			continue
		}
		renderSet(&b, o.fam, n, os.kind, os.items)
	}
	for i, n := range o.order {
		if i > 0 || len(names) > 0 {
			b.WriteString("\n")
		}
		oc := o.chains[n]
		var lines []string
		for _, r := range oc.rules {
			line := exprText(r.Exprs)
			if c := ruleComment(r); c != "" {
				line += fmt.Sprintf(" comment %q", c)
			}
			lines = append(lines, line)
		}
		c := oc.chain
		var hook nftables.ChainHook
		var prio nftables.ChainPriority
		if c.Hooknum != nil {
			hook = *c.Hooknum
		}
		if c.Priority != nil {
			prio = *c.Priority
		}
		renderChain(&b, n, c.Type, hook, prio, lines)
	}
	b.WriteString("}\n")
	return b.String()
}
