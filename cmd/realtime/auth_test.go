package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

// ticket buys a stream ticket for ws with tok, or fails the test.
func (n *node) ticket(t *testing.T, ws, tok, body string) string {
	t.Helper()
	resp, b := do(t, "POST", n.URL+"/v1/workspaces/"+ws+"/stream-tickets", tok, body)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("ticket for %s: %d %s %s", ws, resp.StatusCode, resp.Header.Get("Cache-Control"), b)
	}
	var r struct {
		Ticket    string    `json:"ticket"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Ticket == "" || !r.ExpiresAt.After(time.Now()) {
		t.Fatalf("ticket response %s: %v", b, err)
	}
	if strings.Contains(r.Ticket, ".") {
		t.Fatalf("ticket %q looks like a JWT; want an opaque id", r.Ticket)
	}
	return r.Ticket
}

// expectStreamProblem opens a stream that must be refused with status and code.
func (n *node) expectStreamProblem(t *testing.T, what, ws, query string, status int, code string, hdr ...string) {
	t.Helper()
	s, resp := n.tryStream(t, ws, "", query, hdr...)
	defer s.close()
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("%s: the stream opened; want %d %s", what, status, code)
	}
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	expectProblem(t, what, resp, buf.Bytes(), status, code)
}

func TestStreamTickets(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		n := startNode(t, env)
		u1 := token(t, "u1", []string{"ws1", "ws2"})
		tk := n.ticket(t, "ws1", u1, "")
		s := n.openStream(t, "ws1", "", "ticket="+tk)
		s.first(t)
		// The stream is u1's: it sees u1's notification, not u2's.
		n.publish(t, "ws1", `{"type":"notification.new","targetUserId":"u2","data":{"id":"n2","title":"for u2"}}`)
		mine := n.publish(t, "ws1", `{"type":"notification.new","targetUserId":"u1","data":{"id":"n1","title":"for u1"}}`)
		if got := s.events(t, 1); got[0].ID != mine.ID {
			t.Fatalf("ticket stream got %s; want u1's notification %s only", got[0].ID, mine.ID)
		}
		s.close()
		// Once only.
		n.expectStreamProblem(t, "a used ticket", "ws1", "ticket="+tk, 401, "invalid_ticket")
		// Only for its workspace, although the token covers both; trying
		// it elsewhere does not spend it.
		tk = n.ticket(t, "ws1", u1, "")
		n.expectStreamProblem(t, "a ticket on another workspace", "ws2", "ticket="+tk, 401, "invalid_ticket")
		n.openStream(t, "ws1", "", "ticket="+tk).first(t)
		// Only for the stream: not for polling.
		tk = n.ticket(t, "ws1", u1, "")
		resp, b := do(t, "GET", n.URL+"/v1/workspaces/ws1/events?ticket="+tk, "", "")
		expectProblem(t, "a ticket on the poll route", resp, b, 401, "invalid_ticket")
		// Garbage is refused the same way.
		n.expectStreamProblem(t, "a made-up ticket", "ws1", "ticket=AAAA", 401, "invalid_ticket")
		// Bound to its types: the stream has the ticket's filter, and may
		// not ask for another.
		tk = n.ticket(t, "ws1", u1, `{"types":"approval.*"}`)
		s = n.openStream(t, "ws1", "", "ticket="+tk)
		s.first(t)
		n.publish(t, "ws1", chat(1))
		want := n.publish(t, "ws1", `{"type":"approval.created","data":{"id":"a1","title":"t","status":"pending","requestedBy":"x"}}`)
		if got := s.events(t, 1); got[0].ID != want.ID || got[0].Event != "approval.created" {
			t.Fatalf("filtered ticket stream got %+v; want only %s", got[0], want.ID)
		}
		tk = n.ticket(t, "ws1", u1, `{"types":"approval.*"}`)
		n.expectStreamProblem(t, "other types than the ticket's", "ws1", "ticket="+tk+"&types=*", 400, "invalid_parameter")
		// A token that does not cover the workspace buys nothing; nor
		// does a cookie (a ticket needs the header).
		resp, b = do(t, "POST", n.URL+"/v1/workspaces/ws3/stream-tickets", u1, "")
		expectProblem(t, "a ticket for an uncovered workspace", resp, b, 403, "forbidden")
		resp, b = do(t, "POST", n.URL+"/v1/workspaces/ws1/stream-tickets", "", "", "Cookie", appmw.CookieName+"="+u1)
		expectProblem(t, "a ticket bought with a cookie", resp, b, 401, "unauthorized")
		resp, b = do(t, "POST", n.URL+"/v1/workspaces/ws1/stream-tickets", u1, `{"types":"a..b"}`)
		expectProblem(t, "a ticket with bad types", resp, b, 400, "invalid_parameter")
		if err := n.stop(); err != nil {
			t.Fatal(err)
		}
		if log := n.stderr.String(); strings.Contains(log, tk) {
			t.Fatal("a ticket appears in the log")
		}
	})
}

func TestStreamTicketExpires(t *testing.T) {
	n := startNode(t, map[string]string{"REALTIME_TICKET_TTL": "100ms"})
	tk := n.ticket(t, "ws1", token(t, "u1", []string{"ws1"}), "")
	time.Sleep(300 * time.Millisecond) // past the ticket's life; only the direction matters
	n.expectStreamProblem(t, "an expired ticket", "ws1", "ticket="+tk, 401, "invalid_ticket")
}

// A ticket bought from one node opens a stream on another (one Redis),
// still once.
func TestStreamTicketOnAnotherNode(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	a, b := startNode(t, env), startNode(t, env)
	u1 := token(t, "u1", []string{"ws1"})
	tk := a.ticket(t, "ws1", u1, "")
	s := b.openStream(t, "ws1", "", "ticket="+tk)
	s.first(t)
	e := a.publish(t, "ws1", chat(1))
	if got := s.events(t, 1); got[0].ID != e.ID {
		t.Fatalf("got %s; want %s", got[0].ID, e.ID)
	}
	a.expectStreamProblem(t, "the ticket again, on the node that issued it", "ws1", "ticket="+tk, 401, "invalid_ticket")
}

func TestQueryTokenOff(t *testing.T) {
	n := startNode(t, map[string]string{"REALTIME_ALLOW_QUERY_TOKEN": "false"})
	tok := token(t, "u1", []string{"ws1"})
	n.expectStreamProblem(t, "stream with access_token", "ws1", "access_token="+tok, 401, "query_token_disabled")
	resp, b := do(t, "GET", n.URL+"/v1/workspaces/ws1/events?access_token="+tok, "", "")
	expectProblem(t, "poll with access_token", resp, b, 401, "query_token_disabled")
	// The header, tickets and the cookie still work.
	n.openStream(t, "ws1", tok, "").first(t)
	n.openStream(t, "ws1", "", "ticket="+n.ticket(t, "ws1", tok, "")).first(t)
	resp, b = do(t, "GET", n.URL+"/v1/workspaces/ws1/events", "", "", "Cookie", appmw.CookieName+"="+tok)
	if resp.StatusCode != 200 {
		t.Fatalf("poll with the cookie: %d %s", resp.StatusCode, b)
	}
	// With the default, access_token works.
	d := startNode(t, nil)
	d.openStream(t, "ws1", "", "access_token="+tok).first(t)
}

// Cookies never authenticate a request that changes state, so another site
// cannot make a browser do it (CSRF); a same-origin page sends the header.
func TestCookieDoesNotChangeState(t *testing.T) {
	n := startNode(t, nil)
	c := appmw.CookieName + "=" + pubToken(t)
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/workspaces/ws1/events", chat(1)},
		{"PUT", "/v1/workspaces/ws1/presence", `{"status":"away"}`},
		{"POST", "/v1/workspaces/ws1/chats/c1/typing", `{"typing":true}`},
		{"POST", "/v1/workspaces/ws1/stream-tickets", ""},
	} {
		resp, b := do(t, r.method, n.URL+r.path, "", r.body, "Cookie", c, "Origin", "https://evil.example")
		expectProblem(t, r.method+" "+r.path+" with only a cookie", resp, b, 401, "unauthorized")
	}
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// A service whose tokens come from an identity provider's JWKS, with no
// HS256 secret at all.
func TestJWKSTokens(t *testing.T) {
	r1, _ := rsa.GenerateKey(rand.Reader, 2048)
	r2, _ := rsa.GenerateKey(rand.Reader, 2048)
	e1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaJWK := func(kid string, k *rsa.PublicKey) map[string]string {
		return map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64url(k.N.Bytes()), "e": b64url(big.NewInt(int64(k.E)).Bytes())}
	}
	pt, _ := e1.PublicKey.Bytes()
	ecJWK := map[string]string{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64url(pt[1:33]), "y": b64url(pt[33:])}
	var (
		mu      sync.Mutex
		keys    = []map[string]string{rsaJWK("r1", &r1.PublicKey), ecJWK}
		fetches atomic.Int32
	)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	defer idp.Close()
	n := startNode(t, map[string]string{"REALTIME_JWT_SECRET": "", "REALTIME_JWKS_URL": idp.URL})
	claims := func(sub string) jwt.MapClaims {
		return jwt.MapClaims{"sub": sub, "workspaces": []string{"ws1"}, "exp": time.Now().Add(time.Hour).Unix()}
	}
	withKid := func(m jwt.SigningMethod, kid string, key any, sub string) string {
		tk := jwt.NewWithClaims(m, claims(sub))
		tk.Header["kid"] = kid
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	accepted := func(what, tok string) {
		t.Helper()
		if resp, b := do(t, "GET", n.URL+"/v1/workspaces/ws1/events", tok, ""); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", what, resp.StatusCode, b)
		}
	}
	refused := func(what, tok string) {
		t.Helper()
		resp, b := do(t, "GET", n.URL+"/v1/workspaces/ws1/events", tok, "")
		expectProblem(t, what, resp, b, 401, "unauthorized")
	}
	accepted("RS256", withKid(jwt.SigningMethodRS256, "r1", r1, "alice"))
	accepted("ES256", withKid(jwt.SigningMethodES256, "e1", e1, "bob"))
	// A JWKS token buys a ticket and streams with it.
	n.openStream(t, "ws1", "", "ticket="+n.ticket(t, "ws1", withKid(jwt.SigningMethodES256, "e1", e1, "bob"), "")).first(t)
	// The provider rotates its key; the first token with the new kid fetches the set again.
	mu.Lock()
	keys = []map[string]string{rsaJWK("r2", &r2.PublicKey), ecJWK}
	mu.Unlock()
	before := fetches.Load()
	accepted("RS256 with the rotated key", withKid(jwt.SigningMethodRS256, "r2", r2, "carol"))
	if got := fetches.Load(); got != before+1 {
		t.Fatalf("%d fetches for the rotation; want 1", got-before)
	}
	// Unknown kids do not make it fetch again and again.
	for range 5 {
		refused("an unknown kid", withKid(jwt.SigningMethodRS256, "nope", r2, "mallory"))
	}
	if got := fetches.Load(); got != before+1 {
		t.Fatalf("%d fetches after 5 unknown kids; want none past the bound", got-before-1)
	}
	// Algorithm confusion: HS256 "signed" with the RSA public key.
	der, _ := x509.MarshalPKIXPublicKey(&r2.PublicKey)
	refused("HS256 with the public key PEM as secret", withKid(jwt.SigningMethodHS256, "r2", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), "mallory"))
	refused("HS256 with the public key DER as secret", withKid(jwt.SigningMethodHS256, "r2", der, "mallory"))
	refused("alg none", withKid(jwt.SigningMethodNone, "r2", jwt.UnsafeAllowNoneSignatureType, "mallory"))
	refused("an RS256 token naming the EC key", withKid(jwt.SigningMethodRS256, "e1", r2, "mallory"))
	// With no secret, HS256 tokens (this service's own) are not accepted.
	refused("HS256 with no secret configured", token(t, "u1", []string{"ws1"}))
}

// Keys from PEM files verify tokens beside the secret; the service's own
// HS256 tokens keep working.
func TestPEMKeysBesideTheSecret(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	path := filepath.Join(t.TempDir(), "idp.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, map[string]string{"REALTIME_JWT_PUBLIC_KEYS": path})
	es := signed(t, jwt.SigningMethodES384, k, jwt.MapClaims{"sub": "u1", "workspaces": []string{"ws1"}, "exp": time.Now().Add(time.Hour).Unix()})
	for _, tok := range []string{es, token(t, "u1", []string{"ws1"})} {
		if resp, b := do(t, "GET", n.URL+"/v1/workspaces/ws1/events", tok, ""); resp.StatusCode != 200 {
			t.Fatalf("poll: %d %s", resp.StatusCode, b)
		}
	}
}

// Key configuration errors are clear, and stop the service before it
// listens.
func TestKeyConfigurationErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "REALTIME_JWKS_URL or REALTIME_JWT_PUBLIC_KEYS"},
		{map[string]string{"REALTIME_JWT_PUBLIC_KEYS": filepath.Join(t.TempDir(), "missing.pem")}, "public key file"},
		{map[string]string{"REALTIME_JWT_PUBLIC_KEYS": bad}, "no PEM public key"},
		{map[string]string{"REALTIME_JWKS_URL": "file:///etc/keys.json"}, "not an http(s) url"},
		{map[string]string{"REALTIME_JWT_SECRET": testSecret, "REALTIME_TICKET_TTL": "1h"}, "ticket ttl must be at most 5m"},
	} {
		env := map[string]string{"REALTIME_ADDR": "127.0.0.1:0"}
		for k, v := range tc.env {
			env[k] = v
		}
		err := run(t.Context(), []string{"realtime", "serve"}, func(k string) string { return env[k] }, nil, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve with %v: %v; want an error saying %q", tc.env, err, tc.want)
		}
	}
	// The token command signs HS256 only, and says so without a secret.
	err := run(t.Context(), []string{"realtime", "token", "--sub", "u1", "--workspace", "ws1"}, func(string) string { return "" }, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "REALTIME_JWT_SECRET is not set") || !strings.Contains(err.Error(), "JWKS") {
		t.Fatalf("token without a secret: %v", err)
	}
}
