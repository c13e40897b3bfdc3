package middleware

import (
	"sync"
	"time"
)

// tokenCache remembers the principals of tokens verified recently, so that
// a client sending the same token on every request (a publisher, a
// poller, a bridge) pays for its signature check and its JSON once a
// minute instead of once a request: that was a sixth of a publish's CPU.
//
// An entry is the verification's result for that exact string (signature
// included), so a cache hit admits nothing that verifying again would
// refuse, with one bound: a hit is good until the earlier of the token's
// own expiry (plus the leeway Verify grants) and ttl after it was
// verified. ttl is how long a key withdrawn from the trusted set (a
// rotated JWKS key) can still admit a token it signed.
//
// It holds at most max entries; inserting into a full cache first drops
// expired entries and then, if none were, an arbitrary eighth. Failures are
// never cached: a forged token costs a full check each time, as before.
type tokenCache struct {
	ttl    time.Duration
	leeway time.Duration
	max    int

	mu sync.Mutex
	m  map[string]cachedToken
}

type cachedToken struct {
	p     *Principal
	until time.Time
}

func newTokenCache(ttl, leeway time.Duration, max int) *tokenCache {
	return &tokenCache{ttl: ttl, leeway: leeway, max: max, m: make(map[string]cachedToken)}
}

// get returns the principal verified for raw, if it is still good at now.
func (c *tokenCache) get(raw string, now time.Time) (*Principal, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	e, ok := c.m[raw]
	c.mu.Unlock()
	if !ok || !now.Before(e.until) {
		return nil, false
	}
	return e.p, true
}

// put remembers p as raw's verification at now.
func (c *tokenCache) put(raw string, p *Principal, now time.Time) {
	if c == nil {
		return
	}
	until := now.Add(c.ttl)
	if exp := p.Expires.Add(c.leeway); exp.Before(until) {
		until = exp
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[raw]; !ok && len(c.m) >= c.max {
		c.evictLocked(now)
	}
	c.m[raw] = cachedToken{p: p, until: until}
}

func (c *tokenCache) evictLocked(now time.Time) {
	for k, e := range c.m {
		if !now.Before(e.until) {
			delete(c.m, k)
		}
	}
	if len(c.m) < c.max {
		return
	}
	drop := c.max/8 + 1
	for k := range c.m {
		if drop == 0 {
			break
		}
		delete(c.m, k)
		drop--
	}
}

// len is the number of entries, for tests.
func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
