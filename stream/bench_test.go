package stream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/stream"
	"github.com/realtime-dev/realtime/stream/streamtest"
)

func BenchmarkParseID(b *testing.B) {
	id := stream.ID{Epoch: 1795657302783000, Seq: 123456}.String()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := stream.ParseID(id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIDAppendText(b *testing.B) {
	id := stream.ID{Epoch: 1795657302783000, Seq: 123456}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = id.AppendText(buf[:0])
	}
}

// The envelope and the SSE frame around it are rendered once per event,
// whatever its audience: this is that once.
func BenchmarkEventJSON(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		e := &stream.Event{ID: stream.ID{Epoch: 1, Seq: 2}, Type: "approval.created", WorkspaceID: "ws1", CorrelationID: "c",
			Timestamp: time.Now(), Data: json.RawMessage(`{"id":"a1","title":"Deploy to production","status":"pending"}`)}
		if len(e.JSON()) == 0 {
			b.Fatal("empty")
		}
	}
}

// BenchmarkHubFanOut publishes one event to a workspace with n subscribers
// whose readers drain their queues, and waits until they all have it: the
// per-delivery cost of the hub's queue path, readers included. (A
// workspace of 1,024 or more subscribers fans out on a worker, so Publish
// alone would only measure handing it the event.)
func BenchmarkHubFanOut(b *testing.B) {
	for _, n := range []int{1, 100, 5000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			hub := stream.NewHub(stream.HubConfig{})
			var wg sync.WaitGroup
			var got atomic.Int64
			subs := make([]*stream.Subscription, n)
			for i := range subs {
				subs[i] = hub.Subscribe("ws1", stream.Filter{}, 1024)
				wg.Go(func() {
					for range subs[i].Ready() {
						for {
							_, ok, open := subs[i].Pop()
							if !open {
								return
							}
							if !ok {
								break
							}
							got.Add(1)
						}
					}
				})
			}
			b.ReportAllocs()
			seq := uint64(0)
			for b.Loop() {
				seq++
				hub.Publish(&stream.Event{ID: stream.ID{Epoch: 1, Seq: seq}, Type: "chat.message", WorkspaceID: "ws1", Data: json.RawMessage(`{}`)})
				for got.Load() < int64(seq)*int64(n) { // one event in flight
					runtime.Gosched()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int(seq)*n), "ns/delivery")
			hub.Close()
			wg.Wait()
		})
	}
}

func BenchmarkMemoryAppend(b *testing.B) {
	l := stream.NewMemory(stream.MemoryConfig{})
	defer l.Close()
	data := json.RawMessage(`{"id":"a1","title":"Deploy to production","status":"pending"}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Append(ctx, &stream.Event{Type: "approval.created", WorkspaceID: "ws1", CorrelationID: "c", Timestamp: time.Now(), Data: data}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMemoryRead100(b *testing.B) {
	l := stream.NewMemory(stream.MemoryConfig{})
	defer l.Close()
	ctx := context.Background()
	for range 1000 {
		l.Append(ctx, &stream.Event{Type: "approval.created", WorkspaceID: "ws1", Data: json.RawMessage(`{"id":"a"}`)})
	}
	head, _ := l.Head(ctx, "ws1")
	from := stream.ID{Epoch: head.Epoch, Seq: 500}
	b.ReportAllocs()
	for b.Loop() {
		if p, err := l.Read(ctx, "ws1", from, 100); err != nil || len(p.Events) != 100 {
			b.Fatal(err)
		}
	}
}

// BenchmarkCrossWorkspace: see streamtest.BenchCrossWorkspace.
func BenchmarkCrossWorkspace(b *testing.B) {
	l := stream.NewMemory(stream.MemoryConfig{})
	defer l.Close()
	streamtest.BenchCrossWorkspace(b, l)
}
