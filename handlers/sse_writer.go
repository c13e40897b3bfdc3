package handlers

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// responseWriter writes a stream's frames through net/http, each write
// flushed and bounded by a deadline so that a client that stopped reading
// cannot pin the handler. It serves HTTP/2 and any stream that is not
// hijacked; a hijacked stream writes through its sock.Socket instead.
type responseWriter struct {
	w         http.ResponseWriter
	rc        *http.ResponseController // on the innermost writer: no unwrapping per call
	timeout   time.Duration
	http2     bool
	deadline  time.Time    // the connection's write deadline (HTTP/1)
	lastWrite atomic.Int64 // UnixNano of the last write
	written   int64        // bytes written; only the stream's goroutine writes

	// HTTP/2: a watchdog in place of a write deadline per write (see
	// Write). writeStart is the UnixNano when the write in progress
	// began, 0 between writes; armed says the watchdog timer is set.
	writeStart atomic.Int64
	armed      atomic.Bool
	watchdog   *time.Timer
	mu         sync.Mutex // held by the watchdog while it cuts; done under it
	done       bool       // the handler is returning: the writer is not to be touched
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
	rw := &responseWriter{w: w, rc: http.NewResponseController(inner), timeout: timeout, http2: http2}
	rw.lastWrite.Store(time.Now().UnixNano())
	if http2 && timeout > 0 {
		rw.watchdog = time.AfterFunc(time.Hour, rw.watch)
		rw.watchdog.Stop()
	}
	return rw
}

// Write writes and flushes b. On HTTP/1 the write deadline is moved only
// when less than half of it is left: every write still gets at least
// timeout/2, and a busy stream does not pay a deadline update per event.
// An expired deadline on an idle HTTP/1 connection is harmless, since the
// next write sets a new one first.
//
// On HTTP/2 a write deadline is a stream timer that resets the stream even
// when idle, and each change of it is a message to the connection's serve
// goroutine and a timer of its own: set and cleared around every write, it
// made an HTTP/2 delivery cost 2.7 times an HTTP/1 one. Instead the write
// records when it began, and one timer per stream, armed by a write when
// it is not already and re-armed only while a write is in progress, cuts
// the stream (a deadline in the past: net/http resets it at once and the
// blocked write returns) when a write has lasted the timeout. A busy
// stream arms it about once per timeout, not twice per event; a stalled
// write is still cut timeout after it began.
func (s *responseWriter) Write(b []byte) error {
	now := time.Now()
	if s.watchdog != nil {
		s.writeStart.Store(now.UnixNano())
		if s.armed.CompareAndSwap(false, true) {
			s.watchdog.Reset(s.timeout)
		}
	} else if s.deadline.Sub(now) < s.timeout/2 {
		if err := s.rc.SetWriteDeadline(now.Add(s.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		s.deadline = now.Add(s.timeout)
	}
	n, err := s.w.Write(b)
	s.written += int64(n)
	if err == nil {
		err = s.rc.Flush()
	}
	if s.watchdog != nil {
		s.writeStart.Store(0)
	}
	if err != nil {
		return err
	}
	s.lastWrite.Store(now.UnixNano())
	return nil
}

// watch runs when the watchdog fires: it cuts a write that has lasted the
// timeout, waits for the end of one still within it, and disarms when no
// write is in progress (the next write arms it again).
func (s *responseWriter) watch() {
	for {
		start := s.writeStart.Load()
		if start == 0 {
			s.armed.Store(false)
			// A write that began before the store saw armed set and did
			// not arm: take it over.
			if s.writeStart.Load() == 0 || !s.armed.CompareAndSwap(false, true) {
				return
			}
			continue
		}
		left := time.Duration(start + int64(s.timeout) - time.Now().UnixNano())
		if left > 0 {
			s.watchdog.Reset(left)
			return
		}
		s.mu.Lock()
		if !s.done && s.writeStart.Load() == start {
			s.rc.SetWriteDeadline(time.Now().Add(-time.Second)) // resets the stream now
		}
		s.mu.Unlock()
		return
	}
}

// Close stops the watchdog; the handler calls it before it returns, after
// its last write.
func (s *responseWriter) Close() {
	if s.watchdog == nil {
		return
	}
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
	s.watchdog.Stop()
}

// Written returns the bytes s wrote.
func (s *responseWriter) Written() int64 { return s.written }

// LastWrite is when s last wrote.
func (s *responseWriter) LastWrite() time.Time { return time.Unix(0, s.lastWrite.Load()) }
