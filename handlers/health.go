package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/realtime-dev/realtime"
)

func handleHealth(version string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, map[string]string{"status": "ok", "version": version})
	})
}

// handleVersion says which build answers.
func handleVersion(b BuildInfo) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, b)
	})
}

// pinger is what readiness needs of the log.
type pinger interface {
	Ping(ctx context.Context) error
}

// handleReady answers 503 while draining, so a load balancer stops sending
// new streams before they are cut, and while the log does not answer.
func handleReady(logger *slog.Logger, log pinger, streams context.Context, draining <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if streams.Err() != nil || isClosed(draining) {
			writeError(logger, w, r, errorf(http.StatusServiceUnavailable, "not_ready", "draining for shutdown"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := log.Ping(ctx); err != nil {
			logger.WarnContext(r.Context(), "not ready", "err", err)
			writeError(logger, w, r, errorf(http.StatusServiceUnavailable, "not_ready", "the event log does not answer"))
			return
		}
		encode(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

func handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(realtime.OpenAPI)
	})
}

// isClosed reports whether c (nil: never) is closed.
func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
