package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/poll"
	"github.com/realtime-dev/realtime/stream"
)

// handlePoll serves cursor polling and long polling from the same log as
// the stream, so a polling cursor and an SSE id are interchangeable.
func handlePoll(logger *slog.Logger, cfg Config, log stream.Log, conns *connLimit, streams context.Context) http.Handler {
	type response struct {
		Events     []*stream.Event `json:"events"`
		NextCursor stream.ID       `json:"nextCursor"`
		HasMore    bool            `json:"hasMore"`
		Reset      bool            `json:"reset"`
		Ephemeral  []*stream.Event `json:"ephemeral"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := poll.ParseQuery(r.URL.Query(), cfg.MaxWait)
		if err != nil {
			writeError(logger, w, r, err)
			return
		}
		// A long poll answers at once when the server starts draining.
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(streams, cancel)
		defer stop()
		p := appmw.PrincipalFromContext(r.Context())
		if q.Wait > 0 {
			// A waiting long poll holds a connection like a stream does.
			if !conns.acquire(p.UserID) {
				w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
				writeError(logger, w, r, errTooManyStreams)
				return
			}
			defer conns.release(p.UserID)
			logger.DebugContext(r.Context(), "long poll", "cursor", q.Cursor, "wait", q.Wait.String())
		}
		res, err := poll.Poll(ctx, log, chi.URLParam(r, "workspaceID"), p.UserID, q)
		if err != nil {
			if r.Context().Err() != nil {
				return // the client went away
			}
			writeError(logger, w, r, err)
			return
		}
		if res.Reset {
			logger.InfoContext(r.Context(), "poll cursor expired, client told to reset", "cursor", q.Cursor, "head", res.NextCursor)
		}
		w.Header().Set("Cache-Control", "private, no-store")
		eph := res.Ephemeral
		if eph == nil {
			eph = []*stream.Event{}
		}
		encode(w, http.StatusOK, response{Events: res.Events, NextCursor: res.NextCursor, HasMore: res.HasMore, Reset: res.Reset, Ephemeral: eph})
	})
}
