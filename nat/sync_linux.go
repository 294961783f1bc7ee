//go:build linux

package nat

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
)

// observed is the Manager's table as read from the kernel.
type observed struct {
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
func kindOf(s *nftables.Set) setKind {
	for _, k := range []setKind{kindPrefix, kindAddr, kindIfname, kindIfnameAddr} {
		if k.matches(s) {
			return k
		}
	}
	return 0
}

// observe reads the table, or returns nil if it does not exist.
func (m *Manager) observe() (*observed, error) {
	t, err := m.findTable()
	if err != nil || t == nil {
		return nil, err
	}
	o := &observed{table: t, sets: map[string]*observedSet{}, chains: map[string]*observedChain{}}
	sets, err := m.conn.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		os := &observedSet{set: s, kind: kindOf(s)}
		o.sets[s.Name] = os
		if os.kind == 0 {
			continue
		}
		elems, err := m.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("list elements of set %s: %w", s.Name, err)
		}
		os.items, os.err = itemsFromKernel(os.kind, elems)
	}
	chains, err := m.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != t.Name {
			continue
		}
		rules, err := m.conn.GetRules(t, c)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", c.Name, err)
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

// apply queues the difference between want and o and flushes it as one
// transaction. It returns what was applied (zero: nothing sent, or an
// error).
func (m *Manager) apply(want *ruleset, o *observed) (Result, error) {
	if ok, why := sameStructure(want, o); !ok {
		m.log.Debug("nat: rebuilding table", "table", want.table, "reason", why)
		return m.rebuild(want, o, why)
	}
	var r Result
	for _, s := range want.sets {
		os := o.sets[s.name]
		var add, del []nftables.SetElement
		var nadd, ndel int
		for _, it := range sortedItems(os.items) {
			if _, ok := s.items[it.id]; !ok {
				del = append(del, it.elems...)
				ndel++
			}
		}
		for _, it := range sortedItems(s.items) {
			if _, ok := os.items[it.id]; !ok {
				add = append(add, it.elems...)
				nadd++
			}
		}
		// Deletes first: an interval may be replaced by one with the same
		// start (a pool resized) in the same transaction.
		if err := chunks(del, func(es []nftables.SetElement) error { return m.conn.SetDeleteElements(os.set, es) }); err != nil {
			return Result{}, fmt.Errorf("delete elements of set %s: %w", s.name, err)
		}
		if err := chunks(add, func(es []nftables.SetElement) error { return m.conn.SetAddElements(os.set, es) }); err != nil {
			return Result{}, fmt.Errorf("add elements to set %s: %w", s.name, err)
		}
		if nadd+ndel > 0 {
			m.log.Debug("nat: set update", "set", s.name, "add", nadd, "delete", ndel)
		}
		r.Added += nadd
		r.Removed += ndel
	}
	if r.Added+r.Removed == 0 {
		return Result{}, nil
	}
	if err := m.conn.Flush(); err != nil {
		return Result{}, err
	}
	r.Writes = 1
	return r, nil
}

// rebuild replaces the whole table in one transaction: delete (if present)
// and create with every set, element, chain and rule.
//
// Every set gets its transaction ID here (1, 2, ... within the
// transaction, which is all the kernel needs: rules and elements refer to a
// set added in the same batch by name or by this ID). With Set.ID 0,
// nftables v0.3.0 would take one from its package-level counter, which is
// not synchronised and races between Managers in one process.
func (m *Manager) rebuild(want *ruleset, o *observed, why string) (Result, error) {
	r := Result{Writes: 1, Rebuilt: true, Reason: why}
	if o != nil {
		m.conn.DelTable(o.table)
		for _, os := range o.sets {
			r.Removed += len(os.items)
		}
	}
	t := m.conn.AddTable(&nftables.Table{Name: want.table, Family: nftables.TableFamilyIPv4})
	sets := map[string]*nftables.Set{}
	var setID uint32
	for _, s := range want.sets {
		ns := s.kind.set(t, s.name)
		setID++
		ns.ID = setID
		if err := m.conn.AddSet(ns, nil); err != nil {
			return Result{}, fmt.Errorf("add set %s: %w", s.name, err)
		}
		sets[s.name] = ns
		var es []nftables.SetElement
		for _, it := range sortedItems(s.items) {
			es = append(es, it.elems...)
		}
		if err := chunks(es, func(es []nftables.SetElement) error { return m.conn.SetAddElements(ns, es) }); err != nil {
			return Result{}, fmt.Errorf("add elements to set %s: %w", s.name, err)
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
	if err := m.conn.Flush(); err != nil {
		return Result{}, err
	}
	return r, nil
}

// render shows what the kernel holds, decoded from its elements and rule
// expressions, in the format of ruleset.render.
func (o *observed) render(table string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", table)
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
		renderSet(&b, n, os.kind, os.items)
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
