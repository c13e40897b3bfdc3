package redisstream_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/stream"
	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
	"github.com/realtime-dev/realtime/stream/streamtest"
)

func BenchmarkRedisAppend(b *testing.B) {
	srv := redistest.Start(b)
	l, err := newLog(b, srv)
	if err != nil {
		b.Fatal(err)
	}
	data := json.RawMessage(`{"id":"a1","title":"Deploy to production","status":"pending"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Append(b.Context(), &stream.Event{Type: "approval.created", WorkspaceID: "ws1", CorrelationID: "c", Timestamp: time.Now(), Data: data}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedisRead100(b *testing.B) {
	srv := redistest.Start(b)
	l, err := newLog(b, srv)
	if err != nil {
		b.Fatal(err)
	}
	for range 1000 {
		l.Append(b.Context(), &stream.Event{Type: "approval.created", WorkspaceID: "ws1", Data: json.RawMessage(`{"id":"a"}`)})
	}
	head, _ := l.Head(b.Context(), "ws1")
	from := stream.ID{Epoch: head.Epoch, Seq: 500}
	b.ReportAllocs()
	for b.Loop() {
		if p, err := l.Read(b.Context(), "ws1", from, 100); err != nil || len(p.Events) != 100 {
			b.Fatal(err)
		}
	}
}

// BenchmarkCrossWorkspace: see streamtest.BenchCrossWorkspace.
func BenchmarkCrossWorkspace(b *testing.B) {
	srv := redistest.Start(b)
	l, err := newLog(b, srv)
	if err != nil {
		b.Fatal(err)
	}
	streamtest.BenchCrossWorkspace(b, l)
}
