//go:build linux

package agent

import "github.com/google/nftables"

// countingConn counts the nftables transactions that carried changes, so
// that the agent can report kernel writes (package nat does not).
// Used only under nat.Manager's lock.
type countingConn struct {
	*nftables.Conn
	queued int
	writes int
	setID  uint32
}

func (c *countingConn) AddTable(t *nftables.Table) *nftables.Table {
	c.queued++
	return c.Conn.AddTable(t)
}

func (c *countingConn) DelTable(t *nftables.Table) {
	c.queued++
	c.Conn.DelTable(t)
}

// AddSet gives the set its transaction ID itself: nftables v0.3.0 takes
// it from an unsynchronised package-level counter, which races when several
// agents run in one process (tabby-demo).
func (c *countingConn) AddSet(s *nftables.Set, v []nftables.SetElement) error {
	c.queued++
	if s.ID == 0 {
		c.setID++
		s.ID = c.setID
	}
	return c.Conn.AddSet(s, v)
}

func (c *countingConn) SetAddElements(s *nftables.Set, v []nftables.SetElement) error {
	c.queued++
	return c.Conn.SetAddElements(s, v)
}

func (c *countingConn) SetDeleteElements(s *nftables.Set, v []nftables.SetElement) error {
	c.queued++
	return c.Conn.SetDeleteElements(s, v)
}

func (c *countingConn) AddChain(ch *nftables.Chain) *nftables.Chain {
	c.queued++
	return c.Conn.AddChain(ch)
}

func (c *countingConn) AddRule(r *nftables.Rule) *nftables.Rule {
	c.queued++
	return c.Conn.AddRule(r)
}

// Flush sends the queued transaction; one that carried changes counts as
// one kernel write.
func (c *countingConn) Flush() error {
	n := c.queued
	c.queued = 0
	err := c.Conn.Flush()
	if err == nil && n > 0 {
		c.writes++
	}
	return err
}
