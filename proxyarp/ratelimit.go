package proxyarp

import (
	"fmt"
	"time"
)

// Defaults of RateLimit.
const (
	// DefaultRatePerSecond is the sustained rate of requests answered per
	// interface. A pod resolves its gateway about once a minute.
	DefaultRatePerSecond = 100
	// DefaultRateBurst is how many requests an interface may have answered
	// at once before the rate applies.
	DefaultRateBurst = 200

	// maxPause bounds how long a rate-limited interface's reader sleeps
	// before it reads again.
	maxPause = 10 * time.Millisecond
)

// RateLimit bounds the requests answered per interface with a token bucket
// (issue #15.7), so that one pod flooding ARP cannot take the node's CPU.
// The zero value means the defaults, 100 per second with bursts of 200; a
// plain value.
//
// A request that finds the bucket empty is not answered and is counted as
// ReasonRateLimited. The interface's reader then sleeps until the next
// token is due (at most 10 ms) instead of reading on: frames that arrive
// meanwhile wait in the socket's receive buffer, and those it cannot hold
// are dropped by the kernel, which costs the node no wake-up (Stats.Dropped
// counts them, where the connection can tell). Other interfaces, each with
// its own bucket and reader, are not affected.
type RateLimit struct {
	// PerSecond is the sustained rate; 0 means DefaultRatePerSecond.
	PerSecond float64
	// Burst is the bucket size; 0 means DefaultRateBurst.
	Burst int
	// Disabled answers every request, without a limit.
	Disabled bool
}

// bucket is a token bucket in its GCRA form: one theoretical arrival time.
// Only its server's goroutine uses it. A zero interval means no limit.
type bucket struct {
	interval int64 // nanoseconds per token
	tau      int64 // burst tolerance: interval * (burst - 1)
	tat      int64 // theoretical arrival time of the next request
	base     time.Time
}

func newBucket(rl RateLimit) (bucket, error) {
	if rl.Disabled {
		return bucket{}, nil
	}
	if rl.PerSecond < 0 || rl.Burst < 0 || rl.PerSecond != rl.PerSecond {
		return bucket{}, fmt.Errorf("%w: rate limit %v/s burst %d", ErrInvalidConfig, rl.PerSecond, rl.Burst)
	}
	if rl.PerSecond == 0 {
		rl.PerSecond = DefaultRatePerSecond
	}
	if rl.Burst == 0 {
		rl.Burst = DefaultRateBurst
	}
	iv := float64(time.Second) / rl.PerSecond
	if iv < 1 || iv > float64(1<<62)/float64(rl.Burst) {
		return bucket{}, fmt.Errorf("%w: rate limit %v/s burst %d out of range", ErrInvalidConfig, rl.PerSecond, rl.Burst)
	}
	return bucket{interval: int64(iv), tau: int64(iv) * int64(rl.Burst-1)}, nil
}

// allow takes a token at now (nanoseconds since b.base). When there is
// none it returns false and how long until there is one.
func (b *bucket) allow(now int64) (bool, time.Duration) {
	if b.interval == 0 {
		return true, 0
	}
	t := max(b.tat, now)
	if t-now > b.tau {
		return false, time.Duration(t - now - b.tau)
	}
	b.tat = t + b.interval
	return true, 0
}

// take is allow at the current time.
func (b *bucket) take() (bool, time.Duration) {
	if b.interval == 0 {
		return true, 0
	}
	return b.allow(int64(time.Since(b.base)))
}
