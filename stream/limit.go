package stream

import (
	"context"
	"math"
	"sync"
	"time"
)

// RateLimiter is a token bucket per key, shared wherever the log is (for
// Redis, by every node): Memory and redisstream.Log provide one, and pass
// streamtest.RunLimiter.
type RateLimiter interface {
	// Allow takes n tokens (1 for one request, an event batch's size)
	// from the bucket named key, which refills at r; n is capped at the
	// burst, so that any request can succeed. When the bucket has fewer
	// it takes none and returns false and how long until they are due. It
	// blocks on the store.
	Allow(ctx context.Context, key string, r Rate, n int) (ok bool, wait time.Duration, err error)
}

var _ RateLimiter = (*Memory)(nil)

// Rate is a token bucket: Per events a second on average, Burst at once.
type Rate struct {
	Per   float64
	Burst int
}

// bucket is one token bucket's state.
type bucket struct {
	tokens float64
	at     time.Time
	rate   Rate // the rate it was last taken at: buckets of several rates share the map
}

// take refills b to now and takes n tokens if it has them; otherwise it
// says how long until it will.
func (b *bucket) take(r Rate, now time.Time, n int) (bool, time.Duration) {
	need := float64(min(max(n, 1), r.Burst))
	if b.at.IsZero() {
		b.tokens, b.at = float64(r.Burst), now
	}
	b.tokens = math.Min(float64(r.Burst), b.tokens+now.Sub(b.at).Seconds()*r.Per)
	b.at, b.rate = now, r
	if b.tokens >= need {
		b.tokens -= need
		return true, 0
	}
	return false, time.Duration((need - b.tokens) / r.Per * float64(time.Second))
}

// limiter holds the embedded log's buckets.
type limiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

// Allow takes n tokens from the bucket named key, shared by every caller
// of this log (see RateLimiter).
func (m *Memory) Allow(ctx context.Context, key string, r Rate, n int) (bool, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	m.lim.mu.Lock()
	defer m.lim.mu.Unlock()
	if m.lim.buckets == nil {
		m.lim.buckets = make(map[string]*bucket)
	}
	now := time.Now()
	if len(m.lim.buckets) > 100000 {
		// Full buckets carry no state worth keeping.
		for k, b := range m.lim.buckets {
			if now.Sub(b.at).Seconds()*b.rate.Per+b.tokens >= float64(b.rate.Burst) {
				delete(m.lim.buckets, k)
			}
		}
	}
	b := m.lim.buckets[key]
	if b == nil {
		b = &bucket{}
		m.lim.buckets[key] = b
	}
	ok, wait := b.take(r, now, n)
	return ok, wait, nil
}
