package handlers

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/go-chi/chi/v5"

	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

var (
	errDraining     = errors.New("server draining")
	errTokenExpired = errors.New("token expired")
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
		types, err := stream.ParseTypes(r.URL.Query().Get("types"))
		if err != nil {
			writeError(logger, w, r, &apiError{status: http.StatusBadRequest, code: "invalid_parameter", detail: err.Error(), errors: map[string]string{"types": err.Error()}})
			return
		}
		cursor, fromHead, err := resumePoint(r)
		if err != nil {
			writeError(logger, w, r, err)
			return
		}

		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache, no-store, no-transform")
		h.Set("X-Accel-Buffering", "no")
		out := newSSEWriter(w, cfg.WriteTimeout, r.ProtoMajor >= 2)
		if streams.Err() != nil {
			out.write(appendRetry(nil, shortRetry()))
			return
		}
		if !conns.acquire(p.UserID) {
			// A non-200 would make EventSource give up for good.
			logger.WarnContext(r.Context(), "stream refused: user at the per-node cap", "cap", cfg.MaxStreamsPerUser)
			out.write(appendRetry(nil, cfg.retry()))
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
			out.write(appendRetry(nil, cfg.retry()))
			return
		}
		st := &sseStream{logger: logger, cfg: cfg, r: r, ws: ws, user: p.UserID, expires: p.Expires,
			cursor: cursor, fromHead: fromHead, tail: tail, out: out, conns: conns, pres: pres}
		if cfg.Hijacked != nil && r.ProtoMajor == 1 {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				// The connection is ours now: the handler's deep stack and
				// net/http's per-connection buffers are released, and a
				// small goroutine carries the stream (see sseStream).
				st.out = newConnWriter(conn, cfg.WriteTimeout)
				if dw := st.out.direct(); dw != nil {
					tail.SetDirect(dw)
					st.beats = beats
				}
				st.header = rawHeader(h)
				cfg.Hijacked.Add(2)
				ctx, cancel := context.WithCancelCause(appmw.Detach(r.Context()))
				// Exits when the client goes away or run closes conn.
				go func() {
					defer cfg.Hijacked.Done()
					var b [1]byte
					for {
						if _, err := conn.Read(b[:]); err != nil {
							cancel(errClientGone)
							return
						}
					}
				}()
				// Exits when the stream ends; it closes conn, after run has
				// closed the Tail: from then on the hub cannot be writing
				// to conn's descriptor (see WriteNow).
				go func() {
					defer cfg.Hijacked.Done()
					defer conn.Close()
					st.run(ctx, cancel, first, streams)
				}()
				return
			}
		}
		ctx, cancel := context.WithCancelCause(r.Context())
		st.run(ctx, cancel, first, streams)
	})
}

var errClientGone = errors.New("client left")

// sseStream is one open stream after its setup: run writes its frames
// until it ends, on the handler's goroutine or, once the connection is
// hijacked, on a goroutine of its own.
type sseStream struct {
	logger   *slog.Logger
	cfg      Config
	r        *http.Request
	ws, user string
	expires  time.Time
	cursor   stream.ID
	fromHead bool
	tail     *stream.Tail
	out      *sseWriter
	header   []byte // a hijacked stream writes its own status line and headers
	conns    *connLimit
	pres     *stream.PresenceTracker
	beats    *heartbeats // set when out takes direct writes
}

// run sends the opening frames and then every batch until the client
// leaves, the server drains, or the token expires.
func (st *sseStream) run(ctx context.Context, cancel context.CancelCauseFunc, first stream.Batch, streams context.Context) {
	logger, cfg, out := st.logger, st.cfg, st.out
	// The request's log attributes without the request: a hijacked stream
	// outlives its handler, whose return cancels the request's context and
	// would otherwise keep the whole request alive. ctx is the stream's own.
	rctx := appmw.Detach(st.r.Context())
	st.r = nil
	defer st.conns.release(st.user)
	defer st.tail.Close()
	defer cancel(nil)
	stopDrain := context.AfterFunc(streams, func() { cancel(errDraining) })
	defer stopDrain()
	expiry := time.AfterFunc(time.Until(st.expires), func() { cancel(errTokenExpired) })
	defer expiry.Stop()
	opened := time.Now()

	// The retry: frame goes out only now that the subscription is live: a
	// client that has read it misses nothing published later.
	pos := st.cursor
	buf := append(make([]byte, 0, 4096), st.header...)
	st.header = nil
	if st.fromHead {
		// One block carries both the reconnection time and the resume
		// point: a client that drops before any event comes back from
		// here, not "from now", and misses nothing.
		buf = append(buf, "retry: "...)
		buf = strconv.AppendInt(buf, cfg.retry().Milliseconds(), 10)
		buf = append(buf, "\nid: "...)
		buf, _ = first.Position.AppendText(buf)
		buf = append(buf, "\n\n"...)
		pos = first.Position
	} else {
		buf = appendRetry(buf, cfg.retry())
	}
	// A named event a script can observe (retry: and id: lines dispatch
	// nothing): the stream is live and not held back by a buffering
	// proxy. It carries the resume point so far.
	buf = append(buf, "event: ready\ndata: {\"cursor\":\""...)
	buf, _ = pos.AppendText(buf)
	buf = append(buf, "\"}\n\n"...)
	buf = appendBatch(buf, first, &pos)
	if first.Reset {
		logger.InfoContext(rctx, "stream cursor expired, client told to reset", "cursor", st.cursor, "head", first.Position)
	}
	if err := out.write(buf); err != nil {
		logger.DebugContext(rctx, "stream write failed", "err", err)
		return
	}
	logger.DebugContext(rctx, "stream opened", "from", st.cursor, "live", st.fromHead)
	defer func() {
		logger.DebugContext(rctx, "stream closed", "duration", time.Since(opened).String(), "position", pos)
	}()
	// An open stream makes its user present in the workspace.
	defer st.pres.Join(rctx, st.ws, st.user).Leave(rctx)

	// A stream that takes direct writes gets its heartbeats, and its
	// presence refreshed, from the node's sweeper; any other has a timer.
	var idle <-chan time.Time
	var heartbeat *time.Timer
	if st.beats != nil {
		st.beats.add(st)
		defer st.beats.remove(st)
	} else {
		heartbeat = time.NewTimer(cfg.Heartbeat)
		defer heartbeat.Stop()
		idle = heartbeat.C
	}
	for {
		b, err := st.tail.Next(ctx, idle)
		if err != nil {
			cause := context.Cause(ctx)
			switch {
			case errors.Is(err, stream.ErrSlowSubscriber):
				logger.WarnContext(rctx, "subscriber too slow, dropped", "position", pos, "queue", cfg.Queue)
				out.write(appendRetry(nil, cfg.retry()))
			case errors.Is(cause, errDraining):
				out.write(appendRetry(nil, shortRetry()))
			case errors.Is(cause, errTokenExpired):
				logger.DebugContext(rctx, "stream ended: token expired")
			case ctx.Err() != nil:
				logger.DebugContext(rctx, "stream ended: client left")
			default:
				logger.ErrorContext(rctx, "stream read failed, client told to retry", "err", err)
				out.write(appendRetry(nil, cfg.retry()))
			}
			return
		}
		if b.Reset {
			logger.InfoContext(rctx, "stream cursor expired, client told to reset", "cursor", pos, "head", b.Position)
		}
		if !out.directPos.IsZero() {
			pos, out.directPos = out.directPos, stream.ID{}
		}
		bp := frameBufs.Get().(*[]byte)
		buf := appendBatch((*bp)[:0], b, &pos)
		if b.Idle && heartbeat != nil {
			// The timer fired. It is not reset on every write (that
			// would cost a timer update per event): it is checked here.
			if silent := time.Since(out.lastWriteTime()); silent < cfg.Heartbeat {
				heartbeat.Reset(cfg.Heartbeat - silent)
			} else {
				buf = append(buf, heartbeatFrame...)
				heartbeat.Reset(cfg.Heartbeat)
			}
		}
		if len(buf) == 0 {
			frameBufs.Put(bp)
			if len(out.pending) == 0 {
				continue // nothing to write
			}
			// A direct write left part of a frame (see WriteNow).
			if err := out.write(nil); err != nil {
				logger.DebugContext(rctx, "stream write failed", "err", err)
				return
			}
			continue
		}
		err = out.write(buf)
		if cap(buf) <= 64<<10 { // a burst's big buffer is not kept
			*bp = buf
			frameBufs.Put(bp)
		}
		if err != nil {
			logger.DebugContext(rctx, "stream write failed", "err", err)
			return
		}
	}
}

// rawHeader renders the status line and headers a hijacked stream sends
// itself. The body is delimited by the connection's close: no chunking.
func rawHeader(h http.Header) []byte {
	b := []byte("HTTP/1.1 200 OK\r\n")
	for k, vs := range h {
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "Connection: close\r\n\r\n"...)
	return b
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

// appendBatch appends the frames of b and moves *pos to its position. Event
// ids and types never hold CR or LF (ids are generated, types validated at
// publish) and the data is compact JSON, so every frame is well-formed.
func appendBatch(buf []byte, b stream.Batch, pos *stream.ID) []byte {
	if b.Reset {
		buf = append(buf, "id: "...)
		buf, _ = b.Position.AppendText(buf)
		buf = append(buf, "\nevent: sync.reset\ndata: {\"reason\":\"cursor_expired\",\"head\":\""...)
		buf, _ = b.Position.AppendText(buf)
		buf = append(buf, "\"}\n\n"...)
		*pos = b.Position
	}
	for _, e := range b.Events {
		buf = append(buf, e.Frame()...)
		*pos = e.ID
	}
	for _, e := range b.Ephemeral {
		// No id line: an ephemeral event (presence, typing) never moves
		// the resume point and is never replayed.
		buf = append(buf, e.Frame()...)
	}
	if b.Position != *pos && !b.Position.IsZero() {
		// Events this client may not see were skipped: move its resume
		// point past them without dispatching anything.
		buf = append(buf, "id: "...)
		buf, _ = b.Position.AppendText(buf)
		buf = append(buf, "\n\n"...)
		*pos = b.Position
	}
	return buf
}

func appendRetry(buf []byte, d time.Duration) []byte {
	buf = append(buf, "retry: "...)
	buf = strconv.AppendInt(buf, d.Milliseconds(), 10)
	return append(buf, "\n\n"...)
}

// retry returns the advised reconnection delay, jittered up to +50% so that
// the clients of a node that goes away do not all come back at once.
func (c Config) retry() time.Duration {
	return c.Retry + rand.N(c.Retry/2+1)
}

// shortRetry is the delay advised when the server drains: come back soon,
// to another node.
func shortRetry() time.Duration { return 250*time.Millisecond + rand.N(750*time.Millisecond) }

// frameBufs lends write buffers, so that an idle stream holds none.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// sseWriter writes frames, each bounded by a deadline so that a client that
// stopped reading cannot pin the handler.
type sseWriter struct {
	conn      net.Conn  // a hijacked connection; w and rc are then unused
	fd        int       // conn's socket, for WriteNow; -1: no direct writes
	pending   []byte    // what WriteNow could not write; write sends it first
	directPos stream.ID // the last event WriteNow wrote, zero once the stream took it
	w         http.ResponseWriter
	rc        *http.ResponseController // on the innermost writer: no unwrapping per call
	timeout   time.Duration
	http2     bool
	deadline  time.Time    // the connection's write deadline (HTTP/1)
	lastWrite atomic.Int64 // UnixNano of the last write, read by the heartbeat sweeper
}

// newConnWriter writes straight to a hijacked connection: one write(2) per
// batch, no buffering, no chunking. On a TCP (or any syscall.Conn) socket
// it also takes direct writes from the hub (WriteNow).
func newConnWriter(c net.Conn, timeout time.Duration) *sseWriter {
	w := &sseWriter{conn: c, fd: -1, timeout: timeout}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) { w.fd = int(fd) })
		}
	}
	return w
}

// WriteNow implements stream.DirectWriter: the hub's fan-out writes e's
// frame to the socket with one non-blocking write(2), while the stream's
// goroutine is parked (the Tail guarantees it does not write meanwhile).
// What the socket does not take at once is kept in pending for the
// goroutine, which the hub wakes.
//
// It writes to the socket's descriptor with a raw system call, not through
// RawConn.Write. The socket is non-blocking and the fan-out never waits for
// it, so RawConn's locking, poller reset and the runtime's bookkeeping
// around a blocking call (handing the P off, waking sysmon on an idle
// process) are pure cost: together they were about a third of a
// delivery's CPU outside the kernel. What RawConn's lock would guarantee,
// that the descriptor is not closed and reused during the write, holds by
// construction: the hub calls WriteNow only for an open subscription,
// under its lock, and the connection is closed only after its Tail (see
// the stream's goroutine in handleStream).
func (s *sseWriter) WriteNow(id stream.ID, frame []byte) (taken, partial bool) {
	if len(s.pending) > 0 {
		return false, false
	}
	var n int
	for {
		r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(s.fd), uintptr(unsafe.Pointer(unsafe.SliceData(frame))), uintptr(len(frame)))
		if errno == syscall.EINTR {
			continue
		}
		if errno == 0 {
			n = int(r)
		}
		break
	}
	if n <= 0 {
		return false, false
	}
	s.lastWrite.Store(time.Now().UnixNano())
	if !id.IsZero() {
		s.directPos = id
	}
	if n < len(frame) {
		s.pending = append(s.pending, frame[n:]...)
		return true, true
	}
	return true, false
}

// lastWriteTime is when s last wrote.
func (s *sseWriter) lastWriteTime() time.Time { return time.Unix(0, s.lastWrite.Load()) }

// direct returns s as a stream.DirectWriter when it can write directly.
func (s *sseWriter) direct() stream.DirectWriter {
	if s.fd < 0 {
		return nil
	}
	return s
}

func newSSEWriter(w http.ResponseWriter, timeout time.Duration, http2 bool) *sseWriter {
	inner := w
	for {
		u, ok := inner.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		inner = u.Unwrap()
	}
	return &sseWriter{w: w, rc: http.NewResponseController(inner), fd: -1, timeout: timeout, http2: http2}
}

// write writes and flushes b, after what a direct write left (pending). A
// socket that takes direct writes gets a deadline for this write only. Else
// on HTTP/1 the write deadline is moved only
// when less than half of it is left: every write still gets at least
// timeout/2, and a busy stream does not pay a deadline update per event.
// An expired deadline on an idle HTTP/1 connection is harmless, since the
// next write sets a new one first. On HTTP/2 a deadline is a stream timer
// that resets the stream even when idle, so it is set and cleared around
// each write.
func (s *sseWriter) write(b []byte) error {
	now := time.Now()
	if s.fd >= 0 {
		// Direct writes must find no deadline set (an expired one fails
		// them), so this write's deadline is cleared after it.
		if err := s.conn.SetWriteDeadline(now.Add(s.timeout)); err != nil {
			return err
		}
		// The remainder first, then b: one writev(2), not a write each.
		bufs := net.Buffers{s.pending, b}
		if _, err := bufs.WriteTo(s.conn); err != nil {
			return err
		}
		s.pending = nil
		s.lastWrite.Store(now.UnixNano())
		return s.conn.SetWriteDeadline(time.Time{})
	}
	if s.conn != nil {
		if s.deadline.Sub(now) < s.timeout/2 {
			if err := s.conn.SetWriteDeadline(now.Add(s.timeout)); err != nil {
				return err
			}
			s.deadline = now.Add(s.timeout)
		}
		if _, err := s.conn.Write(b); err != nil {
			return err
		}
		s.lastWrite.Store(now.UnixNano())
		return nil
	}
	if s.http2 || s.deadline.Sub(now) < s.timeout/2 {
		if err := s.rc.SetWriteDeadline(now.Add(s.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		s.deadline = now.Add(s.timeout)
	}
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil {
		return err
	}
	s.lastWrite.Store(now.UnixNano())
	if s.http2 {
		if err := s.rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
	}
	return nil
}
