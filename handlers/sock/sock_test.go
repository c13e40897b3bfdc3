package sock_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/realtime-dev/realtime/handlers/sock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// listen returns a loopback TCP listener, closed when the test ends.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// pair returns the server side of a loopback TCP connection, and its
// client side.
func pair(t *testing.T, ln net.Listener) (server, client net.Conn) {
	t.Helper()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return server, client
}

func fd(t *testing.T, c net.Conn) uintptr {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n uintptr
	raw.Control(func(f uintptr) { n = f })
	return n
}

// The reviewer's scenario: a stream of workspace tenant-secret is closed
// early (a shutdown timeout, a read error) while the hub is still fanning
// out to it, and its descriptor is reused by another tenant's connection.
// Whatever order the close and the writes happen in, nothing of the first
// stream reaches the second connection.
func TestDescriptorReuseWritesNothingToTheNewConnection(t *testing.T) {
	ln := listen(t)
	secret := []byte("event: chat.message\ndata: {\"workspaceId\":\"tenant-secret\"}\n\n")
	reused := 0
	for round := range 200 {
		server, _ := pair(t, ln)
		old := fd(t, server)
		s := sock.Own(server, time.Second)
		if !s.Direct() {
			t.Fatal("a *net.TCPConn takes no direct writes")
		}
		// The fan-out keeps writing while the stream closes.
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					s.WriteNow(secret)
				}
			}
		})
		// Another tenant connects (its client side first, so that the
		// accept below is the next descriptor the process takes).
		otherClient, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if round%2 == 0 {
			time.Sleep(time.Duration(round%7) * 10 * time.Microsecond)
		}
		s.Close()
		// The kernel hands out the lowest free descriptor: most often
		// the one just closed.
		other, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { otherClient.Close(); other.Close() })
		if fd(t, other) == old {
			reused++
		}
		for range 100 {
			if taken, _ := s.WriteNow(secret); taken {
				t.Fatal("WriteNow took a frame after Close")
			}
		}
		close(stop)
		wg.Wait()
		if err := s.Write(secret); !errors.Is(err, sock.ErrClosed) {
			t.Fatalf("Write after Close: %v; want ErrClosed", err)
		}
		other.Close()
		got, _ := io.ReadAll(otherClient)
		if bytes.Contains(got, []byte("tenant-secret")) {
			t.Fatalf("round %d: the new connection received the closed stream's frame: %q", round, got)
		}
	}
	t.Logf("the closed stream's descriptor went to the new connection in %d of 200 rounds", reused)
	if reused < 50 {
		t.Fatalf("a descriptor was reused in only %d of 200 rounds: the test proves little here", reused)
	}
}

// A frame that the socket only partly takes is finished by the next
// Write before anything else, and WriteNow takes nothing meanwhile.
func TestPartialWriteIsFinishedFirst(t *testing.T) {
	ln := listen(t)
	server, client := pair(t, ln)
	server.(*net.TCPConn).SetWriteBuffer(4096)
	s := sock.Own(server, 5*time.Second)
	big := append(bytes.Repeat([]byte("x"), 1<<20), '\n')
	taken, partial := s.WriteNow(big)
	if !taken || !partial {
		t.Fatalf("WriteNow of 1 MiB on a small socket: taken %v, partial %v; want a partial write", taken, partial)
	}
	if taken, _ := s.WriteNow([]byte("next\n")); taken {
		t.Fatal("WriteNow took a frame while a remainder was pending")
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	if err := s.Write([]byte("after\n")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if want := append(big, "after\n"...); !bytes.Equal(<-got, want) {
		t.Fatal("the bytes on the wire are not the whole frame, then the next write")
	}
}

// Only a *net.TCPConn takes direct writes: a wrapper would have bytes
// written underneath it.
func TestOnlyTCPTakesDirectWrites(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	s := sock.Own(a, time.Second)
	defer s.Close()
	if s.Direct() {
		t.Fatal("a net.Pipe takes direct writes")
	}
	if taken, _ := s.WriteNow([]byte("x")); taken {
		t.Fatal("WriteNow wrote to a connection that is not TCP")
	}
	type wrapped struct{ net.Conn }
	ln := listen(t)
	server, _ := pair(t, ln)
	w := sock.Own(wrapped{server}, time.Second)
	defer w.Close()
	if w.Direct() {
		t.Fatal("a wrapper around a *net.TCPConn takes direct writes")
	}
}

// deadlines records the write deadlines set on a connection.
type deadlines struct {
	net.Conn
	set []time.Time
}

func (d *deadlines) SetWriteDeadline(t time.Time) error {
	d.set = append(d.set, t)
	return d.Conn.SetWriteDeadline(t)
}

// A blocking Write is bounded by the timeout, and leaves no deadline armed
// behind it: on an idle socket an armed one would expire, a runtime timer
// firing for every connection the server holds.
func TestWriteLeavesNoDeadlineArmed(t *testing.T) {
	ln := listen(t)
	server, client := pair(t, ln)
	d := &deadlines{Conn: server}
	s := sock.Own(d, time.Second)
	defer s.Close()
	for i := range 3 {
		before := time.Now()
		if err := s.Write([]byte("data: x\n\n")); err != nil {
			t.Fatal(err)
		}
		if len(d.set) != 2*(i+1) {
			t.Fatalf("write %d: %d deadlines set in all, want 2 per write", i, len(d.set))
		}
		bound, cleared := d.set[2*i], d.set[2*i+1]
		if bound.Before(before.Add(time.Second)) {
			t.Fatalf("write %d ran under a deadline %v, before its full timeout", i, bound.Sub(before))
		}
		if !cleared.IsZero() {
			t.Fatalf("write %d left a deadline armed: %v", i, cleared)
		}
	}
	want := strings.Repeat("data: x\n\n", 3)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("on the wire %q, want %q", got, want)
	}
}
