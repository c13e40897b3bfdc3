package handlers

import (
	"errors"
	"net/http"
	"time"
)

// responseWriter writes a stream's frames through net/http, each write
// flushed and bounded by a deadline so that a client that stopped reading
// cannot pin the handler. It serves HTTP/2 and any stream that is not
// hijacked; a hijacked stream writes through its sock.Socket instead.
type responseWriter struct {
	w        http.ResponseWriter
	rc       *http.ResponseController // on the innermost writer: no unwrapping per call
	timeout  time.Duration
	http2    bool
	deadline time.Time // the connection's write deadline (HTTP/1)
	written  int64     // bytes written; only the stream's goroutine writes
}

func newResponseWriter(w http.ResponseWriter, timeout time.Duration, http2 bool) *responseWriter {
	inner := w
	for {
		u, ok := inner.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		inner = u.Unwrap()
	}
	return &responseWriter{w: w, rc: http.NewResponseController(inner), timeout: timeout, http2: http2}
}

// Write writes and flushes b. On HTTP/1 the write deadline is moved only
// when less than half of it is left: every write still gets at least
// timeout/2, and a busy stream does not pay a deadline update per event.
// An expired deadline on an idle HTTP/1 connection is harmless, since the
// next write sets a new one first. On HTTP/2 a deadline is a stream timer
// that resets the stream even when idle, so it is set and cleared around
// each write.
func (s *responseWriter) Write(b []byte) error {
	now := time.Now()
	if s.http2 || s.deadline.Sub(now) < s.timeout/2 {
		if err := s.rc.SetWriteDeadline(now.Add(s.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		s.deadline = now.Add(s.timeout)
	}
	n, err := s.w.Write(b)
	s.written += int64(n)
	if err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil {
		return err
	}
	if s.http2 {
		if err := s.rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
	}
	return nil
}

// Written returns the bytes s wrote.
func (s *responseWriter) Written() int64 { return s.written }
