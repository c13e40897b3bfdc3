package handlers

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/realtime-dev/realtime"
	"github.com/realtime-dev/realtime/metrics"
	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

// addRoutes is the entire API surface, one line per openapi.yaml
// operation. Streaming and long-poll routes must never get timeout,
// buffering or compressing middleware.
func addRoutes(r chi.Router, logger *slog.Logger, cfg Config, log stream.Log, pres *stream.PresenceTracker, limits stream.RateLimiter, auth *appmw.Verifier, streams context.Context, schemas *realtime.Schemas) {
	onError := errorWriter(logger)
	conns := newConnLimit(cfg.MaxStreamsPerUser)
	r.Method(http.MethodGet, "/healthz", handleHealth(cfg.Build.Version))
	r.Method(http.MethodGet, "/readyz", handleReady(logger, log, streams, cfg.Draining))
	r.Method(http.MethodGet, "/version", handleVersion(cfg.Build))
	r.Method(http.MethodGet, "/metrics", cfg.Metrics.Handler())
	r.Method(http.MethodGet, "/openapi.yaml", handleOpenAPI())
	r.Method(http.MethodGet, "/", handleDashboard(cfg.DevToken))
	r.Method(http.MethodGet, "/app.js", handleAsset("app.js", "text/javascript; charset=utf-8"))
	r.Method(http.MethodGet, "/app.css", handleAsset("app.css", "text/css; charset=utf-8"))
	r.Method(http.MethodGet, "/client/realtime.js", handleAsset("realtime.js", "text/javascript; charset=utf-8"))
	r.Group(func(r chi.Router) {
		r.Use(appmw.AuthenticateWith(auth, appmw.AuthOptions{QueryToken: !cfg.DisableQueryToken, Redeem: redeemTicket(logger, cfg, log)}, onError), authorizeWorkspace(logger))
		r.With(observePublish(cfg.Metrics), requireScope(logger, appmw.ScopePublish)).Method(http.MethodPost, "/v1/workspaces/{workspaceID}/events", handlePublish(logger, cfg, log, limits, schemas))
		r.With(observePublish(cfg.Metrics), requireScope(logger, appmw.ScopePublish)).Method(http.MethodPost, "/v1/workspaces/{workspaceID}/events/batch", handlePublishBatch(logger, cfg, log, limits, schemas))
		r.Method(http.MethodGet, "/v1/workspaces/{workspaceID}/events", handlePoll(logger, cfg, log, conns, streams))
		r.With(countRateLimited(cfg.Metrics, metrics.LimitTicket)).Method(http.MethodPost, "/v1/workspaces/{workspaceID}/stream-tickets", handleTicket(logger, cfg, log, limits))
		r.Method(http.MethodGet, streamRoute, handleStream(logger, cfg, log, conns, pres, newHeartbeats(cfg.Heartbeat), streams))
		r.With(countRateLimited(cfg.Metrics, metrics.LimitPresence)).Method(http.MethodPut, "/v1/workspaces/{workspaceID}/presence", handleSetPresence(logger, cfg, pres, limits))
		r.Method(http.MethodGet, "/v1/workspaces/{workspaceID}/presence", handleGetPresence(logger, pres))
		r.With(countRateLimited(cfg.Metrics, metrics.LimitPresence)).Method(http.MethodPost, "/v1/workspaces/{workspaceID}/chats/{chatID}/typing", handleTyping(logger, cfg, pres, limits))
	})
}
