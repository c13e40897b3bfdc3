package handlers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/handlers/sock"
	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

// BenchmarkAppendBatch is what a stream's goroutine does per queued
// delivery besides the write itself: copying the event's frame (rendered
// once per event, BenchmarkEventJSON) into its write buffer. A direct
// delivery writes the frame as it is.
func BenchmarkAppendBatch(b *testing.B) {
	e := &stream.Event{ID: stream.ID{Epoch: 1795657302783000, Seq: 42}, Type: "approval.created", WorkspaceID: "ws1",
		CorrelationID: "4c1f", Timestamp: time.Now(), Data: json.RawMessage(`{"id":"a1","title":"Deploy to production","status":"pending"}`)}
	e.Frame() // rendered once per event, shared by every stream
	batch := stream.Batch{Events: []*stream.Event{e}, Position: e.ID}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		pos := stream.ID{}
		buf = appendBatch(buf[:0], batch, &pos)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkPublish is one publish request through the whole router
// (auth, body, schema validation, idempotency-free append, response) on
// the embedded log, without the network: the per-event cost that a
// node pays once however many subscribers the event has.
func BenchmarkPublish(b *testing.B) {
	secret := []byte("bench-secret-bench-secret-bench-secret-0123")
	v, err := appmw.NewVerifier(appmw.AuthConfig{Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	log := stream.NewMemory(stream.MemoryConfig{})
	defer log.Close()
	pres := stream.NewPresenceTracker(log, log, stream.PresenceConfig{})
	defer pres.Close()
	h := New(slog.New(slog.DiscardHandler), Config{}, log, pres, log, v, b.Context())
	tok, err := appmw.IssueToken(secret, appmw.TokenSpec{Subject: "pub", Workspaces: []string{"*"}, Scopes: []string{"events:publish"}, TTL: time.Hour}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	body := `{"type":"approval.created","data":{"id":"sl-1","sl_seq":1,"sl_ts":1795657302783000,"pad":"` + strings.Repeat("x", 150) + `"}}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/workspaces/ws1/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusCreated {
			b.Fatalf("publish: %d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkDeliver is one event delivered to each of 100 live streams over
// loopback TCP, on the embedded log: "direct" is the hub's fan-out writing
// each frame to the socket itself (stream.DirectWriter), "queued" hands
// each frame to the stream's goroutine, which wakes and writes it, as every
// stream did before direct writes. One event is in flight at a time.
// ns/delivery is wall time, cpu-ns/delivery the process's CPU time; both
// include the readers (in this process, the same for both), so read the
// difference.
func BenchmarkDeliver(b *testing.B) {
	for _, direct := range []bool{true, false} {
		name := "queued"
		if direct {
			name = "direct"
		}
		b.Run(name, func(b *testing.B) { benchDeliver(b, 100, direct) })
	}
}

func benchDeliver(b *testing.B, n int, direct bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	log := stream.NewMemory(stream.MemoryConfig{})
	defer log.Close()
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	var frames atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		// The client: counts the frames it reads.
		wg.Go(func() {
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				if bytes.HasPrefix(sc.Bytes(), []byte("id: ")) {
					frames.Add(1)
				}
			}
		})
		out := sock.Own(s, 5*time.Second)
		tail := stream.NewTail(log, "ws1", stream.ID{}, true, stream.TailConfig{Queue: 1 << 16})
		if _, err := tail.Next(ctx, nil); err != nil {
			b.Fatal(err)
		}
		if direct {
			tail.SetDirect(out)
		}
		// The stream: what sseStream.run does per batch.
		wg.Go(func() { pump(ctx, tail, out) })
	}
	body := json.RawMessage(`{"id":"a1","title":"Deploy to production","status":"pending","pad":"` + strings.Repeat("x", 150) + `"}`)
	b.ReportAllocs()
	events := 0
	cpu0 := processCPU()
	for b.Loop() {
		if _, err := log.Append(ctx, &stream.Event{Type: "approval.created", WorkspaceID: "ws1", CorrelationID: "c", Timestamp: time.Now(), Data: body}); err != nil {
			b.Fatal(err)
		}
		events++
		for frames.Load() < int64((events-1)*n) { // at most one event in flight
			runtime.Gosched()
		}
	}
	for frames.Load() < int64(events*n) {
		runtime.Gosched()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events*n), "ns/delivery")
	b.ReportMetric(float64(processCPU()-cpu0)/float64(events*n), "cpu-ns/delivery")
	cancel()
}

// processCPU is the user and system time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
