package handlers

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/realtime-dev/realtime/stream"
)

// Every byte a stream sends is composed here; sse_stream.go writes it
// through a frameWriter (sse_writer.go, or the hijacked connection's
// sock.Socket), and the hub's fan-out writes each event's own frame
// (stream.Event.Frame) straight to an armed sock.Socket.

var heartbeatFrame = []byte("event: heartbeat\ndata: {}\n\n")

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

// appendExpired is the last frame of a stream whose token expired: a
// retry: hint and an auth.expired event (no id: it moves no resume point),
// after which the server closes the stream. A client renews its token or
// ticket and reconnects from its last id.
func appendExpired(buf []byte, d time.Duration) []byte {
	buf = append(buf, "retry: "...)
	buf = strconv.AppendInt(buf, d.Milliseconds(), 10)
	return append(buf, "\nevent: auth.expired\ndata: {\"reason\":\"token_expired\"}\n\n"...)
}

func appendRetry(buf []byte, d time.Duration) []byte {
	buf = append(buf, "retry: "...)
	buf = strconv.AppendInt(buf, d.Milliseconds(), 10)
	return append(buf, "\n\n"...)
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

// frameBufs lends write buffers, so that an idle stream holds none.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
