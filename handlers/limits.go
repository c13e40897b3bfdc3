package handlers

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// errRateLimited carries how long a client should wait, and what it did
// too often (the problem's detail; publishing when empty).
type errRateLimited struct {
	wait time.Duration
	what string
}

func (e *errRateLimited) Error() string { return "rate exceeded" }

// retryAfterSeconds rounds a wait up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// connLimit counts the streams and long polls each user holds open on this
// node. A cap per node, like Centrifugo's client_user_connection_limit: a
// cluster-wide count would cost a Redis round trip per connect.
type connLimit struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func newConnLimit(max int) *connLimit { return &connLimit{max: max, n: make(map[string]int)} }

// acquire takes a slot for user, or reports that the user is at the cap.
// A true result must be paired with release.
func (c *connLimit) acquire(user string) bool {
	if c.max <= 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[user] >= c.max {
		return false
	}
	c.n[user]++
	return true
}

func (c *connLimit) release(user string) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[user]--; c.n[user] <= 0 {
		delete(c.n, user)
	}
}

// errTooManyStreams is a user at the per-node cap.
var errTooManyStreams = &apiError{status: http.StatusTooManyRequests, code: "too_many_streams", detail: "this user holds as many streams as a node allows; close one or retry later"}
