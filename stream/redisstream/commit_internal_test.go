package redisstream

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/realtime-dev/realtime/stream"
	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

// roundTrips counts what the client sends: single commands and pipelines.
type roundTrips struct {
	mu        sync.Mutex
	singles   int
	pipelines []int // commands in each
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n == "evalsha" || n == "eval" {
			h.mu.Lock()
			h.singles++
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		h.pipelines = append(h.pipelines, len(cmds))
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

// Appends made while a round trip is in flight go to Redis together, in
// the order they were queued, each answered with its own id; and an
// append whose caller gives up before it is sent is never made.
func TestConcurrentAppendsShareARoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	l, err := New(t.Context(), Config{URL: srv.URL(), Prefix: "gc"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ev := func(ws, id string) *stream.Event {
		return &stream.Event{Type: "approval.created", WorkspaceID: ws, CorrelationID: id, Timestamp: time.Now(), Data: []byte(`{"id":"` + id + `"}`)}
	}
	// Redis learns the script (EVALSHA, NOSCRIPT, EVAL) before counting.
	if _, err := l.Append(t.Context(), ev("w1", "warm")); err != nil {
		t.Fatal(err)
	}
	hook := &roundTrips{}
	l.rdb.AddHook(hook)
	// Redis stops: the first append leads and waits on it; the next ones
	// queue behind it.
	srv.Pause()
	first := make(chan error, 1)
	go func() {
		_, err := l.Append(t.Context(), ev("w0", "lead"))
		first <- err
	}()
	waitQueued := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			l.commit.mu.Lock()
			q, busy := len(l.commit.queue), l.commit.busy
			l.commit.mu.Unlock()
			if busy && q == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d appends queued; want %d", q, n)
			}
		}
	}
	waitQueued(0)
	// One that gives up while queued is withdrawn.
	gaveUp, cancel := context.WithCancel(t.Context())
	withdrawn := make(chan error, 1)
	go func() {
		_, err := l.Append(gaveUp, ev("w0", "withdrawn"))
		withdrawn <- err
	}()
	waitQueued(1)
	cancel()
	if err := <-withdrawn; err == nil {
		t.Fatal("an append whose context ended while queued succeeded")
	}
	waitQueued(0)

	const n = 40
	type result struct {
		i  int
		id stream.ID
		e  error
	}
	results := make(chan result, n)
	for i := range n {
		// Queued one by one, so the queue's order is i's.
		go func() {
			e, err := l.Append(t.Context(), ev(fmt.Sprintf("w%d", i%2), fmt.Sprint(i)))
			if err != nil {
				results <- result{i: i, e: err}
				return
			}
			results <- result{i: i, id: e.ID}
		}()
		waitQueued(i + 1)
	}
	srv.Resume()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	ids := make([]stream.ID, n)
	for range n {
		r := <-results
		if r.e != nil {
			t.Fatal(r.e)
		}
		ids[r.i] = r.id
	}
	// Queue order is log order within each workspace.
	if ids[0].Seq != 2 || ids[1].Seq != 2 {
		t.Fatalf("first queued appends got seqs %d and %d; want 2 (after lead) and 2 (after warm)", ids[0].Seq, ids[1].Seq)
	}
	for i := 2; i < n; i++ {
		if ids[i].Seq != ids[i-2].Seq+1 {
			t.Fatalf("append %d got seq %d; append %d, queued just before it in its workspace, got %d", i, ids[i].Seq, i-2, ids[i-2].Seq)
		}
	}
	hook.mu.Lock()
	singles, pipelines := hook.singles, hook.pipelines
	hook.mu.Unlock()
	if singles != 1 || len(pipelines) != 1 || pipelines[0] != n {
		t.Fatalf("round trips: %d single scripts and pipelines of %v; want the leader's one script, then one pipeline of %d", singles, pipelines, n)
	}
	page, err := l.Read(t.Context(), "w0", stream.ID{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Events {
		if e.CorrelationID == "withdrawn" {
			t.Fatal("the withdrawn append is in the log")
		}
	}
	if len(page.Events) != 1+n/2 {
		t.Fatalf("w0 holds %d events; want %d", len(page.Events), 1+n/2)
	}
}
