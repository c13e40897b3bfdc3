package handlers

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/realtime-dev/realtime/handlers/sock"
	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

var (
	errDraining     = errors.New("server draining")
	errTokenExpired = errors.New("token expired")
	errClientGone   = errors.New("client left")
	errClientSent   = errors.New("client sent data on its stream")
)

// handleStream serves a workspace's events as Server-Sent Events.
//
// Everything that can fail with a status (auth, parameters) happens before
// the first byte. After that, a failure can only end the stream, and since a
// browser's EventSource gives up for good on any non-200, even a temporary
// failure before the first byte (log unavailable, draining) is answered
// with 200 and a retry: hint.
func handleStream(logger *slog.Logger, cfg Config, log stream.Log, conns *connLimit, pres *stream.PresenceTracker, beats *heartbeats, streams context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws := chi.URLParam(r, "workspaceID")
		p := appmw.PrincipalFromContext(r.Context())
		types, err := streamTypes(r, p)
		if err != nil {
			writeError(logger, w, r, &apiError{status: http.StatusBadRequest, code: "invalid_parameter", detail: err.Error(), errors: map[string]string{"types": err.Error()}})
			return
		}
		cursor, fromHead, err := resumePoint(r)
		if err != nil {
			writeError(logger, w, r, err)
			return
		}
		if cfg.lifetimeLeft(p) < cfg.MinStreamLifetime {
			// Admitted within the leeway, or about to expire: a stream
			// that would close at once is refused, so that the client
			// gets a fresh token instead (and EventSource, which stops on
			// a 401, does not loop).
			writeError(logger, w, r, &appmw.AuthError{Presented: true, Err: errTokenExpiring})
			return
		}

		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache, no-store, no-transform")
		h.Set("X-Accel-Buffering", "no")
		out := newResponseWriter(w, cfg.WriteTimeout)
		if streams.Err() != nil {
			out.Write(appendRetry(nil, shortRetry()))
			return
		}
		if !conns.acquire(p.UserID) {
			// A non-200 would make EventSource give up for good.
			logger.WarnContext(r.Context(), "stream refused: user at the per-node cap", "cap", cfg.MaxStreamsPerUser)
			out.Write(appendRetry(nil, cfg.retry()))
			return
		}

		tail := stream.NewTail(log, ws, cursor, fromHead, stream.TailConfig{
			Filter: stream.Filter{Types: types, UserID: p.UserID}, Queue: cfg.Queue,
		})
		first, err := tail.Next(r.Context(), nil)
		if err != nil {
			tail.Close()
			conns.release(p.UserID)
			switch {
			case errors.Is(err, stream.ErrTooManyWorkspaces):
				logger.WarnContext(r.Context(), "stream refused: node follows too many workspaces")
			case r.Context().Err() == nil:
				logger.ErrorContext(r.Context(), "stream could not start, client told to retry", "err", err)
			}
			out.Write(appendRetry(nil, cfg.retry()))
			return
		}
		st := &sseStream{logger: logger, cfg: cfg, r: r, ws: ws, user: p.UserID, expires: p.Expires, http2: r.ProtoMajor >= 2,
			cursor: cursor, fromHead: fromHead, tail: tail, out: out, conns: conns, pres: pres,
			// The line RequestLog would write now would say 0 bytes and a
			// millisecond: the stream writes it when it ends instead.
			logged: appmw.LogRequestLater(r, http.StatusOK)}
		if cfg.Hijacked != nil && r.ProtoMajor == 1 && r.TLS == nil {
			if s, err := sock.Hijack(w, cfg.WriteTimeout); err == nil {
				// The connection is ours now: the handler's deep stack and
				// net/http's per-connection buffers are released, and a
				// small goroutine carries the stream (see sseStream). Only
				// the Socket writes to it or closes it.
				st.out = s
				if s.Direct() {
					tail.SetDirect(s)
					st.beats, st.sock = beats, s
				}
				st.header = rawHeader(h)
				cfg.Hijacked.Add(2)
				ctx, cancel := context.WithCancelCause(appmw.Detach(r.Context()))
				// Exits when the client goes away or the stream closes s.
				go func() {
					defer cfg.Hijacked.Done()
					watchClient(s, cancel)
				}()
				// Exits when the stream ends, closing s.
				go func() {
					defer cfg.Hijacked.Done()
					defer s.Close()
					st.run(ctx, cancel, first, streams)
				}()
				return
			}
		}
		ctx, cancel := context.WithCancelCause(r.Context())
		st.run(ctx, cancel, first, streams)
	})
}

// maxClientBytes is what a client may send on a stream's connection after
// its request before the stream is cut: a stream takes no input, so this
// is only slack for a stray byte or two, and a client that keeps sending
// costs the server at most this much reading.
const maxClientBytes = 64 << 10

// watchClient reads what the client sends after its request (nothing, as
// a rule) until the connection fails or closes, or the client has sent
// more than maxClientBytes, then cancels the stream. It reads in blocks,
// not a byte per system call; its buffer stays small because every open
// stream has one such goroutine.
func watchClient(c io.Reader, cancel context.CancelCauseFunc) {
	var b [512]byte
	for sent := 0; sent <= maxClientBytes; {
		n, err := c.Read(b[:])
		if err != nil {
			cancel(errClientGone)
			return
		}
		sent += n
	}
	cancel(errClientSent)
}

// resumePoint picks where a stream starts: the Last-Event-ID header, else
// the lastEventId query parameter (a new EventSource cannot send the
// header), else the head.
func resumePoint(r *http.Request) (cursor stream.ID, fromHead bool, err error) {
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = r.URL.Query().Get("lastEventId")
	}
	if raw == "" {
		return stream.ID{}, true, nil
	}
	id, err := stream.ParseID(raw)
	if err != nil {
		return stream.ID{}, false, &apiError{status: http.StatusBadRequest, code: "invalid_cursor", detail: "Last-Event-ID / lastEventId is not an event id from this API"}
	}
	return id, false, nil
}

// retry returns the advised reconnection delay, jittered up to +50% so that
// the clients of a node that goes away do not all come back at once.
func (c *Config) retry() time.Duration {
	return c.Retry + rand.N(c.Retry/2+1)
}

// shortRetry is the delay advised when the server drains: come back soon,
// to another node.
func shortRetry() time.Duration { return 250*time.Millisecond + rand.N(750*time.Millisecond) }
