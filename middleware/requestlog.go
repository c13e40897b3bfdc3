package middleware

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
)

// RequestIDHeader carries the request id in and out (X-Request-ID on the
// wire is the same header). It is written in
// its canonical form, which net/http's header maps use as is; any other
// spelling costs a new string on every Get and Set.
const RequestIDHeader = "X-Request-Id"

// requestInfo is what a request's context carries for this package, as
// one value (one context.WithValue and one Request copy per request,
// not one per thing carried): its id, its log attributes, the request
// line a handler may take over, and the principal Authenticate found.
type requestInfo struct {
	id        string
	bag       *logBag
	later     *laterLog     // nil in a Detach-ed context
	rw        *statusWriter // the response's recorder; nil in a Detach-ed context
	principal *Principal
}

type requestInfoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

// logBag holds the attributes every log line about a request carries. It is
// a pointer in the context so that handlers can add to it (the event id
// once assigned) and the request line at the end sees what they added.
type logBag struct {
	mu    sync.Mutex
	attrs []slog.Attr
}

// AddLogAttrs attaches attributes to every later log line written with ctx
// (through a handler wrapped by LogHandler) and to the request's access log
// line. It does nothing outside a request.
func AddLogAttrs(ctx context.Context, attrs ...slog.Attr) {
	if info := infoFrom(ctx); info != nil {
		b := info.bag
		b.mu.Lock()
		b.attrs = append(b.attrs, attrs...)
		b.mu.Unlock()
	}
}

func bagAttrs(ctx context.Context) []slog.Attr {
	info := infoFrom(ctx)
	if info == nil {
		return nil
	}
	b := info.bag
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]slog.Attr(nil), b.attrs...)
}

// LogHandler wraps h so that records logged with a request's context carry
// that request's attributes (request_id, correlation_id, ...).
func LogHandler(h slog.Handler) slog.Handler { return ctxHandler{h} }

type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if attrs := bagAttrs(ctx); len(attrs) > 0 {
		r = r.Clone()
		r.AddAttrs(attrs...)
	}
	return h.Handler.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return ctxHandler{h.Handler.WithAttrs(attrs)}
}

func (h ctxHandler) WithGroup(name string) slog.Handler { return ctxHandler{h.Handler.WithGroup(name)} }

// Detach returns a context that carries only ctx's log attributes and
// request id: for work that outlives the request (a hijacked stream),
// without keeping the request, its router state, its principal and its
// cancellation alive.
func Detach(ctx context.Context) context.Context {
	d := context.Background()
	if info := infoFrom(ctx); info != nil {
		d = context.WithValue(d, requestInfoKey{}, &requestInfo{id: info.id, bag: info.bag})
	}
	return d
}

// RequestIDFromContext returns the request's id, or "".
func RequestIDFromContext(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil {
		return info.id
	}
	return ""
}

// NewID returns a random 16-byte hex id.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RequestLog assigns each request an id (the client's X-Request-ID when it
// is sane), echoes it, and logs one line when the request ends, with the
// route pattern, status, size and duration. Tokens in the query string are
// redacted; headers are never logged.
func RequestLog(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			id := r.Header.Get(RequestIDHeader)
			if !saneID(id) {
				id = NewID()
			}
			w.Header().Set(RequestIDHeader, id)
			// Two allocations for what the request carries: what may
			// outlive it (its log attributes, through Detach, and its
			// deferred request line), and what must not (the record, and
			// the ResponseWriter, which holds the request and its
			// connection's buffers).
			kept := &struct {
				bag   logBag
				later laterLog
				attr  [4]slog.Attr // request_id, and room for a publish's three
			}{}
			kept.attr[0] = slog.String("request_id", id)
			kept.bag.attrs = kept.attr[:1]
			kept.later = laterLog{logger: logger, start: start}
			req := &struct {
				info requestInfo
				rw   statusWriter
			}{}
			req.info = requestInfo{id: id, bag: &kept.bag, later: &kept.later, rw: &req.rw}
			req.rw.ResponseWriter = w
			ctx := context.WithValue(r.Context(), requestInfoKey{}, &req.info)
			rw := &req.rw
			next.ServeHTTP(rw, r.WithContext(ctx))
			if kept.later.taken {
				return // the handler logs the line when its response ends
			}

			status := rw.status
			if status == 0 {
				status = http.StatusOK
			}
			route := ""
			if rc := chi.RouteContext(ctx); rc != nil {
				route = rc.RoutePattern()
			}
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelError
			}
			logger.LogAttrs(ctx, level, "request",
				slog.String("method", r.Method),
				slog.String("route", route),
				slog.String("path", RedactPath(r.URL.Path)),
				slog.String("query", RedactQuery(r.URL.RawQuery)),
				slog.Int("status", status),
				slog.Int64("bytes", rw.bytes),
				slog.Duration("duration", time.Since(start)),
			)
		})
	}
}

// ServeStatus runs next and returns the status it answered with (200 for
// a body written without WriteHeader, 0 for no answer at all). Inside
// RequestLog it reads the status RequestLog records, so a response is not
// wrapped twice on its way; elsewhere it records the status itself.
func ServeStatus(next http.Handler, w http.ResponseWriter, r *http.Request) int {
	if info := infoFrom(r.Context()); info != nil && info.rw != nil {
		next.ServeHTTP(w, r)
		return info.rw.status
	}
	sw := &statusWriter{ResponseWriter: w}
	next.ServeHTTP(sw, r)
	return sw.status
}

// laterLog lets a handler whose response outlives it (a stream) write the
// request line itself, when the response ends.
type laterLog struct {
	logger *slog.Logger
	start  time.Time
	taken  bool
}

// LogRequestLater is for a handler whose response goes on after it
// returns, or is written around the ResponseWriter (a hijacked stream):
// RequestLog then writes no line when the handler returns, and the
// returned func writes it instead, with the bytes the handler says it
// sent and the time since the request began. It must be called on the
// handler's goroutine, before the handler returns; the func may be called
// from any goroutine, once. Outside RequestLog it returns a func that does
// nothing.
func LogRequestLater(r *http.Request, status int) func(bytes int64) {
	info := infoFrom(r.Context())
	if info == nil || info.later == nil {
		return func(int64) {}
	}
	later := info.later
	later.taken = true
	route := ""
	if rc := chi.RouteContext(r.Context()); rc != nil {
		route = rc.RoutePattern()
	}
	ctx := Detach(r.Context())
	attrs := []slog.Attr{
		slog.String("method", r.Method), slog.String("route", route), slog.String("path", RedactPath(r.URL.Path)),
		slog.String("query", RedactQuery(r.URL.RawQuery)), slog.Int("status", status), slog.String("proto", r.Proto),
	}
	return func(bytes int64) {
		later.logger.LogAttrs(ctx, slog.LevelInfo, "request", append(attrs,
			slog.Int64("bytes", bytes), slog.Duration("duration", time.Since(later.start)))...)
	}
}

// RedactQuery returns raw with the value of every parameter that may hold
// a credential replaced, so a logged URL never holds one: a parameter
// named like one (access_token, ACCESS_TOKEN, token, ticket, jwt, key,
// secret, password, auth…, in any case), and any value shaped like a JWT
// (three base64url parts) or a long opaque credential, whatever its name.
func RedactQuery(raw string) string {
	if raw == "" {
		return ""
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return "(unparsable query redacted)"
	}
	redacted := false
	for k, vals := range v {
		if secretName(k) {
			v[k] = []string{"REDACTED"}
			redacted = true
			continue
		}
		for i, val := range vals {
			if out, ok := redactRuns(val, true, tokenShaped); ok {
				vals[i] = out
				redacted = true
			}
		}
	}
	if !redacted {
		return raw
	}
	return v.Encode()
}

// RedactPath returns a request path with every JWT-shaped run of
// characters in it replaced: a client that puts its token in the path (a
// mistaken URL, a probe) must not put it into the request log. Ids of 32
// characters and more (UUIDs) are left, unlike in a query, since a path
// is where workspace ids go.
func RedactPath(p string) string {
	out, _ := redactRuns(p, false, jwtShaped)
	return out
}

// redactRuns replaces, in s, each maximal run of credential characters
// (base64url and standard base64, and dots) for which shaped says it is a
// credential: a token inside a value ("Bearer <JWT>", "<JWT>\n") is as
// secret as a value that is only a token. slash counts '/' as one of the
// characters (in a query value; in a path it separates segments).
func redactRuns(s string, slash bool, shaped func(string) bool) (string, bool) {
	var b strings.Builder
	last, redacted := 0, false
	for i := 0; i < len(s); {
		if !credentialByte(s[i], slash) {
			i++
			continue
		}
		j := i
		for j < len(s) && credentialByte(s[j], slash) {
			j++
		}
		if shaped(s[i:j]) {
			b.WriteString(s[last:i])
			b.WriteString("REDACTED")
			last, redacted = j, true
		}
		i = j
	}
	if !redacted {
		return s, false
	}
	b.WriteString(s[last:])
	return b.String(), true
}

func credentialByte(c byte, slash bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=' || c == '+' || c == '.' || slash && c == '/'
}

// jwtShaped reports a JWT's shape: 32 or more characters, two dots or
// more (a JWT run into a dot of its surroundings: "<jwt>.json").
func jwtShaped(s string) bool {
	return len(s) >= 32 && strings.Count(s, ".") >= 2
}

// secretName reports whether a query parameter's name says it carries a
// credential.
func secretName(k string) bool {
	k = strings.ToLower(k)
	for _, w := range []string{"token", "ticket", "jwt", "key", "secret", "passw", "auth", "session", "credential", "signature", "sig"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// tokenShaped reports whether a value looks like a credential: a JWT (two
// dots between base64url runs, or more where a dot of its surroundings
// joins it), or 32 or more base64url characters in one run. Ids, cursors
// and type patterns are shorter or have other shapes.
func tokenShaped(s string) bool {
	if len(s) < 32 {
		return false
	}
	dots := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '=', c == '+', c == '/':
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return dots == 0 || dots >= 2
}

func saneID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// statusWriter records the status and size. Unwrap lets
// http.ResponseController reach the connection for Flush and deadlines.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
