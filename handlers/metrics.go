package handlers

import (
	"net/http"
	"time"

	"github.com/realtime-dev/realtime/metrics"
	appmw "github.com/realtime-dev/realtime/middleware"
)

// observePublish records each publish request's outcome and duration
// (and a rate-limited one as such), from the status it got.
func observePublish(m *metrics.Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if m == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			outcome := metrics.PublishError
			switch s := appmw.ServeStatus(next, w, r); {
			case s == http.StatusCreated && w.Header().Get("Idempotent-Replayed") == "true":
				outcome = metrics.PublishReplayed
			case s == http.StatusCreated:
				outcome = metrics.PublishCreated
			case s == http.StatusTooManyRequests:
				outcome = metrics.PublishRateLimited
				m.RateLimited(metrics.LimitPublish)
			case s == http.StatusServiceUnavailable:
				outcome = metrics.PublishUnavailable
			case s >= 400 && s < 500:
				outcome = metrics.PublishRejected
			}
			m.Published(outcome, time.Since(start))
		})
	}
}

// countRateLimited counts the requests refused by limit's rate limit
// (presence and typing changes, stream tickets).
func countRateLimited(m *metrics.Metrics, limit string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if m == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if appmw.ServeStatus(next, w, r) == http.StatusTooManyRequests {
				m.RateLimited(limit)
			}
		})
	}
}
