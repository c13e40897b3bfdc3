package handlers

import (
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

// handleSetPresence records the caller's status.
func handleSetPresence(logger *slog.Logger, cfg Config, p *stream.PresenceTracker, limits stream.RateLimiter) http.Handler {
	type request struct {
		Status string `json:"status"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if !decodeBody(logger, w, r, cfg, &req) {
			return
		}
		if req.Status != "online" && req.Status != "away" && req.Status != "busy" {
			writeError(logger, w, r, &apiError{status: http.StatusUnprocessableEntity, code: "invalid_event",
				detail: "status must be online, away or busy", errors: map[string]string{"/status": "one of online, away, busy"}})
			return
		}
		ws, user := chi.URLParam(r, "workspaceID"), appmw.PrincipalFromContext(r.Context()).UserID
		if !allowPresence(logger, w, r, cfg, limits, ws, user) {
			return
		}
		cur, err := p.SetStatus(r.Context(), ws, user, req.Status)
		if err != nil {
			writeError(logger, w, r, err)
			return
		}
		encode(w, http.StatusOK, cur)
	})
}

// allowPresence takes a token from the caller's presence bucket in ws,
// shared by status changes and typing on every node, or answers 429 with
// Retry-After: a client that floods changes cannot make every watcher of
// the workspace pay for each one.
func allowPresence(logger *slog.Logger, w http.ResponseWriter, r *http.Request, cfg Config, limits stream.RateLimiter, ws, user string) bool {
	if cfg.PresenceRate.Per <= 0 {
		return true
	}
	return allow(logger, w, r, limits, presenceBucket(ws, user), cfg.PresenceRate, 1, "this user changes presence or typing faster than allowed")
}

// Rate buckets are named so that no two (kind, workspace, user) share one:
// a workspace id holds no '/' (stream.ValidWorkspace), so a publish bucket
// (the bare id, which keeps it in the workspace's Redis Cluster slot) is
// never another kind's, the first '/' after a presence bucket's kind ends
// its workspace, and whatever a user id holds cannot reach into another
// workspace's bucket.
func publishBucket(ws string) string        { return ws }
func presenceBucket(ws, user string) string { return "presence/" + ws + "/" + user }
func ticketBucket(user string) string       { return "ticket/" + user }

// handleGetPresence lists who is here.
func handleGetPresence(logger *slog.Logger, p *stream.PresenceTracker) http.Handler {
	type response struct {
		Users []stream.Presence `json:"users"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		users, err := p.List(r.Context(), chi.URLParam(r, "workspaceID"))
		if err != nil {
			writeError(logger, w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "private, no-store")
		encode(w, http.StatusOK, response{Users: users})
	})
}

// handleTyping records that the caller is or stopped typing in a chat.
func handleTyping(logger *slog.Logger, cfg Config, p *stream.PresenceTracker, limits stream.RateLimiter) http.Handler {
	type request struct {
		Typing *bool `json:"typing"`
	}
	type response struct {
		Typing bool `json:"typing"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chat := chi.URLParam(r, "chatID")
		if !stream.ValidWorkspace(chat) { // the same rules as workspace ids
			writeError(logger, w, r, errorf(http.StatusBadRequest, "invalid_parameter", "chat ids are 1-128 characters of [A-Za-z0-9_.:-]"))
			return
		}
		var req request
		if !decodeBody(logger, w, r, cfg, &req) {
			return
		}
		if req.Typing == nil {
			writeError(logger, w, r, &apiError{status: http.StatusUnprocessableEntity, code: "invalid_event",
				detail: "typing must be true or false", errors: map[string]string{"/typing": "required boolean"}})
			return
		}
		ws, user := chi.URLParam(r, "workspaceID"), appmw.PrincipalFromContext(r.Context()).UserID
		if !allowPresence(logger, w, r, cfg, limits, ws, user) {
			return
		}
		if err := p.SetTyping(r.Context(), ws, chat, user, *req.Typing, appmw.RequestIDFromContext(r.Context())); err != nil {
			writeError(logger, w, r, err)
			return
		}
		encode(w, http.StatusOK, response{Typing: *req.Typing})
	})
}

// decodeBody reads a small JSON object body into v, answering the error
// itself when it cannot.
func decodeBody(logger *slog.Logger, w http.ResponseWriter, r *http.Request, cfg Config, v any) bool {
	raw, ok := readJSON(logger, w, r, cfg.MaxBody)
	if !ok {
		return false
	}
	if err := decodeStrict(raw, v); err != nil {
		writeError(logger, w, r, errorf(http.StatusBadRequest, "invalid_json", "the body must be one JSON object with only the documented members, each once"))
		return false
	}
	return true
}
