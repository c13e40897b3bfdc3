package handlers

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/stream"
)

// A direct write that the socket takes only in part keeps the rest, takes
// no further direct write until the stream's goroutine has sent it, and the
// goroutine's next write sends that rest before its own bytes: the client
// reads every byte once, in order. Over a real loopback socket with a small
// send buffer and a client that reads nothing at first, so that a large
// frame cannot go out whole.
func TestDirectWriteRemainderGoesFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server.(*net.TCPConn).SetWriteBuffer(4096)
	w := newConnWriter(server, 5*time.Second)
	if w.direct() == nil {
		t.Fatal("a TCP connection takes no direct writes")
	}

	big := &stream.Event{ID: stream.ID{Epoch: 1, Seq: 1}, Type: "chat.message", WorkspaceID: "ws1",
		Data: json.RawMessage(`{"pad":"` + strings.Repeat("x", 1<<20) + `"}`)}
	next := &stream.Event{ID: stream.ID{Epoch: 1, Seq: 2}, Type: "chat.message", WorkspaceID: "ws1", Data: json.RawMessage(`{}`)}
	taken, partial := w.WriteNow(big.ID, big.Frame())
	if !taken || !partial {
		t.Fatalf("WriteNow of a 1 MiB frame on a small socket: taken %v, partial %v; want a partial write", taken, partial)
	}
	if taken, _ := w.WriteNow(next.ID, next.Frame()); taken {
		t.Fatal("WriteNow took a frame while a remainder was pending")
	}

	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	if err := w.write(next.Frame()); err != nil {
		t.Fatal(err)
	}
	if len(w.pending) != 0 {
		t.Fatalf("%d bytes still pending after write", len(w.pending))
	}
	server.Close()
	want := append(append([]byte(nil), big.Frame()...), next.Frame()...)
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("client read %d bytes, want %d: the remainder and the next frame, in order", len(b), len(want))
	}
}
