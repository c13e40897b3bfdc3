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
	w       http.ResponseWriter
	rc      *http.ResponseController // on the innermost writer: no unwrapping per call
	timeout time.Duration
	written int64 // bytes written; only the stream's goroutine writes
}

func newResponseWriter(w http.ResponseWriter, timeout time.Duration) *responseWriter {
	inner := w
	for {
		u, ok := inner.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		inner = u.Unwrap()
	}
	return &responseWriter{w: w, rc: http.NewResponseController(inner), timeout: timeout}
}

// Write writes and flushes b, with the write deadline set for it and
// cleared after it: an idle stream then has no timer armed (an armed one
// costs the runtime a wake-up per idle connection when it expires, and on
// HTTP/2 it resets the stream even when idle). Clients that stopped
// reading are thus bounded by timeout on every write.
func (s *responseWriter) Write(b []byte) error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	n, err := s.w.Write(b)
	s.written += int64(n)
	if err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil {
		return err
	}
	if err := s.rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// Written returns the bytes s wrote.
func (s *responseWriter) Written() int64 { return s.written }
