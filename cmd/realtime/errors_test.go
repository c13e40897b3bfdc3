package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

func expectProblem(t *testing.T, what string, resp *http.Response, body []byte, status int, code string) problem {
	t.Helper()
	var p problem
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("%s: %d %s %s; want %d application/problem+json", what, resp.StatusCode, resp.Header.Get("Content-Type"), body, status)
		return p
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Code != code || p.Status != status || p.Type == "" {
		t.Errorf("%s: problem %s; want code %q status %d", what, body, code, status)
	}
	return p
}

func signed(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestAuthRejects(t *testing.T) {
	n := startNode(t, nil)
	exp := time.Now().Add(time.Hour).Unix()
	good := jwt.MapClaims{"sub": "u1", "workspaces": []string{"ws1"}, "scope": "events:publish", "exp": exp}
	claimsJSON, _ := json.Marshal(good)
	tests := []struct {
		name string
		auth string
	}{
		{"no token", ""},
		{"not bearer", "Basic dTE6cGFzcw=="},
		{"empty bearer", "Bearer "},
		{"garbage", "Bearer not.a.jwt"},
		{"other secret", "Bearer " + signed(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-0123456"), good)},
		{"alg none", "Bearer " + b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(string(claimsJSON)) + "."},
		{"alg HS512 with the right key", "Bearer " + signed(t, jwt.SigningMethodHS512, []byte(testSecret), good)},
		{"expired", "Bearer " + signed(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"sub": "u1", "workspaces": []string{"ws1"}, "exp": time.Now().Add(-time.Hour).Unix()})},
		{"no exp", "Bearer " + signed(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"sub": "u1", "workspaces": []string{"ws1"}})},
		{"no sub", "Bearer " + signed(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"workspaces": []string{"ws1"}, "exp": exp})},
		{"tampered payload", "Bearer " + tamper(signed(t, jwt.SigningMethodHS256, []byte(testSecret), good))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []struct{ method, path, body string }{
				{"POST", "/v1/workspaces/ws1/events", chat(1)},
				{"GET", "/v1/workspaces/ws1/events", ""},
				{"GET", "/v1/workspaces/ws1/events/stream", ""},
			} {
				resp, body := do(t, r.method, n.URL+r.path, "", r.body, "Authorization", tc.auth)
				expectProblem(t, r.method+" "+r.path, resp, body, 401, "unauthorized")
				if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer") {
					t.Errorf("%s %s: WWW-Authenticate %q; want a Bearer challenge", r.method, r.path, ch)
				}
			}
		})
	}
	if strings.Contains(n.stderr.String(), strings.TrimPrefix(tests[4].auth, "Bearer ")) {
		t.Error("a token appears in the log")
	}
	if p := n.poll(t, "ws1", pubToken(t), "cursor=0"); len(p.Events) != 0 {
		t.Errorf("rejected publishes reached the log: %+v", p.Events)
	}
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = b64(`{"sub":"admin","workspaces":["*"],"scope":"events:publish","exp":9999999999}`)
	return strings.Join(parts, ".")
}

func TestAuthTransports(t *testing.T) {
	n := startNode(t, nil)
	tok := token(t, "u1", []string{"ws1"})
	// access_token works on GET and is never logged.
	resp, body := do(t, "GET", n.URL+"/v1/workspaces/ws1/events?access_token="+tok, "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("poll with access_token: %d %s", resp.StatusCode, body)
	}
	s := n.openStream(t, "ws1", "", "access_token="+tok)
	s.first(t)
	s.close()
	// The cookie works on GET.
	resp, body = do(t, "GET", n.URL+"/v1/workspaces/ws1/events", "", "", "Cookie", appmw.CookieName+"="+tok)
	if resp.StatusCode != 200 {
		t.Fatalf("poll with cookie: %d %s", resp.StatusCode, body)
	}
	// Neither is accepted for publishing.
	pub := pubToken(t)
	resp, body = do(t, "POST", n.URL+"/v1/workspaces/ws1/events?access_token="+pub, "", chat(1))
	expectProblem(t, "publish with access_token", resp, body, 401, "unauthorized")
	resp, body = do(t, "POST", n.URL+"/v1/workspaces/ws1/events", "", chat(1), "Cookie", appmw.CookieName+"="+pub)
	expectProblem(t, "publish with cookie", resp, body, 401, "unauthorized")
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	if log := n.stderr.String(); strings.Contains(log, tok) || strings.Contains(log, pub) {
		t.Fatal("a token appears in the log")
	}
	if !strings.Contains(n.stderr.String(), "access_token=REDACTED") {
		t.Fatal("the log does not show the redacted access_token")
	}
}

func TestIssuerAndAudience(t *testing.T) {
	n := startNode(t, map[string]string{"REALTIME_JWT_ISSUER": "https://auth.example", "REALTIME_JWT_AUDIENCE": "realtime"})
	exp := time.Now().Add(time.Hour).Unix()
	mk := func(iss, aud string) string {
		c := jwt.MapClaims{"sub": "u1", "workspaces": []string{"ws1"}, "exp": exp}
		if iss != "" {
			c["iss"] = iss
		}
		if aud != "" {
			c["aud"] = aud
		}
		return signed(t, jwt.SigningMethodHS256, []byte(testSecret), c)
	}
	for _, tc := range []struct {
		name, iss, aud string
		status         int
	}{
		{"both right", "https://auth.example", "realtime", 200},
		{"wrong issuer", "https://evil.example", "realtime", 401},
		{"no issuer", "", "realtime", 401},
		{"wrong audience", "https://auth.example", "other", 401},
		{"no audience", "https://auth.example", "", 401},
	} {
		resp, body := do(t, "GET", n.URL+"/v1/workspaces/ws1/events", mk(tc.iss, tc.aud), "")
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s; want %d", tc.name, resp.StatusCode, body, tc.status)
		}
	}
}

func TestBadInputErrors(t *testing.T) {
	n := startNode(t, nil)
	pub := pubToken(t)
	reader := token(t, "u1", []string{"ws1"})
	post := n.URL + "/v1/workspaces/ws1/events"
	big := `{"type":"chat.message","data":{"chatId":"c","id":"m","text":"` + strings.Repeat("x", 70<<10) + `"}}`
	tests := []struct {
		name, method, url, tok, body string
		hdr                          []string
		status                       int
		code                         string
		field                        string // a key expected in errors
	}{
		{"invalid json", "POST", post, pub, `{"type":`, nil, 400, "invalid_json", ""},
		{"json array", "POST", post, pub, `[1,2]`, nil, 400, "invalid_json", ""},
		{"two values", "POST", post, pub, `{} {}`, nil, 400, "invalid_json", ""},
		{"invalid utf-8 in data", "POST", post, pub, `{"type":"chat.message","data":{"chatId":"c","id":"m","text":"` + "\xff\xfe" + `"}}`, nil, 400, "invalid_json", ""},
		{"invalid utf-8 in a key", "POST", post, pub, `{"type":"chat.message","data":{"chatId":"c","id":"m","text":"x","` + "\xc3" + `":1}}`, nil, 400, "invalid_json", ""},
		{"wrong content type", "POST", post, pub, chat(1), []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type", ""},
		{"no content type", "POST", post, pub, chat(1), []string{"Content-Type", ""}, 415, "unsupported_media_type", ""},
		{"body too large", "POST", post, pub, big, nil, 413, "body_too_large", ""},
		{"unknown type", "POST", post, pub, `{"type":"approval.exploded","data":{"id":"a"}}`, nil, 422, "unknown_event_type", "/type"},
		{"control type", "POST", post, pub, `{"type":"sync.reset","data":{}}`, nil, 422, "unknown_event_type", "/type"},
		{"missing type", "POST", post, pub, `{"data":{"id":"a"}}`, nil, 422, "invalid_event", "/type"},
		{"missing data", "POST", post, pub, `{"type":"approval.created"}`, nil, 422, "invalid_event", "/data"},
		{"approval without id", "POST", post, pub, `{"type":"approval.updated","data":{"title":"x"}}`, nil, 422, "invalid_event", "/data/id"},
		{"bad agent status", "POST", post, pub, `{"type":"agent.status.changed","data":{"agentId":"a","status":"sleeping"}}`, nil, 422, "invalid_event", "/data/status"},
		{"agent without id", "POST", post, pub, `{"type":"agent.status.changed","data":{"status":"idle"}}`, nil, 422, "invalid_event", "/data/agentId"},
		{"chat without text", "POST", post, pub, `{"type":"chat.message","data":{"chatId":"c","id":"m"}}`, nil, 422, "invalid_event", "/data/text"},
		{"notification without id", "POST", post, pub, `{"type":"notification.new","data":{}}`, nil, 422, "invalid_event", "/data/id"},
		{"unknown field", "POST", post, pub, `{"type":"notification.new","data":{"id":"n"},"color":"red"}`, nil, 422, "invalid_event", "/"},
		{"empty target", "POST", post, pub, `{"type":"notification.new","data":{"id":"n"},"targetUserId":""}`, nil, 422, "invalid_event", "/targetUserId"},
		{"data not object", "POST", post, pub, `{"type":"notification.new","data":"n"}`, nil, 422, "invalid_event", "/data"},
		{"publish without scope", "POST", post, token(t, "u1", []string{"ws1"}), chat(1), nil, 403, "forbidden", ""},
		{"publish to another workspace", "POST", n.URL + "/v1/workspaces/ws2/events", token(t, "u1", []string{"ws1"}, appmw.ScopePublish), chat(1), nil, 403, "forbidden", ""},
		{"bad workspace id", "GET", n.URL + "/v1/workspaces/a%7Bb%7D/events", pub, "", nil, 400, "invalid_workspace", ""},
		{"malformed cursor", "GET", post + "?cursor=abc", reader, "", nil, 400, "invalid_cursor", "cursor"},
		{"non-canonical cursor", "GET", post + "?cursor=1-01", reader, "", nil, 400, "invalid_cursor", "cursor"},
		{"limit zero", "GET", post + "?cursor=0&limit=0", reader, "", nil, 400, "invalid_parameter", "limit"},
		{"limit too big", "GET", post + "?cursor=0&limit=1001", reader, "", nil, 400, "invalid_parameter", "limit"},
		{"wait too long", "GET", post + "?cursor=0&wait=31", reader, "", nil, 400, "invalid_parameter", "wait"},
		{"wait not a number", "GET", post + "?cursor=0&wait=soon", reader, "", nil, 400, "invalid_parameter", "wait"},
		{"bad type pattern", "GET", post + "?cursor=0&types=*.created", reader, "", nil, 400, "invalid_parameter", "types"},
		{"stream malformed Last-Event-ID", "GET", post + "/stream", reader, "", []string{"Last-Event-ID", "12345"}, 400, "invalid_cursor", ""},
		{"stream malformed lastEventId", "GET", post + "/stream?lastEventId=X-1", reader, "", nil, 400, "invalid_cursor", ""},
		{"stream bad types", "GET", post + "/stream?types=approval.*.x", reader, "", nil, 400, "invalid_parameter", "types"},
		{"unknown route", "GET", n.URL + "/v2/nothing", reader, "", nil, 404, "not_found", ""},
		{"wrong method", "DELETE", post, pub, "", nil, 405, "method_not_allowed", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.method, tc.url, tc.tok, tc.body, tc.hdr...)
			p := expectProblem(t, tc.name, resp, body, tc.status, tc.code)
			if tc.field != "" {
				if _, ok := p.Errors[tc.field]; !ok {
					t.Errorf("errors %v; want an entry for %q", p.Errors, tc.field)
				}
			}
		})
	}
	if p := n.poll(t, "ws1", pub, "cursor=0"); len(p.Events) != 0 {
		t.Errorf("bad input reached the log: %+v", p.Events)
	}
	if p := n.poll(t, "ws2", pub, "cursor=0"); len(p.Events) != 0 {
		t.Errorf("bad input reached the log: %+v", p.Events)
	}
}

func TestLogUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	n := startNode(t, redisEnv(srv))
	tok := pubToken(t)
	n.publish(t, "ws1", chat(1))
	srv.Kill()

	resp, body := do(t, "POST", n.URL+"/v1/workspaces/ws1/events", tok, chat(2))
	expectProblem(t, "publish with Redis down", resp, body, 503, "log_unavailable")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("publish 503 without Retry-After")
	}
	resp, body = do(t, "GET", n.URL+"/v1/workspaces/ws1/events?cursor=0", tok, "")
	expectProblem(t, "poll with Redis down", resp, body, 503, "log_unavailable")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("poll 503 without Retry-After")
	}
	resp, body = do(t, "GET", n.URL+"/readyz", "", "")
	expectProblem(t, "readyz with Redis down", resp, body, 503, "not_ready")
	if resp, _ := do(t, "GET", n.URL+"/healthz", "", ""); resp.StatusCode != 200 {
		t.Errorf("healthz with Redis down: %d; want 200 (the process is alive)", resp.StatusCode)
	}
	// The stream route must not make EventSource give up: 200, retry, end.
	s := n.openStream(t, "ws1", tok, "lastEventId=0")
	f, ok := s.next(t)
	if !ok || f.Retry == "" {
		t.Fatalf("stream with Redis down: first frame %+v; want retry:", f)
	}
	if f, ok := s.next(t); ok {
		t.Fatalf("stream with Redis down sent %+v after the retry hint; want the end", f)
	}

	srv.Restart()
	waitReady(t, n)
	n.publish(t, "ws1", chat(3))
}

func TestRoutesAnswer(t *testing.T) {
	n := startNode(t, nil)
	want := map[string]string{"/healthz": `{"status":"ok","version":"` + buildVersion().Version + `"}`, "/readyz": `{"status":"ok"}`}
	for path, body := range want {
		resp, got := do(t, "GET", n.URL+path, "", "")
		if resp.StatusCode != 200 || strings.TrimSpace(string(got)) != body {
			t.Errorf("GET %s: %d %s; want 200 %s", path, resp.StatusCode, got, body)
		}
	}
	resp, body := do(t, "GET", n.URL+"/version", "", "")
	var v struct{ Version, GoVersion string }
	if err := json.Unmarshal(body, &v); resp.StatusCode != 200 || err != nil || v.Version == "" || v.GoVersion != runtime.Version() {
		t.Errorf("GET /version: %d %s", resp.StatusCode, body)
	}
	var out strings.Builder
	for _, args := range [][]string{{"realtime", "version"}, {"realtime", "--version"}} {
		out.Reset()
		if err := run(t.Context(), args, func(string) string { return "" }, nil, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "realtime "+v.Version) {
			t.Errorf("%q: %v, %q; want realtime %s", args, err, out.String(), v.Version)
		}
	}
	resp, body = do(t, "GET", n.URL+"/openapi.yaml", "", "")
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "openapi: 3.") {
		t.Errorf("GET /openapi.yaml: %d %.40s", resp.StatusCode, body)
	}
}

// A body shorter than its Content-Length (the client stops sending, or
// goes) is the client's mistake: 400 invalid_json, logged at debug, never
// a 500, and nothing reaches the log.
func TestTruncatedBodyIsABadRequest(t *testing.T) {
	n := startNode(t, nil)
	addr := strings.TrimPrefix(n.URL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"type":"chat.message","data":{"chatId":"c","id":"m1"`
	fmt.Fprintf(c, "POST /v1/workspaces/ws1/events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		addr, pubToken(t), len(body)+50, body)
	c.(*net.TCPConn).CloseWrite() // the rest never comes
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	expectProblem(t, "truncated body", resp, b, http.StatusBadRequest, "invalid_json")
	if strings.Contains(n.stderr.String(), `"level":"ERROR"`) {
		t.Fatalf("a truncated body was logged as an error:\n%s", n.stderr.String())
	}
	if p := n.poll(t, "ws1", pubToken(t), "cursor=0"); len(p.Events) != 0 {
		t.Fatalf("a truncated body reached the log: %+v", p.Events)
	}
}

// A stalled Redis (stopped, its connections open): readiness says so
// within its own 2 s bound, so a load balancer takes the node out, and
// comes back when Redis does.
func TestReadinessDuringARedisStall(t *testing.T) {
	srv := redistest.Start(t)
	n := startNode(t, redisEnv(srv))
	n.publish(t, "ws1", chat(1))
	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	start := time.Now()
	resp, body := do(t, "GET", n.URL+"/readyz", "", "")
	took := time.Since(start)
	expectProblem(t, "readyz during a stall", resp, body, 503, "not_ready")
	if took > 2500*time.Millisecond {
		t.Errorf("readyz answered after %v during a Redis stall; want its own 2s bound", took)
	}
	srv.Resume()
	resumed = true
	waitReady(t, n)
	n.publish(t, "ws1", chat(2))
}
