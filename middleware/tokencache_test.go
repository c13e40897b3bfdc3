package middleware

import (
	"fmt"
	"testing"
	"time"
)

// fakeClockVerifier returns a verifier whose parser and cache read *now.
func fakeClockVerifier(t *testing.T, secret string, leeway time.Duration, now *time.Time) *Verifier {
	t.Helper()
	v, err := NewVerifier(AuthConfig{Secret: []byte(secret), Leeway: leeway})
	if err != nil {
		t.Fatal(err)
	}
	v.now = func() time.Time { return *now }
	return v
}

func TestTokenCacheReusesAVerificationForAMinuteAtMost(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	v := fakeClockVerifier(t, secret, 0, &now)
	tok, err := IssueToken([]byte(secret), TokenSpec{Subject: "u1", Workspaces: []string{"w1"}, TTL: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	// Rotate the key under the verifier: only a cache hit can still
	// accept the token.
	v.secret = []byte("another-key-another-key-another-key!")
	now = now.Add(59 * time.Second)
	p2, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("within the cache's minute: %v", err)
	}
	if p2 != p1 || p2.UserID != "u1" {
		t.Fatalf("cache hit returned %+v; want the first verification's principal", p2)
	}
	now = now.Add(2 * time.Second)
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("a minute after its verification the token was not checked again (the rotated key should refuse it)")
	}
}

func TestTokenCacheNeverOutlivesTheTokensExpiry(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	leeway := 5 * time.Second
	v := fakeClockVerifier(t, secret, leeway, &now)
	tok, err := IssueToken([]byte(secret), TokenSpec{Subject: "u1", Workspaces: []string{"w1"}, TTL: 10 * time.Second}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	now = now.Add(10*time.Second + leeway - time.Millisecond)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("inside exp plus leeway: %v", err)
	}
	now = now.Add(2 * time.Millisecond)
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("a cached token was accepted past its exp plus leeway")
	}
}

func TestTokenCacheKeepsNoFailureAndStaysBounded(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	v := fakeClockVerifier(t, secret, 0, &now)
	forged, err := IssueToken([]byte("not-the-secret-not-the-secret-xx"), TokenSpec{Subject: "u1", Workspaces: []string{"w1"}, TTL: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := v.Verify(forged); err == nil {
			t.Fatal("forged token accepted")
		}
	}
	if n := v.cache.len(); n != 0 {
		t.Fatalf("cache holds %d entries after failures; want 0", n)
	}
	v.cache.max = 16
	for i := range 100 {
		tok, err := IssueToken([]byte(secret), TokenSpec{Subject: fmt.Sprintf("u%d", i), Workspaces: []string{"w1"}, TTL: time.Hour}, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
		if n := v.cache.len(); n > 16 {
			t.Fatalf("cache holds %d entries; its bound is 16", n)
		}
	}
}
