package reflector

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Default limits on what a Reflector accepts from one node.
const (
	DefaultMaxRecordBytes    = 128 << 10
	DefaultMaxBlocks         = 1024
	DefaultMaxAddrs          = 1024
	DefaultMaxValidatorCalls = 64
	DefaultLogInterval       = time.Minute
)

// Limits bound what a Reflector accepts from one node, so that one huge or
// hostile announcement cannot make every watcher do unbounded work. A zero
// field means its default. Announce refuses an announcement beyond the
// limits (ErrTooLarge); a watcher ignores such a record altogether after a
// length check (oversized bytes) or a count (blocks, addresses), before any
// Validator call. It is a plain value.
type Limits struct {
	// MaxRecordBytes bounds the stored record (default 128 KiB, enough for
	// the default block and address counts in both families).
	MaxRecordBytes int
	// MaxBlocks bounds the blocks of one node (default 1024: 65,536 pods
	// in /26 blocks).
	MaxBlocks int
	// MaxAddrs bounds the borrowed addresses of one node (default 1024).
	MaxAddrs int
	// MaxValidatorCalls bounds the Validator calls spent on one record's
	// refused part (default 64; see Validator). What is still unresolved
	// when the budget runs out is refused.
	MaxValidatorCalls int
}

func (l Limits) withDefaults() Limits {
	if l.MaxRecordBytes <= 0 {
		l.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if l.MaxBlocks <= 0 {
		l.MaxBlocks = DefaultMaxBlocks
	}
	if l.MaxAddrs <= 0 {
		l.MaxAddrs = DefaultMaxAddrs
	}
	if l.MaxValidatorCalls <= 0 {
		l.MaxValidatorCalls = DefaultMaxValidatorCalls
	}
	return l
}

func (l Limits) check(node string, blocks, addrs int) error {
	if blocks > l.MaxBlocks {
		return fmt.Errorf("%w: %s: %d blocks (limit %d)", ErrTooLarge, node, blocks, l.MaxBlocks)
	}
	if addrs > l.MaxAddrs {
		return fmt.Errorf("%w: %s: %d addresses (limit %d)", ErrTooLarge, node, addrs, l.MaxAddrs)
	}
	return nil
}

// ErrTooLarge: an announcement or record exceeds the Limits. It wraps
// ErrInvalidAnnouncement too.
var ErrTooLarge = fmt.Errorf("%w: beyond limits", ErrInvalidAnnouncement)

// ErrRefused: the Validator (or the conflict rule) refused part of a node's
// announcement; see Refusal.
var ErrRefused = errors.New("reflector: announcement refused")

// logLimiter logs a given (node, reason) at most once per interval. It is
// safe for concurrent use.
type logLimiter struct {
	log   *slog.Logger
	every time.Duration

	mu   sync.Mutex
	last map[string]time.Time
}

func (l *logLimiter) warn(node, reason, msg string, attrs ...any) {
	now := time.Now()
	key := node + "\x00" + reason
	l.mu.Lock()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.every {
		l.mu.Unlock()
		return
	}
	if len(l.last) >= 4096 {
		for k, t := range l.last {
			if now.Sub(t) >= l.every {
				delete(l.last, k)
			}
		}
	}
	l.last[key] = now
	l.mu.Unlock()
	l.log.Warn(msg, append([]any{"node", node, "reason", reason}, attrs...)...)
}
