package handlers

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

// presenceStore is the presence and typing state both logs keep where
// they keep events, so that every node sees the same.
type presenceStore interface {
	SetPresence(ctx context.Context, ws, user, status string, ttl time.Duration) (stream.Presence, bool, error)
	OpenConn(ctx context.Context, ws, user, conn string, ttl time.Duration) (stream.Presence, bool, error)
	RefreshConn(ctx context.Context, ws, user, conn string, ttl time.Duration) error
	CloseConn(ctx context.Context, ws, user, conn string) error
	SettlePresence(ctx context.Context, ws, user string) (stream.Presence, bool, error)
	ListPresence(ctx context.Context, ws string) ([]stream.Presence, error)
	SetTyping(ctx context.Context, ws, chat, user, token string, typing bool, ttl time.Duration) (bool, error)
	ExpireTyping(ctx context.Context, ws, chat, user, token string) (bool, time.Duration, error)
}

// broadcaster sends ephemeral events.
type broadcaster interface {
	Broadcast(ctx context.Context, e *stream.Event) error
}

// presence ties the store to broadcasts: every change an operation reports
// becomes one presence.updated or typing.* event for the workspace.
type presence struct {
	logger *slog.Logger
	store  presenceStore
	out    broadcaster
	cfg    Config

	mu    sync.Mutex            // guards local
	local map[string]*localConn // by workspace and user
}

// announce broadcasts an ephemeral event; failures are logged, not
// returned: presence is best effort and never fails the caller.
func (p *presence) announce(ctx context.Context, ws, typ string, data any) {
	b, _ := json.Marshal(data)
	e := &stream.Event{
		Type: typ, WorkspaceID: ws, CorrelationID: appmw.RequestIDFromContext(ctx), Source: "realtime",
		Timestamp: time.Now().UTC(), Data: b,
	}
	if e.CorrelationID == "" {
		e.CorrelationID = appmw.NewID()
	}
	if err := p.out.Broadcast(ctx, e); err != nil {
		p.logger.WarnContext(ctx, "broadcast failed", "type", typ, "err", err)
	}
}

func (p *presence) changed(ctx context.Context, ws string, cur stream.Presence) {
	p.announce(ctx, ws, "presence.updated", cur)
}

// local counts this node's open streams per workspace and user, so that
// the shared store records one connection per node and user, not one per
// stream: a user with ten tabs, or a benchmark with thousands of streams
// for one user, costs one record and one refresh per interval.
type localConn struct {
	conn    string // this node's connection id in the store
	streams int
	// lastRefresh is read after every write a stream's goroutine makes,
	// and on every heartbeat sweep, for each stream of this user in this
	// workspace: an atomic (Unix nanoseconds), not p.mu.
	lastRefresh atomic.Int64
}

// streamOpened counts a stream as presence; the returned func refreshes it
// when due, and done ends it (offline after a grace, unless the user
// reconnects or has other streams).
func (p *presence) streamOpened(ctx context.Context, ws, user string) (refresh func(), done func()) {
	key := ws + "\x00" + user
	connTTL := 3 * p.cfg.Heartbeat
	p.mu.Lock()
	lc := p.local[key]
	first := lc == nil
	if first {
		lc = &localConn{conn: appmw.NewID()}
		lc.lastRefresh.Store(time.Now().UnixNano())
		p.local[key] = lc
	}
	lc.streams++
	p.mu.Unlock()
	if first {
		if cur, changed, err := p.store.OpenConn(ctx, ws, user, lc.conn, connTTL); err != nil {
			p.logger.WarnContext(ctx, "presence not recorded", "err", err)
		} else if changed {
			p.changed(ctx, ws, cur)
		}
	}
	refresh = func() {
		last, now := lc.lastRefresh.Load(), time.Now().UnixNano()
		// One stream wins the refresh when it falls due.
		if now-last < int64(p.cfg.Heartbeat) || !lc.lastRefresh.CompareAndSwap(last, now) {
			return
		}
		if err := p.store.RefreshConn(ctx, ws, user, lc.conn, connTTL); err != nil {
			p.logger.DebugContext(ctx, "presence not refreshed", "err", err)
		}
	}
	done = func() {
		p.mu.Lock()
		lc.streams--
		last := lc.streams == 0
		if last {
			delete(p.local, key)
		}
		p.mu.Unlock()
		if !last {
			return
		}
		bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := p.store.CloseConn(bg, ws, user, lc.conn); err != nil {
			p.logger.DebugContext(ctx, "presence not closed", "err", err)
		}
		// Runs once after the grace; a reconnect within it keeps the user
		// online and nothing is announced.
		time.AfterFunc(p.cfg.PresenceGrace, func() {
			bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if cur, changed, err := p.store.SettlePresence(bg, ws, user); err == nil && changed {
				p.changed(bg, ws, cur)
			}
		})
	}
	return refresh, done
}

// handleSetPresence records the caller's status.
func handleSetPresence(logger *slog.Logger, cfg Config, p *presence) http.Handler {
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
		cur, changed, err := p.store.SetPresence(r.Context(), ws, user, req.Status, cfg.PresenceTTL)
		if err != nil {
			writeError(logger, w, r, err)
			return
		}
		if changed {
			p.changed(r.Context(), ws, cur)
			// When it lapses without being refreshed, say so once.
			time.AfterFunc(cfg.PresenceTTL+time.Second, func() {
				bg, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
				defer cancel()
				if cur, changed, err := p.store.SettlePresence(bg, ws, user); err == nil && changed {
					p.changed(bg, ws, cur)
				}
			})
		}
		encode(w, http.StatusOK, cur)
	})
}

// handleGetPresence lists who is here.
func handleGetPresence(logger *slog.Logger, p *presence) http.Handler {
	type response struct {
		Users []stream.Presence `json:"users"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		users, err := p.store.ListPresence(r.Context(), chi.URLParam(r, "workspaceID"))
		if err != nil {
			writeError(logger, w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "private, no-store")
		encode(w, http.StatusOK, response{Users: users})
	})
}

// handleTyping records that the caller is or stopped typing in a chat.
func handleTyping(logger *slog.Logger, cfg Config, p *presence) http.Handler {
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
		token := appmw.NewID()
		changed, err := p.store.SetTyping(r.Context(), ws, chat, user, token, *req.Typing, cfg.TypingTTL)
		if err != nil {
			writeError(logger, w, r, err)
			return
		}
		data := map[string]string{"chatId": chat, "userId": user}
		if changed {
			typ := "typing.stopped"
			if *req.Typing {
				typ = "typing.started"
			}
			p.announce(r.Context(), ws, typ, data)
		}
		if *req.Typing {
			p.expireTyping(context.WithoutCancel(r.Context()), ws, chat, user, token, cfg.TypingTTL, data)
		}
		encode(w, http.StatusOK, response{Typing: *req.Typing})
	})
}

// expireTyping stops typing by itself when it is not renewed: after the
// ttl, the setter whose token still owns the state announces the stop.
func (p *presence) expireTyping(ctx context.Context, ws, chat, user, token string, after time.Duration, data map[string]string) {
	time.AfterFunc(after, func() {
		bg, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		stopped, left, err := p.store.ExpireTyping(bg, ws, chat, user, token)
		switch {
		case err != nil:
			p.logger.DebugContext(bg, "typing expiry failed", "err", err)
		case stopped:
			p.announce(bg, ws, "typing.stopped", data)
		case left > 0:
			p.expireTyping(ctx, ws, chat, user, token, left, data)
		}
	})
}

// decodeBody reads a small JSON object body into v, answering the error
// itself when it cannot.
func decodeBody(logger *slog.Logger, w http.ResponseWriter, r *http.Request, cfg Config, v any) bool {
	raw, ok := readJSON(logger, w, r, cfg)
	if !ok {
		return false
	}
	if err := decodeStrict(raw, v); err != nil {
		writeError(logger, w, r, errorf(http.StatusBadRequest, "invalid_json", "the body must be one JSON object"))
		return false
	}
	return true
}
