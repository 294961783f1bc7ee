package proxyarp

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	b, err := newBucket(RateLimit{PerSecond: 10, Burst: 3})
	if err != nil {
		t.Fatal(err)
	}
	ms := int64(time.Millisecond)
	now := 1000 * ms
	for i := range 3 {
		if ok, _ := b.allow(now); !ok {
			t.Fatalf("burst request %d refused", i)
		}
	}
	ok, wait := b.allow(now)
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("4th at once: %t, wait %v; want refused, 100ms", ok, wait)
	}
	if ok, _ := b.allow(now + 99*ms); ok {
		t.Fatal("token before its time")
	}
	if ok, _ := b.allow(now + 100*ms); !ok {
		t.Fatal("token not back after 100ms")
	}
	// Idle for long: the bucket refills to the burst, not beyond.
	now += 10_000 * ms
	for i := range 3 {
		if ok, _ := b.allow(now); !ok {
			t.Fatalf("after idle, request %d refused", i)
		}
	}
	if ok, _ := b.allow(now); ok {
		t.Fatal("bucket grew beyond its burst while idle")
	}
	var off bucket
	for range 1000 {
		if ok, _ := off.allow(now); !ok {
			t.Fatal("disabled bucket refused")
		}
	}
	d, _ := newBucket(RateLimit{})
	if d.interval != int64(time.Second/DefaultRatePerSecond) || d.tau != d.interval*(DefaultRateBurst-1) {
		t.Fatalf("default bucket %+v", d)
	}
}

func TestBucketNoAllocs(t *testing.T) {
	b, _ := newBucket(RateLimit{})
	b.base = time.Now()
	if n := testing.AllocsPerRun(1000, func() { b.take() }); n != 0 {
		t.Fatalf("%v allocations per take", n)
	}
}
