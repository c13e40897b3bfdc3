package streamtest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/stream"
)

// connWriter is a stream.DirectWriter that writes each frame to a real
// loopback TCP connection, whose far end discards what it reads: a direct
// write costs what it costs a node (a write(2) of a few hundred bytes).
type connWriter struct{ c net.Conn }

func (w connWriter) WriteNow(frame []byte) (taken, partial bool) {
	n, err := w.c.Write(frame)
	return n > 0 && err == nil, false
}

// BenchCrossWorkspace is the shape of the probe that found tenants waiting
// for each other: a workspace of 1,000 subscribers armed for direct writes
// (each a write(2) to a loopback socket) takes an event every 10 ms, while
// another workspace's publish (until acknowledged), head read and
// delivery to its one subscriber are timed. It reports their median, p99
// and worst, in microseconds: on a log where no lock shared between
// workspaces is held during fan-out they stay near what they cost on an
// idle log, instead of queueing behind the big workspace's thousand
// writes per event.
func BenchCrossWorkspace(b *testing.B, l stream.Log) {
	const bigSubs = 1000
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range bigSubs {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		defer s.Close()
		wg.Go(func() { io.Copy(io.Discard, c) })
		tail := stream.NewTail(l, "big", stream.ID{}, true, stream.TailConfig{Queue: 1 << 14})
		tail.SetDirect(connWriter{s})
		if _, err := tail.Next(ctx, nil); err != nil {
			b.Fatal(err)
		}
		// The reader: parked, armed, woken only when a write is refused.
		wg.Go(func() {
			defer tail.Close()
			for {
				if _, err := tail.Next(ctx, nil); err != nil {
					return
				}
			}
		})
	}
	small := l.Subscribe("small", stream.Filter{}, 1<<14)
	defer small.Close()
	body := json.RawMessage(`{"id":"a1","title":"Deploy to production","status":"pending","pad":"` + strings.Repeat("x", 120) + `"}`)
	ev := func(ws string) *stream.Event {
		return &stream.Event{Type: "approval.created", WorkspaceID: ws, CorrelationID: "c", Timestamp: time.Now(), Data: body}
	}
	// The big workspace's publisher: an event every 10 ms, half of what
	// its thousand writes take on one core, so the fan-out keeps up.
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if _, err := l.Append(ctx, ev("big")); err != nil && ctx.Err() == nil {
				b.Error(err)
				return
			}
		}
	})
	time.Sleep(100 * time.Millisecond) // the big workspace is busy
	var pub, head, deliver []time.Duration
	for b.Loop() {
		t0 := time.Now()
		e, err := l.Append(ctx, ev("small"))
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := l.Head(ctx, "small"); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		for got := false; !got; {
			d, ok, open := small.Pop()
			switch {
			case ok && d.Kind == stream.KindEvent && d.Event.ID == e.ID:
				got = true
			case !ok && !open:
				b.Fatalf("small subscriber closed: %v", small.Err())
			case !ok:
				<-small.Ready()
			}
		}
		deliver = append(deliver, time.Since(t0))
		pub, head = append(pub, t1.Sub(t0)), append(head, t2.Sub(t1))
	}
	b.StopTimer()
	report := func(name string, ds []time.Duration) {
		slices.Sort(ds)
		q := func(p float64) float64 { return float64(ds[int(p*float64(len(ds)-1))].Nanoseconds()) / 1e3 }
		b.ReportMetric(q(0.5), name+"-p50-µs")
		b.ReportMetric(q(0.99), name+"-p99-µs")
		b.ReportMetric(q(1), name+"-max-µs")
	}
	report("publish", pub)
	report("head", head)
	report("deliver", deliver)
}
