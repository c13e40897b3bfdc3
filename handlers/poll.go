package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/realtime-dev/realtime/metrics"
	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/poll"
	"github.com/realtime-dev/realtime/stream"
)

// handlePoll serves cursor polling and long polling from the same log as
// the stream, so a polling cursor and an SSE id are interchangeable.
func handlePoll(logger *slog.Logger, cfg Config, log stream.Log, conns *connLimit, streams context.Context) http.Handler {
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
			defer cfg.Metrics.LongPollWaiting()()
			logger.DebugContext(r.Context(), "long poll", "cursor", q.Cursor, "wait", q.Wait.String())
		}
		res, release, err := poll.Poll(ctx, log, chi.URLParam(r, "workspaceID"), p.UserID, q)
		// Unsubscribes once the answer is written, off its path.
		defer release()
		if err != nil {
			if r.Context().Err() != nil {
				return // the client went away
			}
			writeError(logger, w, r, err)
			return
		}
		if res.Reset {
			cfg.Metrics.ResetSent(metrics.ResetPoll)
			logger.InfoContext(r.Context(), "poll cursor expired, client told to reset", "cursor", q.Cursor, "head", res.NextCursor)
		}
		body := appendPollResult(make([]byte, 0, pollResultSize(res)), res)
		h := w.Header()
		h.Set("Cache-Control", "private, no-store")
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body)
		// Sent now, before release unsubscribes (net/http would flush it
		// only when the handler returns).
		http.NewResponseController(w).Flush()
	})
}

// appendPollResult renders a poll's answer (openapi.yaml PollResult). It is
// spliced from each event's cached envelope rather than marshalled: one
// event waking thousands of long polls is encoded once, and json.Marshal
// would re-validate every envelope it is handed.
func appendPollResult(b []byte, res poll.Result) []byte {
	b = append(b, `{"events":[`...)
	b = appendEvents(b, res.Events)
	b = append(b, `],"nextCursor":"`...)
	b, _ = res.NextCursor.AppendText(b) // base36 and digits: nothing to escape
	b = append(b, `","hasMore":`...)
	b = strconv.AppendBool(b, res.HasMore)
	b = append(b, `,"reset":`...)
	b = strconv.AppendBool(b, res.Reset)
	b = append(b, `,"ephemeral":[`...)
	b = appendEvents(b, res.Ephemeral)
	return append(b, "]}\n"...)
}

func appendEvents(b []byte, es []*stream.Event) []byte {
	for i, e := range es {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e.JSON()...)
	}
	return b
}

func pollResultSize(res poll.Result) int {
	n := 128
	for _, e := range res.Events {
		n += len(e.JSON()) + 1
	}
	for _, e := range res.Ephemeral {
		n += len(e.JSON()) + 1
	}
	return n
}
