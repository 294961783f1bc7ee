//go:build !linux

package nattest

import (
	"context"
	"errors"
	"fmt"
)

// Conn is the fake nftables connection. nftables exists only on Linux:
// here it holds nothing, so code that passes one to nat.New compiles (and
// nat.New reports ErrUnsupported). Safe for concurrent use.
type Conn struct{}

// Stats counts what reached the fake kernel. A plain value.
type Stats struct {
	Flushes  int // Flush calls with at least one queued message
	Messages int // queued write messages sent by those Flushes
	Reads    int // list/get calls
}

// Stats returns zero counters: nothing reaches this Conn.
func (c *Conn) Stats() Stats { return Stats{} }

// FailNextFlush does nothing: there is no Flush to fail.
func (c *Conn) FailNextFlush(err error) {}

// Flush returns an error wrapping errors.ErrUnsupported.
func (c *Conn) Flush() error {
	return fmt.Errorf("nattest: flush: %w", errors.ErrUnsupported)
}

// WatchTables returns an error wrapping errors.ErrUnsupported.
func (c *Conn) WatchTables(ctx context.Context, name string, changed chan<- struct{}) error {
	return fmt.Errorf("nattest: watch: %w", errors.ErrUnsupported)
}

// FlushRuleset does nothing: there is no ruleset.
func (c *Conn) FlushRuleset() {}
