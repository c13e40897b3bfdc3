package middleware_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"
	"weak"

	"github.com/realtime-dev/realtime/middleware"
)

func TestRedactQuery(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"cursor=0&limit=5", "cursor=0&limit=5"},
		{"access_token=abc.def.ghi&cursor=0", "access_token=REDACTED&cursor=0"},
		{"cursor=0&access_token=a&access_token=b", "access_token=REDACTED&cursor=0"},
		{"%zz&access_token=abc", "(unparsable query redacted)"},
		// Whatever the parameter is called.
		{"ACCESS_TOKEN=abc&cursor=0", "ACCESS_TOKEN=REDACTED&cursor=0"},
		{"token=abc", "token=REDACTED"},
		{"Authorization=Bearer+x", "Authorization=REDACTED"},
		{"api_key=k1&x=1", "api_key=REDACTED&x=1"},
		{"t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlc2lnbmF0dXJl", "t=REDACTED"},
		{"x=" + strings.Repeat("A", 40), "x=REDACTED"},
		// A credential inside a value.
		{"x=Bearer%20eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlc2lnbmF0dXJl", "x=Bearer+REDACTED"},
		{"q=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlc2lnbmF0dXJl%0A", "q=REDACTED%0A"},
		{"q=a.b.eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlc2lnbmF0dXJl.", "q=REDACTED"},
		// Not credentials: cursors, ids, type patterns, short values.
		{"lastEventId=hoomx5yyd9-21&types=approval.*,chat.message&wait=25", "lastEventId=hoomx5yyd9-21&types=approval.*,chat.message&wait=25"},
	}
	for _, tc := range tests {
		if got := middleware.RedactQuery(tc.in); got != tc.want {
			t.Errorf("RedactQuery(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// A JWT in a path (a mistaken URL, a probe) is redacted; ids, even UUIDs,
// are not.
func TestRedactPath(t *testing.T) {
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlc2lnbmF0dXJl"
	for in, want := range map[string]string{
		"/v1/workspaces/acme/events":                                 "/v1/workspaces/acme/events",
		"/v1/workspaces/0b6f1c8e-4a8e-4f7a-9d5e-1f2e3d4c5b6a/events": "/v1/workspaces/0b6f1c8e-4a8e-4f7a-9d5e-1f2e3d4c5b6a/events",
		"/nope/" + jwt:                      "/nope/REDACTED",
		"/v1/workspaces/" + jwt + "/events": "/v1/workspaces/REDACTED/events",
		"/x/Bearer " + jwt + "\n":           "/x/Bearer REDACTED\n",
		"/x/" + jwt + ".json":               "/x/REDACTED",
	} {
		if got := middleware.RedactPath(in); got != want {
			t.Errorf("RedactPath(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestRequestLogCarriesRequestIDAndNoToken(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(middleware.LogHandler(slog.NewJSONHandler(&buf, nil)))
	h := middleware.RequestLog(logger)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		middleware.AddLogAttrs(r.Context(), slog.String("event_id", "e1"))
		logger.InfoContext(r.Context(), "inside")
		w.WriteHeader(http.StatusTeapot)
	}))
	for _, tc := range []struct{ sent, want string }{
		{"client-id-1", "client-id-1"},
		{"bad id with spaces", ""},
	} {
		buf.Reset()
		req := httptest.NewRequest("GET", "/x?access_token=secret.token.value&cursor=0", nil)
		req.Header.Set(middleware.RequestIDHeader, tc.sent)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		id := rec.Header().Get(middleware.RequestIDHeader)
		if tc.want != "" && id != tc.want || tc.want == "" && (id == "" || id == tc.sent) {
			t.Errorf("request id for %q = %q", tc.sent, id)
		}
		out := buf.String()
		if strings.Contains(out, "secret.token.value") {
			t.Errorf("the log holds the token:\n%s", out)
		}
		if strings.Count(out, `"request_id":"`+id+`"`) != 2 || strings.Count(out, `"event_id":"e1"`) != 2 || !strings.Contains(out, `"status":418`) {
			t.Errorf("log lines lack the request's attributes:\n%s", out)
		}
	}
}

func TestAuthenticateTokenSources(t *testing.T) {
	secret := []byte("middleware-test-secret-middleware-test")
	v, err := middleware.NewVerifier(middleware.AuthConfig{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := middleware.IssueToken(secret, middleware.TokenSpec{Subject: "u1", Workspaces: []string{"w"}, TTL: time.Minute}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var failed error
	h := middleware.Authenticate(v, func(w http.ResponseWriter, r *http.Request, err error) {
		failed = err
		w.WriteHeader(401)
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := middleware.PrincipalFromContext(r.Context()); p == nil || p.UserID != "u1" {
			t.Errorf("principal %+v", p)
		}
	}))
	tests := []struct {
		name   string
		method string
		setup  func(r *http.Request)
		ok     bool
	}{
		{"header", "POST", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }, true},
		{"header, lowercase scheme", "GET", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+tok) }, true},
		{"query on GET", "GET", func(r *http.Request) { r.URL.RawQuery = "access_token=" + tok }, true},
		{"cookie on GET", "GET", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: middleware.CookieName, Value: tok}) }, true},
		{"query on POST", "POST", func(r *http.Request) { r.URL.RawQuery = "access_token=" + tok }, false},
		{"cookie on POST", "POST", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: middleware.CookieName, Value: tok}) }, false},
		{"bad header beats good query", "GET", func(r *http.Request) {
			r.Header.Set("Authorization", "Token "+tok)
			r.URL.RawQuery = "access_token=" + tok
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			failed = nil
			req := httptest.NewRequest(tc.method, "/", nil)
			tc.setup(req)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if tc.ok != (failed == nil) {
				t.Fatalf("status %d, error %v; want ok=%v", rec.Code, failed, tc.ok)
			}
		})
	}
}

// Whatever a query string holds, a credential in it never reaches a log:
// the value of a credential-named parameter does not survive redaction.
func FuzzRedactQuery(f *testing.F) {
	for _, s := range []string{"access_token=abc.def.ghi", "ACCESS_TOKEN=x&cursor=0", "token=" + strings.Repeat("t", 40), "%zz", "a=b;c=d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out := middleware.RedactQuery(raw)
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		for k, vals := range v {
			if !strings.Contains(strings.ToLower(k), "token") {
				continue
			}
			for _, val := range vals {
				if len(val) >= 4 && strings.Contains(out, url.QueryEscape(val)) && !strings.Contains(url.QueryEscape(k), url.QueryEscape(val)) && val != "REDACTED" {
					t.Fatalf("RedactQuery(%q) = %q keeps %s's value", raw, out, k)
				}
			}
		}
	})
}

// Whatever a client presents as a token: verifying never panics, and only
// a token signed with the key is accepted, with a subject and an expiry.
func FuzzVerify(f *testing.F) {
	secret := []byte("fuzz-secret-fuzz-secret-fuzz-secret-0123")
	v, err := middleware.NewVerifier(middleware.AuthConfig{Secret: secret})
	if err != nil {
		f.Fatal(err)
	}
	good, _ := middleware.IssueToken(secret, middleware.TokenSpec{Subject: "u1", Workspaces: []string{"ws"}, TTL: time.Hour}, time.Now())
	for _, s := range []string{good, "", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSJ9.", good + "x", strings.Replace(good, ".", "..", 1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := v.Verify(raw)
		if err != nil {
			return
		}
		if p.UserID == "" || p.Expires.IsZero() {
			t.Fatalf("Verify(%q) accepted a principal without subject or expiry: %+v", raw, p)
		}
		if raw != good {
			// Another encoding of the same signed claims is possible in
			// principle; a different subject is not.
			if p.UserID != "u1" {
				t.Fatalf("Verify(%q) accepted a forged token for %q", raw, p.UserID)
			}
		}
	})
}

// responder stands for net/http's response, which holds its request and
// its connection's buffers.
type responder struct {
	http.ResponseWriter
	req *http.Request
}

// What a hijacked stream keeps past its handler (a Detach-ed context for
// its log lines, LogRequestLater's func for its request line) keeps
// neither the ResponseWriter nor, through it, the request: a stream's
// memory is its own, not its request's.
func TestDetachedStreamHoldsNoRequest(t *testing.T) {
	var (
		ctx   context.Context
		later func(int64)
	)
	h := middleware.RequestLog(slog.New(slog.DiscardHandler))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		later = middleware.LogRequestLater(r, http.StatusOK)
		middleware.AddLogAttrs(r.Context(), slog.String("k", "v"))
		ctx = middleware.Detach(r.Context())
	}))
	req := httptest.NewRequest(http.MethodGet, "/v1/workspaces/ws1/events/stream", nil)
	rw := &responder{ResponseWriter: httptest.NewRecorder(), req: req}
	gone := weak.Make(rw)
	h.ServeHTTP(rw, req)
	rw = nil
	runtime.GC()
	runtime.GC()
	if gone.Value() != nil {
		t.Fatal("the ResponseWriter (and its request) is still reachable from what the stream keeps")
	}
	if middleware.RequestIDFromContext(ctx) == "" || middleware.PrincipalFromContext(ctx) != nil {
		t.Fatalf("the detached context has request id %q and principal %v; want an id and no principal",
			middleware.RequestIDFromContext(ctx), middleware.PrincipalFromContext(ctx))
	}
	later(0)
	runtime.KeepAlive(ctx)
}

// ServeStatus gives the status a handler answered with, inside RequestLog
// (from its record) and outside it alike.
func TestServeStatus(t *testing.T) {
	for _, c := range []struct {
		name string
		h    http.HandlerFunc
		want int
	}{
		{"WriteHeader", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) }, http.StatusCreated},
		{"Write alone", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")) }, http.StatusOK},
		{"no answer", func(w http.ResponseWriter, r *http.Request) {}, 0},
	} {
		got := -1
		outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = middleware.ServeStatus(c.h, w, r) })
		outer.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
		if got != c.want {
			t.Errorf("%s, outside RequestLog: %d; want %d", c.name, got, c.want)
		}
		got = -1
		middleware.RequestLog(slog.New(slog.DiscardHandler))(outer).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
		if got != c.want {
			t.Errorf("%s, inside RequestLog: %d; want %d", c.name, got, c.want)
		}
	}
}
