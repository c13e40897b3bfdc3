// Package sock owns the TCP connection of a hijacked stream: every write
// to it, from the stream's own goroutine or straight from the hub's
// fan-out, and its closing go through one Socket, under one lock. So
// "never write to a descriptor that was closed and handed to another
// connection" holds by construction, whatever order the stream, a
// shutdown or a read error close things in:
//
//   - Hijack takes the connection from net/http and hands out only the
//     Socket: no net.Conn escapes, so nothing but Socket.Close can close
//     it (Own, for a connection of the caller's, asks the same of it).
//   - The descriptor is read once, inside RawConn.Control, when the
//     Socket takes the connection. A descriptor stays its connection's
//     until the connection is closed, and that happens only in Close,
//     under mu; every direct write is made under mu, after checking that
//     Close has not run. (RawConn.Control promises the descriptor only
//     for its callback because anyone holding the net.Conn might close it
//     meanwhile; here no one else holds it.) Writing through Control each
//     time instead cost a reference count on the descriptor per write,
//     about a twentieth of a large workspace's fan-out.
//
// It imports nothing of this module, and is not a public API.
package sock

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket is a hijacked connection, owned: nothing else may write to it or
// close it. Writes are frame-atomic: a frame that WriteNow could only
// partly write is finished by the next Write before anything else.
//
// All methods are safe for concurrent use.
type Socket struct {
	conn    net.Conn
	fd      int // the connection's descriptor, for WriteNow; -1 unless it is a *net.TCPConn
	timeout time.Duration

	// mu is held for every write and for the close: the last write
	// before the close completes before the descriptor goes.
	mu      sync.Mutex
	closed  bool
	pending []byte // what WriteNow left of its frame

	written atomic.Int64 // bytes written by either path; added to under mu
}

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("socket closed")

// Hijack takes w's connection over from net/http (see
// http.ResponseController.Hijack) and returns its Socket, the only handle
// on it from then on. Each blocking Write is bounded by timeout. Whatever
// the client sent after its request, still buffered by net/http, is
// dropped: a stream takes no input.
func Hijack(w http.ResponseWriter, timeout time.Duration) (*Socket, error) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	return Own(c, timeout), nil
}

// Own takes c over: from now on only the Socket writes to and closes it,
// and the caller must not use c again. Each blocking Write is bounded by
// timeout. Only a *net.TCPConn takes WriteNow: anything that merely wraps
// one (TLS, a PROXY-protocol listener) would have plaintext written
// underneath it.
func Own(c net.Conn, timeout time.Duration) *Socket {
	s := &Socket{conn: c, fd: -1, timeout: timeout}
	if tcp, ok := c.(*net.TCPConn); ok {
		if raw, err := tcp.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) { s.fd = int(fd) })
		}
	}
	return s
}

// Direct reports whether WriteNow can write (the connection is TCP).
func (s *Socket) Direct() bool { return s.fd >= 0 }

// WriteNow writes frame with one non-blocking write(2), never waiting for
// the lock, the socket's buffer or a deadline: it is called from the hub's
// fan-out, which must not block. taken reports that the frame was written,
// whole or in part; partial, that a remainder was kept, which the next
// Write sends first. Nothing is written (!taken) when the socket is busy
// (another write holds the lock), has a remainder pending, is full, is
// closed, or is not TCP.
func (s *Socket) WriteNow(frame []byte) (taken, partial bool) {
	if s.fd < 0 || !s.mu.TryLock() {
		return false, false
	}
	defer s.mu.Unlock()
	if s.closed || len(s.pending) > 0 {
		return false, false
	}
	// Open, under mu: s.fd is still this connection's (see the package
	// comment).
	n, err := rawWrite(s.fd, frame)
	if err != nil || n <= 0 {
		return false, false
	}
	s.written.Add(int64(n))
	if n < len(frame) {
		s.pending = append(s.pending, frame[n:]...)
		return true, true
	}
	return true, false
}

// Write writes what WriteNow left, then b, and blocks until both are
// written or the timeout passes. The deadline is set for this write and
// cleared after it, so an idle socket has no timer armed: one left to
// expire costs the runtime a wake-up per connection (5,000 of them, about
// 25 ms of CPU, 5 s after a burst of connects).
func (s *Socket) Write(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
		return err
	}
	var err error
	if len(s.pending) > 0 {
		// One writev(2), not a write each.
		bufs := net.Buffers{s.pending, b}
		var n int64
		n, err = bufs.WriteTo(s.conn)
		s.written.Add(n)
		s.pending = nil
	} else if len(b) > 0 {
		var n int
		n, err = s.conn.Write(b)
		s.written.Add(int64(n))
	}
	if err != nil {
		return err
	}
	return s.conn.SetWriteDeadline(time.Time{})
}

// Read reads from the connection (the stream's watcher of a client that
// leaves). It does not take the lock: reads never touch what writes do.
func (s *Socket) Read(p []byte) (int, error) { return s.conn.Read(p) }

// Written returns the bytes written to the connection so far, by either
// path. It never waits for a write in progress: the heartbeat sweeper
// reads it to tell a silent stream.
func (s *Socket) Written() int64 { return s.written.Load() }

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

// rawWrite is write(2) without the runtime's system-call bookkeeping
// (entersyscall and exitsyscall, and sysmon's watch over a thread inside
// one): a write to a non-blocking socket never blocks, which is what
// RawSyscall is for. unix.Write, which has that bookkeeping, cost a
// 5,000-stream fan-out 7 % more of the server's CPU per delivery than this
// (sseload (c) on Redis, 25 interleaved runs each: 21.0 against 19.6 CPU-s
// per million deliveries, the build before this package also 19.6),
// though a microbenchmark of one write apiece sees no difference. unsafe
// only passes the buffer's address to the call (which keeps the buffer
// alive for it); which descriptor is written is WriteNow's lock's
// business, not this function's. The race detector does not see the
// kernel read the buffer, as it would through unix.Write: frames are
// immutable once rendered.
func rawWrite(fd int, b []byte) (int, error) {
	for {
		r, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		switch errno {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		default:
			return 0, errno
		}
	}
}
