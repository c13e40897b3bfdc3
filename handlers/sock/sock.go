// Package sock owns the TCP connection of a hijacked stream: every write
// to it, from the stream's own goroutine or straight from the hub's
// fan-out, and its closing go through one Socket, under one lock. So
// "never write to a descriptor that was closed and handed to another
// connection" holds by construction, whatever order the stream, a
// shutdown or a read error close things in: the descriptor is only ever
// used inside RawConn.Control (which holds the runtime's reference on it),
// under the lock that Close takes, and after Close nothing writes.
//
// It imports nothing of this module, and is not a public API.
package sock

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Socket is a hijacked connection, owned: nothing else may write to it or
// close it. Writes are frame-atomic: a frame that WriteNow could only
// partly write is finished by the next Write before anything else.
//
// All methods are safe for concurrent use.
type Socket struct {
	conn    net.Conn
	raw     syscall.RawConn // set for a *net.TCPConn: WriteNow writes through it
	timeout time.Duration

	// mu is held for every write and for the close: the last write
	// before the close completes before the descriptor goes.
	mu       sync.Mutex
	closed   bool
	pending  []byte    // what WriteNow left of its frame
	deadline time.Time // the write deadline set on conn

	// WriteNow's call into RawConn.Control: one func value per socket,
	// with its argument and results here (under mu), rather than a
	// closure allocated per write (5,000 per event in a large workspace).
	control func(fd uintptr)
	frame   []byte
	n       int
	werr    error

	lastWrite atomic.Int64 // UnixNano of the last write, read without mu
	written   int64        // bytes written by either path, under mu
}

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("socket closed")

// Own takes c over; from now on only the Socket writes to and closes it.
// Each blocking Write is bounded by timeout. Only a *net.TCPConn takes
// WriteNow: anything that merely wraps one (TLS, a PROXY-protocol
// listener) would have plaintext written underneath it.
func Own(c net.Conn, timeout time.Duration) *Socket {
	s := &Socket{conn: c, timeout: timeout}
	if tcp, ok := c.(*net.TCPConn); ok {
		if raw, err := tcp.SyscallConn(); err == nil {
			s.raw = raw
			s.control = s.writeFD
		}
	}
	s.lastWrite.Store(time.Now().UnixNano())
	return s
}

// Direct reports whether WriteNow can write (the connection is TCP).
func (s *Socket) Direct() bool { return s.raw != nil }

// WriteNow writes frame with one non-blocking write(2), never waiting for
// the lock, the socket's buffer or a deadline: it is called from the hub's
// fan-out, which must not block. taken reports that the frame was written,
// whole or in part; partial, that a remainder was kept, which the next
// Write sends first. Nothing is written (!taken) when the socket is busy
// (another write holds the lock), has a remainder pending, is full, is
// closed, or is not TCP.
func (s *Socket) WriteNow(frame []byte) (taken, partial bool) {
	if s.raw == nil || !s.mu.TryLock() {
		return false, false
	}
	defer s.mu.Unlock()
	if s.closed || len(s.pending) > 0 {
		return false, false
	}
	s.frame = frame
	err := s.raw.Control(s.control)
	n, werr := s.n, s.werr
	s.frame, s.werr = nil, nil
	if err != nil || werr != nil || n <= 0 {
		return false, false
	}
	s.lastWrite.Store(time.Now().UnixNano())
	s.written += int64(n)
	if n < len(frame) {
		s.pending = append(s.pending, frame[n:]...)
		return true, true
	}
	return true, false
}

// writeFD is WriteNow's write(2), made inside RawConn.Control, where the
// runtime holds its reference on fd: a concurrent Close of the connection
// cannot release it. s.mu is held.
func (s *Socket) writeFD(fd uintptr) {
	for {
		s.n, s.werr = unix.Write(int(fd), s.frame)
		if s.werr != unix.EINTR {
			return
		}
	}
}

// Write writes what WriteNow left, then b, and blocks until both are
// written or the timeout passes. The deadline is moved only when less
// than half of it is left, so every write gets at least timeout/2 and a
// busy stream does not pay a deadline update per batch; WriteNow ignores
// deadlines, so an expired one on an idle stream is harmless.
func (s *Socket) Write(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	now := time.Now()
	if s.deadline.Sub(now) < s.timeout/2 {
		s.deadline = now.Add(s.timeout)
		if err := s.conn.SetWriteDeadline(s.deadline); err != nil {
			return err
		}
	}
	var err error
	if len(s.pending) > 0 {
		// One writev(2), not a write each.
		bufs := net.Buffers{s.pending, b}
		var n int64
		n, err = bufs.WriteTo(s.conn)
		s.written += n
		s.pending = nil
	} else if len(b) > 0 {
		var n int
		n, err = s.conn.Write(b)
		s.written += int64(n)
	}
	if err != nil {
		return err
	}
	s.lastWrite.Store(now.UnixNano())
	return nil
}

// Read reads from the connection (the stream's watcher of a client that
// leaves). It does not take the lock: reads never touch what writes do.
func (s *Socket) Read(p []byte) (int, error) { return s.conn.Read(p) }

// Written returns the bytes written to the connection so far.
func (s *Socket) Written() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written
}

// LastWrite returns when s last wrote.
func (s *Socket) LastWrite() time.Time { return time.Unix(0, s.lastWrite.Load()) }

// Close closes the connection once, after any write in progress; later
// writes fail with ErrClosed and WriteNow writes nothing.
func (s *Socket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.pending = nil
	return s.conn.Close()
}
