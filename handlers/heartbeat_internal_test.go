package handlers

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/handlers/sock"
	"github.com/realtime-dev/realtime/stream"
	"github.com/realtime-dev/realtime/stream/streamtest"
)

// The sweeper tells a silent stream by its socket's byte count, since the
// fan-out's direct writes stamp no clock: a stream the fan-out has just
// written to gets no heartbeat until three quarters of an interval after
// the sweep that saw the write, then one, and that heartbeat counts as a
// write in turn. The sweeps are given their times, so nothing here waits
// on the clock.
func TestSweeperBeatsOnlyAfterSilence(t *testing.T) {
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
	log := stream.NewMemory(stream.MemoryConfig{})
	defer log.Close()
	s := sock.Own(server, 5*time.Second)
	tail := stream.NewTail(log, "ws1", stream.ID{}, true, stream.TailConfig{Queue: 16})
	ctx, cancel := context.WithCancel(t.Context())
	if _, err := tail.Next(ctx, nil); err != nil {
		t.Fatal(err)
	}
	tail.SetDirect(s)
	var wg sync.WaitGroup
	// The stream's goroutine, parked in Next while the fan-out and the
	// sweeper write.
	wg.Go(func() { pump(ctx, tail, s) })
	received := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		received <- b
	}()
	for !tail.Ping([]byte(": parked\n\n")) { // until the reader has armed the subscription
		runtime.Gosched()
	}

	const every = 4 * time.Second
	h := newHeartbeats(every)
	t0 := time.Now()
	st := &sseStream{tail: tail, out: s, sock: s, seenAt: t0, seenWritten: s.Written()}
	h.streams[st] = struct{}{}
	sweep := func(at time.Duration, wantBeat bool) {
		t.Helper()
		before := s.Written()
		h.sweep(t0.Add(at), nil)
		got := s.Written() - before
		switch {
		case wantBeat && got != int64(len(heartbeatFrame)):
			t.Fatalf("sweep at %v wrote %d bytes; want a heartbeat (%d)", at, got, len(heartbeatFrame))
		case !wantBeat && got != 0:
			t.Fatalf("sweep at %v wrote %d bytes; want none", at, got)
		}
	}
	sweep(time.Second, false)
	before := s.Written()
	if _, err := log.Append(ctx, streamtest.Ev("ws1", "chat.message", 1)); err != nil {
		t.Fatal(err)
	}
	if s.Written() == before {
		t.Fatal("the event was not written straight to the socket")
	}
	sweep(2*time.Second, false)                // sees the write
	sweep(4*time.Second+time.Second/2, false)  // 2.5s after it was seen
	sweep(5*time.Second+time.Second/4, true)   // 3.25s: silent
	sweep(5*time.Second+time.Second/2, false)  // the heartbeat was a write
	sweep(8*time.Second+3*time.Second/4, true) // 3.25s after the heartbeat was seen

	cancel()
	wg.Wait()
	got := <-received
	if n := bytes.Count(got, []byte("event: heartbeat\n")); n != 2 {
		t.Fatalf("the client read %d heartbeats; want 2:\n%s", n, got)
	}
	if !bytes.Contains(got, []byte("event: chat.message\n")) {
		t.Fatalf("the client missed the event:\n%s", got)
	}
}

// pump is what sseStream.run does per batch, without the rest: it writes
// tail's batches to out until ctx ends or a write fails, then closes both.
func pump(ctx context.Context, tail *stream.Tail, out *sock.Socket) {
	defer out.Close()
	defer tail.Close()
	var pos stream.ID
	buf := make([]byte, 0, 4096)
	for {
		b, err := tail.Next(ctx, nil)
		if err != nil {
			return
		}
		if !b.Written.IsZero() {
			pos = b.Written
		}
		buf = appendBatch(buf[:0], b, &pos)
		if err := out.Write(buf); err != nil {
			return
		}
	}
}
