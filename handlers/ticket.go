package handlers

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

// streamRoute is the one route a stream ticket opens.
const streamRoute = "/v1/workspaces/{workspaceID}/events/stream"

var (
	// errInvalidTicket: unknown, used, expired, for another workspace or
	// on another route. One answer for all: which it was is nobody's
	// business but the log's.
	errInvalidTicket = fmt.Errorf("%w: stream ticket unknown, used or expired", appmw.ErrUnauthenticated)
	// errTokenExpiring: the token has less than MinStreamLifetime left.
	errTokenExpiring = errors.New("the token expires too soon to open a stream")
)

// tickets returns where stream tickets are kept: cfg.Tickets, else the
// log's own store.
func (c *Config) tickets(log stream.Log) stream.TicketStore {
	if c.Tickets != nil {
		return c.Tickets
	}
	ts, _ := log.(stream.TicketStore)
	return ts
}

// lifetimeLeft is how long a stream of p may stay open: until its
// token's exp plus the leeway the verifier granted (the same leeway that
// admitted the token).
func (c *Config) lifetimeLeft(p *appmw.Principal) time.Duration {
	return time.Until(p.Expires.Add(c.TokenLeeway))
}

// handleTicket issues a stream ticket: a short-lived, single-use, opaque
// credential for one stream of this workspace as this user with these
// types, so that EventSource (which cannot send headers) opens the stream
// with ?ticket= and no token ever goes into a URL.
func handleTicket(logger *slog.Logger, cfg Config, log stream.Log, limits stream.RateLimiter) http.Handler {
	type request struct {
		Types string `json:"types"`
	}
	type response struct {
		Ticket    string    `json:"ticket"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	store := cfg.tickets(log)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		// An empty body is a ticket for every type of the log.
		if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
			if !decodeBody(logger, w, r, cfg, &req) {
				return
			}
		}
		types, err := stream.ParseTypes(req.Types)
		if err != nil {
			writeError(logger, w, r, &apiError{status: http.StatusBadRequest, code: "invalid_parameter", detail: err.Error(), errors: map[string]string{"/types": err.Error()}})
			return
		}
		p := appmw.PrincipalFromContext(r.Context())
		if p.Ticket {
			writeError(logger, w, r, errInvalidTicket) // unreachable: tickets only open streams
			return
		}
		left := cfg.lifetimeLeft(p)
		if left < cfg.MinStreamLifetime {
			writeError(logger, w, r, &appmw.AuthError{Presented: true, Err: errTokenExpiring})
			return
		}
		if store == nil {
			writeError(logger, w, r, errors.New("no ticket store"))
			return
		}
		// Every ticket is kept until it expires: the user's rate bounds
		// what one token can make the store hold.
		if cfg.TicketRate.Per > 0 && !allow(logger, w, r, limits, ticketBucket(p.UserID), cfg.TicketRate, 1, "this user buys stream tickets faster than allowed") {
			return
		}
		// Never past the token's own life; the stream it opens is checked
		// for MinStreamLifetime again when it opens.
		ttl := min(cfg.TicketTTL, left)
		id := stream.NewTicketID()
		t := stream.Ticket{UserID: p.UserID, Workspace: chi.URLParam(r, "workspaceID"), Types: types, Expires: p.Expires}
		if err := store.PutTicket(r.Context(), id, t, ttl); err != nil {
			writeError(logger, w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		encode(w, http.StatusCreated, response{Ticket: id, ExpiresAt: time.Now().Add(ttl).UTC().Truncate(time.Millisecond)})
	})
}

// redeemTicket is Authenticate's ticket hook: it spends the ticket of a
// stream request (once, on any node) and stands for its user, workspace
// and types.
func redeemTicket(logger *slog.Logger, cfg Config, log stream.Log) func(*http.Request, string) (*appmw.Principal, error) {
	store := cfg.tickets(log)
	return func(r *http.Request, id string) (*appmw.Principal, error) {
		if rc := chi.RouteContext(r.Context()); rc == nil || rc.RoutePattern() != streamRoute || store == nil {
			return nil, errInvalidTicket
		}
		if !stream.ValidTicketID(id) {
			return nil, errInvalidTicket
		}
		ws := chi.URLParam(r, "workspaceID")
		if !stream.ValidWorkspace(ws) {
			return nil, errInvalidTicket
		}
		t, ok, err := store.TakeTicket(r.Context(), ws, id)
		if err != nil {
			return nil, err
		}
		if !ok || t.Workspace != ws {
			logger.DebugContext(r.Context(), "stream ticket refused")
			return nil, errInvalidTicket
		}
		return &appmw.Principal{UserID: t.UserID, Workspaces: []string{ws}, Expires: t.Expires, Ticket: true, Types: t.Types}, nil
	}
}

// streamTypes is the types a stream serves: the ticket's, or the types
// parameter. A ticket's stream may repeat its types in the URL, not
// change them.
func streamTypes(r *http.Request, p *appmw.Principal) ([]string, error) {
	types, err := stream.ParseTypes(r.URL.Query().Get("types"))
	if err != nil || !p.Ticket {
		return types, err
	}
	if r.URL.Query().Has("types") && !slices.Equal(types, p.Types) {
		return nil, fmt.Errorf("types %q differ from the ticket's %q", strings.Join(types, ","), strings.Join(p.Types, ","))
	}
	return p.Types, nil
}
