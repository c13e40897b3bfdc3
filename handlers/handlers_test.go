package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/realtime-dev/realtime"
	"github.com/realtime-dev/realtime/handlers"
	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
	"github.com/realtime-dev/realtime/stream/streamtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var secret = []byte("handlers-test-secret-handlers-test-secret")

func newHandler(t *testing.T, cfg handlers.Config, log *stream.Memory, streams context.Context) http.Handler {
	t.Helper()
	v, err := appmw.NewVerifier(appmw.AuthConfig{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	pres := stream.NewPresenceTracker(log, log, stream.PresenceConfig{Logger: logger})
	t.Cleanup(pres.Close)
	return handlers.New(logger, cfg, log, pres, log, v, streams)
}

func TestOpenAPIIsValid(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(realtime.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("openapi.yaml is not valid OpenAPI: %v", err)
	}
}

// The router serves exactly the operations openapi.yaml lists.
func TestRoutesMatchOpenAPI(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(realtime.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	var spec []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			spec = append(spec, method+" "+path)
		}
	}
	log := stream.NewMemory(stream.MemoryConfig{})
	defer log.Close()
	h := newHandler(t, handlers.Config{}, log, t.Context())
	var served []string
	err = chi.Walk(h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served = append(served, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(spec)
	slices.Sort(served)
	if d := cmp.Diff(spec, served); d != "" {
		t.Fatalf("routes (-openapi.yaml +router):\n%s", d)
	}
}

// streamFor runs the stream handler for ws in a goroutine and returns the
// recorder and a channel closed when the handler returns.
func streamFor(t *testing.T, h http.Handler, ctx context.Context, tok, query string) (*httptest.ResponseRecorder, chan struct{}) {
	req := httptest.NewRequestWithContext(ctx, "GET", "/v1/workspaces/ws1/events/stream?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(rec, req)
	}()
	return rec, done
}

func mint(t *testing.T, ttl time.Duration) string {
	t.Helper()
	tok, err := appmw.IssueToken(secret, appmw.TokenSpec{Subject: "u1", Workspaces: []string{"ws1"}, TTL: ttl}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// frames splits an SSE body into its blocks, each with its lines joined by
// "|", heartbeats abbreviated, retry values and ids normalised.
func frames(body string) []string {
	var out []string
	for _, block := range strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n") {
		lines := strings.Split(block, "\n")
		for i, l := range lines {
			switch {
			case strings.HasPrefix(l, "retry: "):
				lines[i] = "retry"
			case strings.HasPrefix(l, "id: "):
				lines[i] = "id"
			case strings.HasPrefix(l, "data: {\"id\""):
				lines[i] = "data"
			}
		}
		out = append(out, strings.Join(lines, "|"))
	}
	return out
}

func TestHeartbeatAfterSilenceOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := stream.NewMemory(stream.MemoryConfig{})
		defer log.Close()
		h := newHandler(t, handlers.Config{Heartbeat: 15 * time.Second}, log, t.Context())
		head, _ := log.Head(t.Context(), "ws1")
		ctx, cancel := context.WithCancel(t.Context())
		rec, done := streamFor(t, h, ctx, mint(t, time.Hour), "")
		time.Sleep(10 * time.Second)
		if _, err := log.Append(t.Context(), streamtest.Ev("ws1", "chat.message", 1)); err != nil {
			t.Fatal(err)
		}
		// Silence from 10s: heartbeats at 25s and 40s, none at 15s or 30s.
		time.Sleep(36 * time.Second)
		synctest.Wait()
		cancel()
		<-done
		want := []string{"retry|id", `event: ready|data: {"cursor":"` + head.String() + `"}`, "id|event: chat.message|data", "event: heartbeat|data: {}", "event: heartbeat|data: {}"}
		if d := cmp.Diff(want, frames(rec.Body.String())); d != "" {
			t.Fatalf("frames (-want +got):\n%s\nbody:\n%s", d, rec.Body.String())
		}
	})
}

func TestStreamEndsWhenTokenExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := stream.NewMemory(stream.MemoryConfig{})
		defer log.Close()
		h := newHandler(t, handlers.Config{Heartbeat: 15 * time.Second}, log, t.Context())
		start := time.Now()
		rec, done := streamFor(t, h, t.Context(), mint(t, 40*time.Second), "")
		<-done
		if took := time.Since(start); took != 40*time.Second {
			t.Fatalf("stream ended after %v; want at the token's expiry, 40s", took)
		}
		f := frames(rec.Body.String())
		if last := f[len(f)-1]; last != `retry|event: auth.expired|data: {"reason":"token_expired"}` {
			t.Fatalf("last frame %q; want a retry hint with event auth.expired", last)
		}
	})
}

// A stream opened with a ticket lasts as long as the token the ticket was
// bought with, and says so when it ends.
func TestTicketStreamEndsWithItsToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := stream.NewMemory(stream.MemoryConfig{})
		defer log.Close()
		h := newHandler(t, handlers.Config{Heartbeat: time.Hour}, log, t.Context())
		start := time.Now()
		req := httptest.NewRequestWithContext(t.Context(), "POST", "/v1/workspaces/ws1/stream-tickets", nil)
		req.Header.Set("Authorization", "Bearer "+mint(t, 40*time.Second))
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		var tk struct{ Ticket string }
		if err := json.Unmarshal(rr.Body.Bytes(), &tk); rr.Code != 201 || err != nil {
			t.Fatalf("ticket: %d %s", rr.Code, rr.Body)
		}
		time.Sleep(10 * time.Second) // within the ticket's 30s
		req = httptest.NewRequestWithContext(t.Context(), "GET", "/v1/workspaces/ws1/events/stream?ticket="+tk.Ticket, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if took := time.Since(start); took != 40*time.Second || rec.Code != 200 {
			t.Fatalf("ticket stream: %d, ended after %v; want 200 and at the token's expiry, 40s", rec.Code, took)
		}
		if f := frames(rec.Body.String()); f[len(f)-1] != `retry|event: auth.expired|data: {"reason":"token_expired"}` {
			t.Fatalf("last frame %q; want auth.expired", f[len(f)-1])
		}
	})
}

// The leeway is one rule for opening and for expiry: a stream lives until
// exp plus the leeway, and one that would have under MinStreamLifetime of
// that left is not opened (nor a ticket bought for it), so that a token
// accepted within the leeway never opens a stream that closes at once.
func TestTokenWithinTheLeewayOpensNoStream(t *testing.T) {
	log := stream.NewMemory(stream.MemoryConfig{})
	defer log.Close()
	v, err := appmw.NewVerifier(appmw.AuthConfig{Secret: secret, Leeway: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	pres := stream.NewPresenceTracker(log, log, stream.PresenceConfig{Logger: logger})
	defer pres.Close()
	h := handlers.New(logger, handlers.Config{TokenLeeway: 30 * time.Second, MinStreamLifetime: 5 * time.Second}, log, pres, log, v, t.Context())
	for _, tc := range []struct {
		name   string
		method string
		path   string
	}{
		{"stream", "GET", "/v1/workspaces/ws1/events/stream"},
		{"ticket", "POST", "/v1/workspaces/ws1/stream-tickets"},
	} {
		// Expired 27s ago: the verifier admits it (leeway 30s), with 3s left.
		req := httptest.NewRequestWithContext(t.Context(), tc.method, tc.path, nil)
		req.Header.Set("Authorization", "Bearer "+mint(t, -27*time.Second))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), `"code":"token_expiring"`) || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s with 3s left: %d %s; want 401 token_expiring", tc.name, rec.Code, rec.Body)
		}
		if ch := rec.Header().Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_token"`) {
			t.Fatalf("%s: WWW-Authenticate %q", tc.name, ch)
		}
	}
	// Expired 20s ago: 10s left, enough.
	req := httptest.NewRequestWithContext(t.Context(), "POST", "/v1/workspaces/ws1/stream-tickets", nil)
	req.Header.Set("Authorization", "Bearer "+mint(t, -20*time.Second))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 201 {
		t.Fatalf("ticket with 10s left: %d %s", rec.Code, rec.Body)
	}
}

// The verifier's leeway on exp holds for the stream too: a stream ends that
// long after its token's exp, so a token accepted within the leeway does
// not open a stream that closes at once.
func TestStreamExpiryHonoursTheLeeway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := stream.NewMemory(stream.MemoryConfig{})
		defer log.Close()
		h := newHandler(t, handlers.Config{Heartbeat: 15 * time.Second, TokenLeeway: 30 * time.Second}, log, t.Context())
		start := time.Now()
		_, done := streamFor(t, h, t.Context(), mint(t, 10*time.Second), "")
		<-done
		if took := time.Since(start); took != 40*time.Second {
			t.Fatalf("stream ended after %v; want exp (10s) plus the leeway (30s)", took)
		}
	})
}

func TestDrainTellsStreamsToComeBackSoon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := stream.NewMemory(stream.MemoryConfig{})
		defer log.Close()
		streams, drain := context.WithCancel(t.Context())
		h := newHandler(t, handlers.Config{Retry: 10 * time.Second}, log, streams)
		rec, done := streamFor(t, h, t.Context(), mint(t, time.Hour), "")
		time.Sleep(time.Second)
		drain()
		<-done
		body := rec.Body.String()
		last := body[strings.LastIndex(strings.TrimSuffix(body, "\n\n"), "\n\n")+2:]
		if !strings.HasPrefix(last, "retry: ") {
			t.Fatalf("last frame %q; want a retry hint", last)
		}
		var ms int
		if _, err := fmt.Sscanf(last, "retry: %d", &ms); err != nil || ms >= 1000 {
			t.Fatalf("drain retry %q; want under a second (the normal hint is 10s)", last)
		}
		// A stream that arrives while draining gets only the hint.
		rec, done = streamFor(t, h, t.Context(), mint(t, time.Hour), "")
		<-done
		if f := frames(rec.Body.String()); len(f) != 1 || f[0] != "retry" || rec.Code != 200 {
			t.Fatalf("stream during drain: %d %q; want 200 and one retry frame", rec.Code, rec.Body.String())
		}
		// Readiness says so.
		req := httptest.NewRequest("GET", "/readyz", nil)
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		if rr.Code != 503 {
			t.Fatalf("readyz while draining: %d; want 503", rr.Code)
		}
	})
}

// A filtered stream's resume point moves past the events it may not see,
// once per heartbeat, with an id-only frame: not one frame per hidden
// event, and not never (a reconnect would then be reset once retention
// passed its last visible event).
func TestFilteredStreamAdvancesPastHiddenEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := stream.NewMemory(stream.MemoryConfig{})
		defer log.Close()
		h := newHandler(t, handlers.Config{Heartbeat: 15 * time.Second}, log, t.Context())
		ctx, cancel := context.WithCancel(t.Context())
		rec, done := streamFor(t, h, ctx, mint(t, time.Hour), "types=approval.*")
		synctest.Wait()
		var last stream.ID
		for i := range 20 {
			e, err := log.Append(t.Context(), streamtest.Ev("ws1", "chat.message", i))
			if err != nil {
				t.Fatal(err)
			}
			last = e.ID
		}
		time.Sleep(16 * time.Second)
		synctest.Wait()
		cancel()
		<-done
		want := []string{"retry|id", "event: ready|data", "id", "event: heartbeat|data: {}"}
		body := rec.Body.String()
		got := frames(body)
		if len(got) > 1 {
			got[1], _, _ = strings.Cut(got[1], ": {")
			got[1] = strings.TrimSuffix(got[1], "|data") + "|data"
		}
		if d := cmp.Diff(want, got); d != "" || !strings.Contains(body, "\n\nid: "+last.String()+"\n\n") {
			t.Fatalf("frames (-want +got):\n%s\nbody (want an id-only frame for %s):\n%s", d, last, body)
		}
	})
}

// Long polls wait on the hub, not on a clock of their own.
func TestLongPollTimesOutEmpty(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := stream.NewMemory(stream.MemoryConfig{})
		defer log.Close()
		h := newHandler(t, handlers.Config{}, log, t.Context())
		head, _ := log.Head(t.Context(), "ws1")
		req := httptest.NewRequest("GET", "/v1/workspaces/ws1/events?wait=20&cursor="+head.String(), nil)
		req.Header.Set("Authorization", "Bearer "+mint(t, time.Hour))
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, req)
		if took := time.Since(start); took != 20*time.Second {
			t.Fatalf("empty long poll answered after %v; want 20s", took)
		}
		want := `{"events":[],"nextCursor":"` + head.String() + `","hasMore":false,"reset":false,"ephemeral":[]}`
		if got := strings.TrimSpace(rec.Body.String()); got != want {
			t.Fatalf("empty long poll = %s; want %s", got, want)
		}
	})
}

// The dev token is in the page only for a client on this machine: by the
// connection's address, never by a header a remote client could send.
func TestDevTokenOnlyToLoopback(t *testing.T) {
	log := stream.NewMemory(stream.MemoryConfig{})
	defer log.Close()
	h := newHandler(t, handlers.Config{DevToken: "dev-token-123"}, log, t.Context())
	for _, tc := range []struct {
		remote string
		hdr    []string
		want   bool
	}{
		{"127.0.0.1:40000", nil, true},
		{"127.8.9.1:40000", nil, true},
		{"[::1]:40000", nil, true},
		{"[::ffff:127.0.0.1]:40000", nil, true},
		{"192.0.2.10:40000", nil, false},
		{"10.0.0.1:40000", nil, false},
		{"[2001:db8::1]:40000", nil, false},
		{"[::ffff:192.0.2.10]:40000", nil, false},
		{"192.0.2.10:40000", []string{"X-Forwarded-For", "127.0.0.1", "X-Real-IP", "127.0.0.1", "Forwarded", "for=127.0.0.1"}, false},
		{"not-an-address", nil, false},
		{"", nil, false},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = tc.remote
		for i := 0; i+1 < len(tc.hdr); i += 2 {
			req.Header.Set(tc.hdr[i], tc.hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET / from %q: %d", tc.remote, rec.Code)
		}
		if got := strings.Contains(rec.Body.String(), "dev-token-123"); got != tc.want {
			t.Errorf("GET / from %q %v: page carries the dev token = %v; want %v", tc.remote, tc.hdr, got, tc.want)
		}
		if !strings.Contains(rec.Body.String(), "<html") && !strings.Contains(rec.Body.String(), "<!doctype") && !strings.Contains(rec.Body.String(), "<!DOCTYPE") {
			t.Errorf("GET / from %q: not the page", tc.remote)
		}
	}
}
