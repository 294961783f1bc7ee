package proxyarp_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/tabbynet/tabby/proxyarp"
	"github.com/tabbynet/tabby/proxyarp/proxyarptest"
)

// One pod floods its interface: after the burst, its requests are counted
// as rate-limited and not answered, while another interface is still
// served. The rate is so low that no token comes back during the test, so
// the counts are exact.
func TestRateLimitFloodingInterface(t *testing.T) {
	n := proxyarptest.NewNetwork()
	flood := n.AddLink("cali1", hostMAC)
	quiet := n.AddLink("cali2", hostMAC)
	r := start(t, n, proxyarp.Config{RateLimit: proxyarp.RateLimit{PerSecond: 0.001, Burst: 5}})
	eventually(t, "both served", served(r, "cali1", "cali2"))

	const sent = 40
	for range sent {
		flood.Send(proxyarptest.Request(podMAC, podIP, gw))
	}
	eventually(t, "the flood read", func() bool { return r.Stats().Requests == sent })
	replies := 0
	for {
		if _, ok := flood.Recv(100 * time.Millisecond); !ok {
			break
		}
		replies++
	}
	st := r.Stats()
	if replies != 5 || st.Replies != 5 || st.Ignored[proxyarp.ReasonRateLimited] != sent-5 {
		t.Fatalf("flooding interface: %d replies received, stats %+v; want 5 answered, %d rate-limited", replies, st, sent-5)
	}

	// The other interface has its own bucket.
	for range 3 {
		mustReply(t, quiet, gw)
	}
	if st := r.Stats(); st.Replies != 8 || st.Ignored[proxyarp.ReasonRateLimited] != sent-5 {
		t.Fatalf("after the quiet interface: %+v", st)
	}
}

// Disabled: a burst far above the default is answered in full.
func TestRateLimitDisabled(t *testing.T) {
	n := proxyarptest.NewNetwork()
	w := n.AddLink("cali1", hostMAC)
	r := start(t, n, proxyarp.Config{RateLimit: proxyarp.RateLimit{Disabled: true, PerSecond: 0.001, Burst: 1}})
	eventually(t, "served", served(r, "cali1"))
	for range 230 { // the wire holds 256 frames
		w.Send(proxyarptest.Request(podMAC, podIP, gw))
	}
	eventually(t, "all answered", func() bool { return r.Stats().Replies == 230 })
	if st := r.Stats(); st.Ignored[proxyarp.ReasonRateLimited] != 0 {
		t.Fatalf("%+v", st)
	}
}

// The default (zero value) answers a burst of 200 at once, then limits.
func TestRateLimitDefault(t *testing.T) {
	n := proxyarptest.NewNetwork()
	w := n.AddLink("cali1", hostMAC)
	r := start(t, n, proxyarp.Config{})
	eventually(t, "served", served(r, "cali1"))
	for range 230 {
		w.Send(proxyarptest.Request(podMAC, podIP, gw))
	}
	eventually(t, "all read", func() bool { return r.Stats().Requests == 230 })
	// 200 at once, plus at most the tokens of the elapsed time (100/s).
	st := r.Stats()
	if st.Replies < proxyarp.DefaultRateBurst || st.Ignored[proxyarp.ReasonRateLimited] == 0 ||
		st.Replies+st.Ignored[proxyarp.ReasonRateLimited] != 230 {
		t.Fatalf("%+v", st)
	}
}

func TestRateLimitConfig(t *testing.T) {
	for _, rl := range []proxyarp.RateLimit{{PerSecond: -1}, {Burst: -1}, {PerSecond: math.NaN()}, {PerSecond: 1e-30}, {PerSecond: 1e12}} {
		if _, err := proxyarp.New(&proxyarp.Config{RateLimit: rl}); !errors.Is(err, proxyarp.ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", rl, err)
		}
	}
	if _, err := proxyarp.New(&proxyarp.Config{RateLimit: proxyarp.RateLimit{Disabled: true, PerSecond: -1}}); err != nil {
		t.Errorf("disabled: %v", err)
	}
}
