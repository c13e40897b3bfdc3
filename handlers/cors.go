package handlers

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/realtime-dev/realtime/middleware"
)

// CORS: which request headers a page on an allowed origin may send, and
// which response headers its script may read. Last-Event-ID is how a
// client resumes by header; the others are the API's own.
const (
	corsAllowMethods  = "GET, POST, PUT"
	corsAllowHeaders  = "Authorization, Content-Type, Last-Event-ID, Idempotency-Key, X-Request-ID, X-Correlation-ID"
	corsExposeHeaders = "X-Request-ID, X-Correlation-ID, Retry-After, Idempotent-Replayed, WWW-Authenticate"
	corsMaxAge        = "600"
)

// cors lets pages on the allowed origins call every route (streams, polls,
// publishes, presence, the client script) and answers their preflights,
// before routing, so that an OPTIONS is never a 405. An exact origin gets
// credentials (the realtime_token cookie); "*" allows any origin, without
// them, as the Fetch standard requires. With no origins, it does nothing:
// CORS is off by default.
func cors(origins []string) func(http.Handler) http.Handler {
	if len(origins) == 0 {
		return func(next http.Handler) http.Handler { return next }
	}
	wildcard := len(origins) == 1 && origins[0] == "*"
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		allowed[strings.ToLower(o)] = true
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			origin := r.Header.Get("Origin")
			if origin == "" {
				next.ServeHTTP(w, r)
				return
			}
			h := w.Header()
			h.Add("Vary", "Origin")
			preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
			ok := wildcard || allowed[strings.ToLower(origin)]
			if preflight && !ok {
				writeCORSRefusal(w, r)
				return
			}
			if !ok {
				next.ServeHTTP(w, r) // no CORS headers: the browser keeps the answer from the page
				return
			}
			if wildcard {
				h.Set("Access-Control-Allow-Origin", "*")
			} else {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Set("Access-Control-Allow-Credentials", "true")
			}
			if !preflight {
				h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
				next.ServeHTTP(w, r)
				return
			}
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
		})
	}
}

// writeCORSRefusal answers a preflight from an origin not allowed: a 403
// without CORS headers (the browser then refuses the real request).
func writeCORSRefusal(w http.ResponseWriter, r *http.Request) {
	b, _ := json.Marshal(problem{
		Type: "https://realtime.dev/problems/origin_not_allowed", Title: http.StatusText(http.StatusForbidden),
		Status: http.StatusForbidden, Detail: "this origin is not in REALTIME_CORS_ORIGINS", Instance: r.URL.Path, Code: "origin_not_allowed",
		RequestID: middleware.RequestIDFromContext(r.Context()),
	})
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusForbidden)
	w.Write(append(b, '\n'))
}
