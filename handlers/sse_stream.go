package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/realtime-dev/realtime/handlers/sock"
	"github.com/realtime-dev/realtime/metrics"
	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

// frameWriter is where a stream writes its frames: the hijacked
// connection's sock.Socket (HTTP/1), or the ResponseWriter (HTTP/2, TLS,
// or no hijacking; sse_writer.go).
type frameWriter interface {
	// Write writes b, after whatever a direct write left unfinished, and
	// returns once it is on its way or the write timeout passed.
	Write(b []byte) error
	// Written is how many bytes the stream has written, for its request
	// log line.
	Written() int64
}

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
	out      frameWriter
	header   []byte // a hijacked stream writes its own status line and headers
	conns    *connLimit
	pres     *stream.PresenceTracker
	beats    *heartbeats       // set when out takes direct writes
	sock     *sock.Socket      // out, when it takes direct writes (the sweeper reads it)
	http2    bool              // for metrics
	logged   func(bytes int64) // writes the request's log line, at the end
	// The sweeper's own record of the stream, touched by no one else:
	// when it last pinged it, and the socket's byte count when it last
	// saw it change, and when.
	lastPing, seenWritten int64
	seenAt                time.Time
}

// run sends the opening frames and then every batch until the client
// leaves, the server drains, or the token expires.
func (st *sseStream) run(ctx context.Context, cancel context.CancelCauseFunc, first stream.Batch, streams context.Context) {
	// cfg is a pointer, and Config's methods take one: a copy of the
	// whole Config in this frame and in each method call was what took
	// every stream's goroutine from a 4 KiB stack to an 8 KiB one once
	// Config grew (about 4 KiB more per stream).
	logger, cfg, out := st.logger, &st.cfg, st.out
	// The request's log attributes without the request: a hijacked stream
	// outlives its handler, whose return cancels the request's context and
	// would otherwise keep the whole request alive. ctx is the stream's own.
	rctx := appmw.Detach(st.r.Context())
	st.r = nil
	defer func() { st.logged(out.Written()) }()
	defer cfg.Metrics.StreamOpened(st.http2)()
	defer st.conns.release(st.user)
	defer st.tail.Close()
	defer cancel(nil)
	stopDrain := context.AfterFunc(streams, func() { cancel(errDraining) })
	defer stopDrain()
	// The leeway the verifier granted on exp applies here too: a token
	// accepted within it must not open a stream that ends at once.
	expiry := time.AfterFunc(time.Until(st.expires.Add(cfg.TokenLeeway)), func() { cancel(errTokenExpired) })
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
		cfg.Metrics.ResetSent(metrics.ResetStream)
		logger.InfoContext(rctx, "stream cursor expired, client told to reset", "cursor", st.cursor, "head", first.Position)
	}
	if err := out.Write(buf); err != nil {
		logger.DebugContext(rctx, "stream write failed", "err", err)
		return
	}
	lastWrite := time.Now() // for the heartbeat timer of a stream the sweeper does not serve
	logger.DebugContext(rctx, "stream opened", "from", st.cursor, "live", st.fromHead)
	defer func() {
		logger.DebugContext(rctx, "stream closed", "duration", time.Since(opened).String(), "position", pos)
	}()
	// An open stream makes its user present in the workspace.
	defer st.pres.Join(st.ws, st.user).Leave()

	// A stream that takes direct writes gets its heartbeats from the
	// node's sweeper; any other has a timer.
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
				cfg.Metrics.SlowConsumerClosed()
				logger.WarnContext(rctx, "subscriber too slow, dropped", "position", pos, "queue", cfg.Queue)
				out.Write(appendRetry(nil, cfg.retry()))
			case errors.Is(cause, errDraining):
				out.Write(appendRetry(nil, shortRetry()))
			case errors.Is(cause, errTokenExpired):
				// Say why, and come back soon with a fresh token or ticket
				// from the last id: the client misses nothing.
				logger.DebugContext(rctx, "stream ended: token expired")
				out.Write(appendExpired(nil, shortRetry()))
			case ctx.Err() != nil:
				logger.DebugContext(rctx, "stream ended: client left")
			default:
				logger.ErrorContext(rctx, "stream read failed, client told to retry", "err", err)
				out.Write(appendRetry(nil, cfg.retry()))
			}
			return
		}
		if b.Reset {
			cfg.Metrics.ResetSent(metrics.ResetStream)
			logger.InfoContext(rctx, "stream cursor expired, client told to reset", "cursor", pos, "head", b.Position)
		}
		if !b.Written.IsZero() {
			pos = b.Written // the fan-out wrote these itself
		}
		bp := frameBufs.Get().(*[]byte)
		buf := appendBatch((*bp)[:0], b, &pos)
		if b.Reason == stream.Idle && heartbeat != nil {
			// The timer fired. It is not reset on every write (that
			// would cost a timer update per event): it is checked here.
			if silent := time.Since(lastWrite); silent < cfg.Heartbeat {
				heartbeat.Reset(cfg.Heartbeat - silent)
			} else {
				buf = append(buf, heartbeatFrame...)
				heartbeat.Reset(cfg.Heartbeat)
			}
		}
		if len(buf) == 0 && b.Reason != stream.Unfinished {
			frameBufs.Put(bp) // nothing to write
			continue
		}
		// An Unfinished batch makes this write send the rest of the frame
		// a direct write began (sock.Socket keeps it), before buf.
		err = out.Write(buf)
		if heartbeat != nil {
			lastWrite = time.Now()
		}
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
