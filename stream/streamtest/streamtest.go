// Package streamtest is the conformance suite every stream.Log
// implementation runs: stream.Memory in stream's tests, redisstream.Log
// against a real redis-server in its own. It is test support, not a public
// API.
package streamtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/realtime-dev/realtime/stream"
)

// Features declares the real differences between implementations.
type Features struct {
	// ExactRetention: the log keeps exactly Retention events. Redis trims
	// with MAXLEN ~, which keeps at least that many.
	ExactRetention bool
}

// Harness builds logs for the suite.
type Harness struct {
	Features Features
	// New returns a fresh, empty log keeping retention events per
	// workspace. The harness closes it in t.Cleanup.
	New func(t *testing.T, retention int) stream.Log
	// LoseHistory makes the store behind l forget everything, the way a
	// restart of the embedded log, a FLUSHALL or a Redis restart without
	// persistence does, and returns the log to use from then on (which may
	// be l itself).
	LoseHistory func(t *testing.T, l stream.Log) stream.Log
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"AppendAssignsContiguousIDs", testAppendIDs},
		{"RoundTripEnvelope", testRoundTrip},
		{"ReadAfterCursor", testReadAfter},
		{"EmptyWorkspace", testEmptyWorkspace},
		{"WorkspaceIsolation", testIsolation},
		{"RetentionAndExpiry", testRetention},
		{"CursorAheadOrOtherEpoch", testForeignCursor},
		{"LostHistory", testLostHistory},
		{"SubscribeFilters", testSubscribeFilters},
		{"SlowSubscriberDropped", testSlowSubscriber},
		{"ConcurrentAppends", testConcurrentAppends},
		{"TailExactlyOnceUnderConcurrency", testTailConcurrent},
		{"TailDirectWritesExactlyOnce", testTailDirect},
		{"TailDirectWritesLargeWorkspace", testTailDirectLarge},
		{"TailResetsOnLostHistory", testTailReset},
		{"BroadcastIsEphemeral", testBroadcast},
		{"AppendOnce", testAppendOnce},
		{"AppendOnceConcurrent", testAppendOnceConcurrent},
		{"AppendBatch", testAppendBatch},
		{"AppendBatchOnce", testAppendBatchOnce},
		{"AppendBatchConcurrent", testAppendBatchConcurrent},
		{"CloseEndsSubscriptions", testClose},
		{"CancelledContext", testCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

// Ev builds a valid event for workspace ws.
func Ev(ws, typ string, n int) *stream.Event {
	return &stream.Event{
		Type: typ, WorkspaceID: ws, CorrelationID: fmt.Sprintf("c-%d", n),
		Timestamp: time.Date(2026, 11, 26, 0, 0, 0, n, time.UTC),
		Data:      json.RawMessage(fmt.Sprintf(`{"id":"x-%d","n":%d}`, n, n)),
	}
}

func appendN(t *testing.T, l stream.Log, ws string, n int) []*stream.Event {
	t.Helper()
	out := make([]*stream.Event, 0, n)
	for i := range n {
		e, err := l.Append(t.Context(), Ev(ws, "chat.message", i))
		if err != nil {
			t.Fatalf("Append(%s, #%d): %v", ws, i, err)
		}
		out = append(out, e)
	}
	return out
}

func ids(es []*stream.Event) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.ID.String())
	}
	return out
}

// readAll pages through ws after cursor until a page reaches the head.
func readAll(t *testing.T, l stream.Log, ws string, after stream.ID, limit int) []*stream.Event {
	t.Helper()
	var out []*stream.Event
	for {
		p, err := l.Read(t.Context(), ws, after, limit)
		if err != nil {
			t.Fatalf("Read(%s, %s, %d): %v", ws, after, limit, err)
		}
		out = append(out, p.Events...)
		after = p.Last(after)
		if after.IsZero() || after == p.Head {
			return out
		}
	}
}

func testAppendIDs(t *testing.T, h Harness) {
	l := h.New(t, 100)
	es := appendN(t, l, "ws1", 5)
	for i, e := range es {
		if e.ID.Epoch != es[0].ID.Epoch || e.ID.Seq != uint64(i+1) {
			t.Fatalf("event %d has id %s (epoch %d seq %d); want epoch %d seq %d", i, e.ID, e.ID.Epoch, e.ID.Seq, es[0].ID.Epoch, i+1)
		}
	}
	head, err := l.Head(t.Context(), "ws1")
	if err != nil || head != es[4].ID {
		t.Fatalf("Head = %s, %v; want %s", head, err, es[4].ID)
	}
}

func testRoundTrip(t *testing.T, h Harness) {
	l := h.New(t, 100)
	in := &stream.Event{
		Type: "notification.new", WorkspaceID: "ws1", TargetUserID: "u1", CorrelationID: "corr-1",
		Source: "billing", Timestamp: time.Date(2026, 11, 26, 1, 2, 3, 4000, time.UTC),
		Data: json.RawMessage(`{"id":"n1","text":"héllo \u2028 \"q\""}`),
	}
	got, err := l.Append(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Read(t.Context(), "ws1", stream.ID{}, 10)
	if err != nil || len(p.Events) != 1 {
		t.Fatalf("Read = %d events, %v; want 1", len(p.Events), err)
	}
	if string(p.Events[0].JSON()) != string(got.JSON()) {
		t.Fatalf("read back\n%s\nwant\n%s", p.Events[0].JSON(), got.JSON())
	}
	var env map[string]any
	if err := json.Unmarshal(p.Events[0].JSON(), &env); err != nil {
		t.Fatalf("envelope is not JSON: %v: %s", err, p.Events[0].JSON())
	}
	want := map[string]any{
		"id": got.ID.String(), "type": "notification.new", "workspaceId": "ws1", "targetUserId": "u1",
		"correlationId": "corr-1", "source": "billing", "timestamp": "2026-11-26T01:02:03.000004Z",
		"data": map[string]any{"id": "n1", "text": "héllo \u2028 \"q\""},
	}
	if d := cmp.Diff(want, env); d != "" {
		t.Fatalf("envelope (-want +got):\n%s", d)
	}
}

func testReadAfter(t *testing.T, h Harness) {
	l := h.New(t, 100)
	es := appendN(t, l, "ws1", 10)
	for _, limit := range []int{1, 3, 10, 50} {
		if d := cmp.Diff(ids(es), ids(readAll(t, l, "ws1", stream.ID{}, limit))); d != "" {
			t.Errorf("read all with limit %d (-want +got):\n%s", limit, d)
		}
	}
	for i := range es {
		p, err := l.Read(t.Context(), "ws1", es[i].ID, 100)
		if err != nil {
			t.Fatalf("Read after %s: %v", es[i].ID, err)
		}
		if d := cmp.Diff(ids(es[i+1:]), ids(p.Events)); d != "" {
			t.Errorf("Read after %s (-want +got):\n%s", es[i].ID, d)
		}
		if p.Head != es[9].ID {
			t.Errorf("Read after %s: head %s, want %s", es[i].ID, p.Head, es[9].ID)
		}
	}
}

func testEmptyWorkspace(t *testing.T, h Harness) {
	l := h.New(t, 100)
	head, err := l.Head(t.Context(), "empty")
	if err != nil || head.Seq != 0 || head.Epoch == 0 {
		t.Fatalf("Head(empty) = %+v, %v; want seq 0 of a real epoch", head, err)
	}
	for _, after := range []stream.ID{{}, head} {
		p, err := l.Read(t.Context(), "empty", after, 10)
		if err != nil || len(p.Events) != 0 || p.Head != head {
			t.Fatalf("Read(empty, %s) = %d events, head %s, %v; want none, head %s", after, len(p.Events), p.Head, err, head)
		}
	}
	e, err := l.Append(t.Context(), Ev("empty", "chat.message", 1))
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Read(t.Context(), "empty", head, 10)
	if err != nil || len(p.Events) != 1 || p.Events[0].ID != e.ID {
		t.Fatalf("Read after the empty head = %v, %v; want [%s]", ids(p.Events), err, e.ID)
	}
}

func testIsolation(t *testing.T, h Harness) {
	l := h.New(t, 100)
	a := appendN(t, l, "wsA", 3)
	b := appendN(t, l, "wsB", 2)
	if got := readAll(t, l, "wsA", stream.ID{}, 10); len(got) != 3 || got[2].ID != a[2].ID {
		t.Errorf("wsA holds %v; want %v", ids(got), ids(a))
	}
	if got := readAll(t, l, "wsB", stream.ID{}, 10); len(got) != 2 || got[1].ID != b[1].ID {
		t.Errorf("wsB holds %v; want %v", ids(got), ids(b))
	}
}

func testRetention(t *testing.T, h Harness) {
	const retention = 10
	l := h.New(t, retention)
	es := appendN(t, l, "ws1", 400)
	kept := readAll(t, l, "ws1", stream.ID{}, 1000)
	if h.Features.ExactRetention && len(kept) != retention {
		t.Fatalf("kept %d events; want exactly %d", len(kept), retention)
	}
	if len(kept) < retention || len(kept) >= len(es) {
		t.Fatalf("kept %d of %d events; want at least %d and fewer than all", len(kept), len(es), retention)
	}
	first := kept[0].ID
	if kept[len(kept)-1].ID != es[len(es)-1].ID {
		t.Fatalf("newest kept %s; want %s", kept[len(kept)-1].ID, es[len(es)-1].ID)
	}
	// The cursor of the last trimmed event lost nothing.
	lastTrimmed := stream.ID{Epoch: first.Epoch, Seq: first.Seq - 1}
	p, err := l.Read(t.Context(), "ws1", lastTrimmed, 1000)
	if err != nil || len(p.Events) != len(kept) {
		t.Fatalf("Read after the last trimmed event %s = %d events, %v; want %d", lastTrimmed, len(p.Events), err, len(kept))
	}
	// One before it lost an event.
	lost := stream.ID{Epoch: first.Epoch, Seq: first.Seq - 2}
	_, err = l.Read(t.Context(), "ws1", lost, 1000)
	var exp *stream.ExpiredError
	if !errors.As(err, &exp) || !errors.Is(err, stream.ErrCursorExpired) {
		t.Fatalf("Read after trimmed %s: %v; want an ExpiredError", lost, err)
	}
	if exp.Head != es[len(es)-1].ID {
		t.Fatalf("expired head %s; want %s", exp.Head, es[len(es)-1].ID)
	}
}

func testForeignCursor(t *testing.T, h Harness) {
	l := h.New(t, 100)
	es := appendN(t, l, "ws1", 3)
	head := es[2].ID
	for _, c := range []stream.ID{
		{Epoch: head.Epoch, Seq: head.Seq + 1},
		{Epoch: head.Epoch + 1, Seq: 1},
		{Epoch: head.Epoch - 1, Seq: 2},
	} {
		_, err := l.Read(t.Context(), "ws1", c, 10)
		var exp *stream.ExpiredError
		if !errors.As(err, &exp) || exp.Head != head {
			t.Errorf("Read after %s: %v; want expired with head %s", c, err, head)
		}
	}
}

func testLostHistory(t *testing.T, h Harness) {
	l := h.New(t, 100)
	es := appendN(t, l, "ws1", 3)
	l = h.LoseHistory(t, l)
	// The workspace is quiet after the loss: the old cursor must still be
	// recognised as lost, not as "nothing new".
	_, err := l.Read(t.Context(), "ws1", es[2].ID, 10)
	var exp *stream.ExpiredError
	if !errors.As(err, &exp) {
		t.Fatalf("Read after %s once history was lost: %v; want expired", es[2].ID, err)
	}
	if exp.Head.Epoch == es[2].ID.Epoch {
		t.Fatalf("new head %s has the old epoch", exp.Head)
	}
	// New events get new-epoch ids; the old cursor stays expired even
	// though its seq is now behind the head.
	again := appendN(t, l, "ws1", 5)
	if again[0].ID.Epoch == es[0].ID.Epoch || again[0].ID.Seq != 1 {
		t.Fatalf("first id after the loss %s; want seq 1 of a new epoch", again[0].ID)
	}
	if _, err := l.Read(t.Context(), "ws1", es[1].ID, 10); !errors.Is(err, stream.ErrCursorExpired) {
		t.Fatalf("Read after old %s: %v; want expired", es[1].ID, err)
	}
	p, err := l.Read(t.Context(), "ws1", exp.Head, 10)
	if err != nil || len(p.Events) != 5 {
		t.Fatalf("Read after the reset head %s = %v, %v; want the 5 new events", exp.Head, ids(p.Events), err)
	}
}

// recv waits for the next delivery; a generous bound only keeps a broken
// implementation from hanging the run.
func recv(t *testing.T, s *stream.Subscription) (stream.Delivery, bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if d, ok, open := s.Pop(); ok || !open {
			return d, ok
		}
		select {
		case <-s.Ready():
		case <-deadline:
			t.Fatal("no delivery within 30s")
			return stream.Delivery{}, false
		}
	}
}

func testSubscribeFilters(t *testing.T, h Harness) {
	l := h.New(t, 100)
	types, err := stream.ParseTypes("approval.*,chat.message")
	if err != nil {
		t.Fatal(err)
	}
	sub := l.Subscribe("ws1", stream.Filter{Types: types, UserID: "u1"}, 16)
	defer sub.Close()
	all := l.Subscribe("ws1", stream.Filter{UserID: "u2"}, 16)
	defer all.Close()
	post := func(e *stream.Event) *stream.Event {
		got, err := l.Append(t.Context(), e)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	a := post(Ev("ws1", "approval.created", 1))
	post(Ev("ws2", "approval.created", 2)) // other workspace
	post(Ev("ws1", "agent.status.changed", 3))
	n := Ev("ws1", "chat.message", 4)
	n.TargetUserID = "u2"
	n2 := post(n) // targeted at someone else
	c := post(Ev("ws1", "chat.message", 5))
	var got []string
	for len(got) < 2 {
		d, ok := recv(t, sub)
		if !ok {
			t.Fatalf("subscription closed: %v", sub.Err())
		}
		if d.Kind == stream.KindEvent {
			got = append(got, d.Event.ID.String())
		}
	}
	if d := cmp.Diff([]string{a.ID.String(), c.ID.String()}, got); d != "" {
		t.Fatalf("filtered deliveries (-want +got):\n%s", d)
	}
	var gotAll []string
	for len(gotAll) < 4 {
		d, ok := recv(t, all)
		if !ok {
			t.Fatalf("subscription closed: %v", all.Err())
		}
		if d.Kind == stream.KindEvent {
			gotAll = append(gotAll, d.Event.Type)
		}
	}
	if d := cmp.Diff([]string{"approval.created", "agent.status.changed", "chat.message", "chat.message"}, gotAll); d != "" {
		t.Fatalf("u2 deliveries (-want +got):\n%s", d)
	}
	_ = n2
}

func testSlowSubscriber(t *testing.T, h Harness) {
	l := h.New(t, 100)
	sub := l.Subscribe("ws1", stream.Filter{}, 2)
	defer sub.Close()
	// The hub hands each event to every subscriber in one step, so once a
	// roomy subscriber has seen all five, sub has overflowed, however fast
	// this goroutine reads it.
	roomy := l.Subscribe("ws1", stream.Filter{}, 16)
	defer roomy.Close()
	appendN(t, l, "ws1", 5)
	for seen := 0; seen < 5; {
		d, ok := recv(t, roomy)
		if !ok {
			t.Fatalf("roomy subscriber closed: %v", roomy.Err())
		}
		if d.Kind == stream.KindEvent {
			seen++
		}
	}
	for {
		_, ok := recv(t, sub)
		if !ok {
			break
		}
	}
	if !errors.Is(sub.Err(), stream.ErrSlowSubscriber) {
		t.Fatalf("Err() = %v; want ErrSlowSubscriber", sub.Err())
	}
}

func testConcurrentAppends(t *testing.T, h Harness) {
	l := h.New(t, 10000)
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := l.Append(t.Context(), Ev("ws1", "chat.message", w*1000+i)); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	all := readAll(t, l, "ws1", stream.ID{}, 77)
	if len(all) != writers*each {
		t.Fatalf("read %d events; want %d", len(all), writers*each)
	}
	for i, e := range all {
		if e.ID.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d; want %d", i, e.ID.Seq, i+1)
		}
	}
}

// follow drains a tail until it has seen want events or an error.
func follow(ctx context.Context, tail *stream.Tail, want int) ([]*stream.Event, int, error) {
	var got []*stream.Event
	resets := 0
	for len(got) < want {
		b, err := tail.Next(ctx, nil)
		if err != nil {
			return got, resets, err
		}
		if b.Reset {
			resets++
		}
		got = append(got, b.Events...)
	}
	return got, resets, nil
}

func testTailConcurrent(t *testing.T, h Harness) {
	l := h.New(t, 100000)
	const total, readers = 600, 6
	pre := appendN(t, l, "ws1", 50)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	results := make([][]*stream.Event, readers)
	errs := make([]error, readers)
	start := make(chan struct{})
	for r := range readers {
		wg.Go(func() {
			<-start
			// Readers join at different points: from the oldest, from a
			// cursor in the middle, and small queues to force overflow
			// during catch-up.
			after := stream.ID{}
			if r%2 == 1 {
				after = pre[r*5].ID
			}
			tail := stream.NewTail(l, "ws1", after, false, stream.TailConfig{Page: 7 + r, Queue: 2 + r})
			defer tail.Close()
			want := 50 + total
			if r%2 == 1 {
				want -= r*5 + 1
			}
			results[r], _, errs[r] = follow(ctx, tail, want)
		})
	}
	close(start)
	for i := range total {
		if _, err := l.Append(ctx, Ev("ws1", "chat.message", i)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for r := range readers {
		if errs[r] != nil && !errors.Is(errs[r], stream.ErrSlowSubscriber) {
			t.Errorf("reader %d: %v", r, errs[r])
			continue
		}
		first := uint64(1)
		if r%2 == 1 {
			first = pre[r*5].ID.Seq + 1
		}
		for i, e := range results[r] {
			if e.ID.Seq != first+uint64(i) {
				t.Errorf("reader %d: event %d is %s; want seq %d (exactly once, in order)", r, i, e.ID, first+uint64(i))
				break
			}
		}
	}
}

// socket stands for a reader's connection as a stream.DirectWriter sees
// it: the fan-out writes to it directly while the reader is parked, the
// reader writes the batches Next returns, and like a full socket it now and
// then takes nothing, or only part of a frame, which the reader must then
// finish before anything else. It has no lock of its own on purpose: the
// Tail promises that the two writers never overlap, and the race detector
// holds it to that.
type socket struct {
	frames  []stream.ID  // ids of the frames completely written, in order
	written atomic.Int64 // len(frames), for the publisher's pacing
	pending *stream.ID   // the id of a frame written in part
	direct  int          // frames the fan-out wrote
	chaos   bool
	rng     *rand.Rand
}

func (s *socket) WriteNow(frame []byte) (taken, partial bool) {
	id := frameID(frame)
	if s.pending != nil {
		return false, false
	}
	if s.chaos {
		switch s.rng.IntN(8) {
		case 0:
			return false, false
		case 1:
			s.pending = &id
			return true, true
		}
	}
	s.direct++
	if !id.IsZero() {
		s.frame(id)
	}
	return true, false
}

// frameID is the id of an event's frame (the zero ID for one without).
func frameID(frame []byte) stream.ID {
	line, _, _ := strings.Cut(string(frame), "\n")
	id, _ := stream.ParseID(strings.TrimPrefix(line, "id: "))
	return id
}

func (s *socket) frame(id stream.ID) {
	s.frames = append(s.frames, id)
	s.written.Add(1)
}

// next is what the reader does with one call of Next: finish a partial
// frame, then write the batch.
func (s *socket) next(ctx context.Context, tail *stream.Tail) error {
	b, err := tail.Next(ctx, nil)
	if err != nil {
		return err
	}
	if s.pending != nil {
		if !s.pending.IsZero() {
			s.frame(*s.pending)
		}
		s.pending = nil
	}
	for _, e := range b.Events {
		s.frame(e.ID)
	}
	return nil
}

// Events that the fan-out writes straight to a parked reader's connection
// and events the reader writes itself (after a refused or partial direct
// write, a backlog, a resync) interleave into exactly the log's order,
// once each, filtered or not.
func testTailDirect(t *testing.T, h Harness) {
	directReaders(t, h, 3, 400, true)
}

// The same with more readers than the hub's worker threshold (1,024), so
// that the workspace fans out on a worker and over several goroutines.
func testTailDirectLarge(t *testing.T, h Harness) {
	directReaders(t, h, 1100, 60, false)
}

// directReaders runs n readers (plain, chaotic, chaotic and filtered, in
// turn) while total events are appended. eachDirect requires every reader,
// not just one, to have been written to directly.
func directReaders(t *testing.T, h Harness, n, total int, eachDirect bool) {
	l := h.New(t, 100000)
	const rounds = 20
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	type reader struct {
		s      *socket
		filter stream.Filter
		want   []stream.ID
		err    error
	}
	readers := make([]*reader, n)
	for i := range readers {
		r := &reader{s: &socket{}}
		if i%3 > 0 {
			r.s.chaos, r.s.rng = true, rand.New(rand.NewPCG(uint64(i), 2))
		}
		if i%3 == 2 {
			r.filter = stream.Filter{Types: []string{"chat.*"}}
		}
		readers[i] = r
	}
	// Subscribed before the first append, so each reader sees them all.
	tails := make([]*stream.Tail, len(readers))
	for i, r := range readers {
		tails[i] = stream.NewTail(l, "ws1", stream.ID{}, false, stream.TailConfig{Filter: r.filter, Queue: 64})
		defer tails[i].Close()
		if err := r.s.next(ctx, tails[i]); err != nil {
			t.Fatal(err)
		}
		tails[i].SetDirect(r.s)
	}
	var wg sync.WaitGroup
	for i, r := range readers {
		wg.Go(func() {
			for {
				if err := r.s.next(ctx, tails[i]); err != nil {
					r.err = err
					return
				}
			}
		})
	}
	// The publisher pauses every rounds events until every reader has
	// written what it may see so far, so that readers park and the
	// fan-out writes to them directly.
	for i := range total {
		typ := "chat.message"
		if i%2 == 1 {
			typ = "approval.created"
		}
		e, err := l.Append(ctx, Ev("ws1", typ, i))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range readers {
			if r.filter.Match(e) {
				r.want = append(r.want, e.ID)
			}
		}
		if i%rounds == rounds-1 || i == total-1 {
			for _, r := range readers {
				waitUntil(t, ctx, func() bool { return r.s.written.Load() >= int64(len(r.want)) })
			}
		}
	}
	cancel()
	wg.Wait()
	direct := 0
	for i, r := range readers {
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("reader %d: %v", i, r.err)
		}
		if got, want := fmt.Sprint(r.s.frames), fmt.Sprint(r.want); got != want {
			t.Errorf("reader %d wrote %d frames, want the %d it may see exactly once in log order:\n got %s\nwant %s", i, len(r.s.frames), len(r.want), got, want)
		}
		if r.s.direct == 0 && eachDirect {
			t.Errorf("reader %d: the fan-out never wrote directly; the test did not exercise the direct path", i)
		}
		direct += r.s.direct
	}
	if direct == 0 {
		t.Error("the fan-out never wrote directly; the test did not exercise the direct path")
	}
}

// waitUntil polls cond until it holds or ctx ends.
func waitUntil(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition never held")
		case <-time.After(time.Millisecond):
		}
	}
}

func testTailReset(t *testing.T, h Harness) {
	l := h.New(t, 100)
	es := appendN(t, l, "ws1", 3)
	l = h.LoseHistory(t, l)
	tail := stream.NewTail(l, "ws1", es[2].ID, false, stream.TailConfig{})
	defer tail.Close()
	b, err := tail.Next(t.Context(), nil)
	if err != nil || !b.Reset || b.Position.Epoch == es[2].ID.Epoch {
		t.Fatalf("first batch after lost history = %+v, %v; want a reset to a new epoch", b, err)
	}
	fresh := appendN(t, l, "ws1", 2)
	got, resets, err := follow(t.Context(), tail, 2)
	if err != nil || resets != 0 || len(got) != 2 || got[0].ID != fresh[0].ID || got[1].ID != fresh[1].ID {
		t.Fatalf("after reset got %v (%d resets), %v; want %v", ids(got), resets, err, ids(fresh))
	}
}

func testClose(t *testing.T, h Harness) {
	l := h.New(t, 100)
	sub := l.Subscribe("ws1", stream.Filter{}, 4)
	defer sub.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := recv(t, sub); ok {
		t.Fatal("delivery after Close")
	}
	if !errors.Is(sub.Err(), stream.ErrClosed) {
		t.Fatalf("Err() = %v; want ErrClosed", sub.Err())
	}
	if _, err := l.Append(t.Context(), Ev("ws1", "chat.message", 1)); err == nil {
		t.Fatal("Append after Close succeeded")
	}
}

func testCancelled(t *testing.T, h Harness) {
	l := h.New(t, 100)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Append(ctx, Ev("ws1", "chat.message", 1)); err == nil {
		t.Error("Append with a cancelled context succeeded")
	}
	if _, err := l.Read(ctx, "ws1", stream.ID{}, 1); err == nil {
		t.Error("Read with a cancelled context succeeded")
	}
	if p, err := l.Read(t.Context(), "ws1", stream.ID{}, 10); err != nil || len(p.Events) != 0 {
		t.Errorf("log after cancelled append holds %d events, %v; want none", len(p.Events), err)
	}
}

func testAppendOnce(t *testing.T, h Harness) {
	l := h.New(t, 100)
	first, replayed, err := l.AppendOnce(t.Context(), Ev("ws1", "chat.message", 1), stream.Once{Key: "k1", Fingerprint: "f1"})
	if err != nil || replayed {
		t.Fatalf("first AppendOnce = %v, replayed %v; want a fresh append", err, replayed)
	}
	again, replayed, err := l.AppendOnce(t.Context(), Ev("ws1", "chat.message", 2), stream.Once{Key: "k1", Fingerprint: "f1"})
	if err != nil || !replayed || again.ID != first.ID || string(again.JSON()) != string(first.JSON()) {
		t.Fatalf("repeat = %v replayed %v %s; want the first event %s replayed", err, replayed, again.JSON(), first.JSON())
	}
	if _, _, err := l.AppendOnce(t.Context(), Ev("ws1", "chat.message", 3), stream.Once{Key: "k1", Fingerprint: "f2"}); !errors.Is(err, stream.ErrIdempotencyConflict) {
		t.Fatalf("same key, other fingerprint: %v; want ErrIdempotencyConflict", err)
	}
	// Keys are per workspace; other keys append.
	other, replayed, err := l.AppendOnce(t.Context(), Ev("ws2", "chat.message", 4), stream.Once{Key: "k1", Fingerprint: "f2"})
	if err != nil || replayed || other.WorkspaceID != "ws2" {
		t.Fatalf("same key in another workspace: %v, replayed %v", err, replayed)
	}
	if got := readAll(t, l, "ws1", stream.ID{}, 10); len(got) != 1 {
		t.Fatalf("ws1 holds %v; want only the first append", ids(got))
	}
	// After the window the key appends again.
	short := stream.Once{Key: "k-short", TTL: 30 * time.Millisecond}
	a, _, err := l.AppendOnce(t.Context(), Ev("ws1", "chat.message", 5), short)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(80 * time.Millisecond) // past the window; only the direction of the wait matters
	b, replayed, err := l.AppendOnce(t.Context(), Ev("ws1", "chat.message", 6), short)
	if err != nil || replayed || b.ID == a.ID {
		t.Fatalf("after the window: %v replayed %v id %s; want a new append", err, replayed, b.ID)
	}
}

func testAppendOnceConcurrent(t *testing.T, h Harness) {
	l := h.New(t, 100)
	var wg sync.WaitGroup
	got := make([]stream.ID, 16)
	for i := range got {
		wg.Go(func() {
			e, _, err := l.AppendOnce(t.Context(), Ev("ws1", "chat.message", i), stream.Once{Key: "same"})
			if err != nil {
				t.Errorf("AppendOnce: %v", err)
				return
			}
			got[i] = e.ID
		})
	}
	wg.Wait()
	for _, id := range got {
		if id != got[0] {
			t.Fatalf("concurrent AppendOnce returned %v; want one id", got)
		}
	}
	if all := readAll(t, l, "ws1", stream.ID{}, 100); len(all) != 1 {
		t.Fatalf("log holds %d events; want 1", len(all))
	}
}

func batchOf(ws string, from, n int) []stream.BatchItem {
	items := make([]stream.BatchItem, n)
	for i := range items {
		items[i] = stream.BatchItem{Event: Ev(ws, "chat.message", from+i)}
	}
	return items
}

func testAppendBatch(t *testing.T, h Harness) {
	l := h.New(t, 1000)
	sub := l.Subscribe("ws1", stream.Filter{}, 64)
	defer sub.Close()
	appendN(t, l, "ws1", 2)
	events, replayed, err := l.AppendBatch(t.Context(), batchOf("ws1", 10, 5))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		if replayed[i] || e.ID.Seq != uint64(3+i) || e.CorrelationID != fmt.Sprintf("c-%d", 10+i) {
			t.Fatalf("item %d: %s %s replayed %v; want seq %d, c-%d, fresh", i, e.ID, e.CorrelationID, replayed[i], 3+i, 10+i)
		}
	}
	got := readAll(t, l, "ws1", stream.ID{}, 100)
	if len(got) != 7 {
		t.Fatalf("log holds %v; want 7 events", ids(got))
	}
	for i, e := range got[2:] {
		if e.ID != events[i].ID || string(e.JSON()) != string(events[i].JSON()) {
			t.Fatalf("read back %s; want %s", e.JSON(), events[i].JSON())
		}
	}
	// Subscribers get the batch in order, like any appends.
	var live []string
	for len(live) < 7 {
		d, ok := recv(t, sub)
		if !ok {
			t.Fatalf("subscription closed: %v after %v", sub.Err(), live)
		}
		if d.Kind == stream.KindEvent {
			live = append(live, d.Event.ID.String())
		}
	}
	if want := ids(got); fmt.Sprint(live) != fmt.Sprint(want) {
		t.Fatalf("subscriber saw %v; want %v", live, want)
	}
	// What no log may take, it refuses whole.
	if _, _, err := l.AppendBatch(t.Context(), nil); err == nil {
		t.Fatal("an empty batch was accepted")
	}
	if _, _, err := l.AppendBatch(t.Context(), batchOf("ws1", 0, stream.MaxBatch+1)); err == nil {
		t.Fatal("a batch over MaxBatch was accepted")
	}
	mixed := append(batchOf("ws1", 20, 2), batchOf("ws2", 22, 1)...)
	var be *stream.BatchError
	if _, _, err := l.AppendBatch(t.Context(), mixed); !errors.As(err, &be) || be.Index != 2 {
		t.Fatalf("a batch across workspaces: %v; want a BatchError at item 2", err)
	}
	bad := batchOf("ws1", 30, 3)
	bad[1].Event.Data = json.RawMessage(`{"id":`)
	if _, _, err := l.AppendBatch(t.Context(), bad); !errors.As(err, &be) || be.Index != 1 {
		t.Fatalf("a batch with data that is not JSON: %v; want a BatchError at item 1", err)
	}
	if n := len(readAll(t, l, "ws1", stream.ID{}, 100)); n != 7 {
		t.Fatalf("refused batches left %d events; want 7", n)
	}
}

func testAppendBatchOnce(t *testing.T, h Harness) {
	l := h.New(t, 1000)
	withKeys := func(from int, keys ...string) []stream.BatchItem {
		items := batchOf("ws1", from, len(keys))
		for i, k := range keys {
			if k != "" {
				items[i].Once = &stream.Once{Key: k, Fingerprint: "fp-" + k}
			}
		}
		return items
	}
	first, replayed, err := l.AppendBatch(t.Context(), withKeys(0, "a", "", "b"))
	if err != nil || replayed[0] || replayed[1] || replayed[2] {
		t.Fatalf("first batch: %v replayed %v", err, replayed)
	}
	// A repeat appends only what has no recorded key.
	again, replayed, err := l.AppendBatch(t.Context(), withKeys(10, "a", "", "b"))
	if err != nil {
		t.Fatal(err)
	}
	if !replayed[0] || replayed[1] || !replayed[2] || again[0].ID != first[0].ID || again[2].ID != first[2].ID ||
		string(again[2].JSON()) != string(first[2].JSON()) || again[1].ID.Seq != first[2].ID.Seq+1 {
		t.Fatalf("repeat: replayed %v ids %v; want a and b replayed as %v, the keyless item appended after them", replayed, ids(again), ids(first))
	}
	// One conflict anywhere appends nothing, not even fresh keys before it.
	conflict := withKeys(20, "c", "a")
	conflict[1].Once.Fingerprint = "other"
	var be *stream.BatchError
	if _, _, err := l.AppendBatch(t.Context(), conflict); !errors.As(err, &be) || be.Index != 1 || !errors.Is(err, stream.ErrIdempotencyConflict) {
		t.Fatalf("conflict at item 1: %v; want a BatchError at 1 wrapping ErrIdempotencyConflict", err)
	}
	if n := len(readAll(t, l, "ws1", stream.ID{}, 100)); n != 4 {
		t.Fatalf("log holds %d events after the refused batch; want 4", n)
	}
	if _, replayed, err := l.AppendBatch(t.Context(), withKeys(30, "c")); err != nil || replayed[0] {
		t.Fatalf("c after the refused batch: %v replayed %v; want a fresh append (the refused batch recorded nothing)", err, replayed)
	}
	// A key twice in one batch: the second is the first's replay.
	dup, replayed, err := l.AppendBatch(t.Context(), withKeys(40, "d", "d"))
	if err != nil || replayed[0] || !replayed[1] || dup[1].ID != dup[0].ID {
		t.Fatalf("key twice in a batch: %v replayed %v ids %v; want the second replaying the first", err, replayed, ids(dup))
	}
	twice := withKeys(50, "e", "e")
	twice[1].Once.Fingerprint = "other"
	if _, _, err := l.AppendBatch(t.Context(), twice); !errors.As(err, &be) || be.Index != 1 {
		t.Fatalf("key twice in a batch with two fingerprints: %v; want a BatchError at 1", err)
	}
	// AppendOnce and AppendBatch share the records.
	if prev, replayed, err := l.AppendOnce(t.Context(), Ev("ws1", "chat.message", 60), stream.Once{Key: "d", Fingerprint: "fp-d"}); err != nil || !replayed || prev.ID != dup[0].ID {
		t.Fatalf("AppendOnce of a batch's key: %v replayed %v", err, replayed)
	}
	if n := len(readAll(t, l, "ws1", stream.ID{}, 100)); n != 6 {
		t.Fatalf("log holds %d events; want 6", n)
	}
}

// Batches and single appends from concurrent writers: every batch lands
// contiguous and in order, and nothing is lost or doubled.
func testAppendBatchConcurrent(t *testing.T, h Harness) {
	l := h.New(t, 10000)
	const writers, batches, size = 6, 10, 7
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				if w%3 == 0 {
					if _, err := l.Append(t.Context(), Ev("ws1", "chat.message", w*1000+b)); err != nil {
						t.Errorf("Append: %v", err)
						return
					}
					continue
				}
				events, _, err := l.AppendBatch(t.Context(), batchOf("ws1", w*1000+b*10, size))
				if err != nil {
					t.Errorf("AppendBatch: %v", err)
					return
				}
				for i := 1; i < len(events); i++ {
					if events[i].ID.Seq != events[0].ID.Seq+uint64(i) {
						t.Errorf("batch ids %v are not contiguous", ids(events))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	all := readAll(t, l, "ws1", stream.ID{}, 97)
	want := writers/3*batches + (writers-writers/3)*batches*size
	if len(all) != want {
		t.Fatalf("read %d events; want %d", len(all), want)
	}
	for i, e := range all {
		if e.ID.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d; want %d", i, e.ID.Seq, i+1)
		}
	}
}

// RunLimiter checks a token bucket: a and b must share buckets (the same
// log, or two nodes of one Redis).
func RunLimiter(t *testing.T, a, b stream.RateLimiter) {
	r := stream.Rate{Per: 10, Burst: 3}
	for i := range 3 {
		l := a
		if i%2 == 1 {
			l = b // the bucket is shared
		}
		if ok, _, err := l.Allow(t.Context(), "ws-limit", r, 1); !ok || err != nil {
			t.Fatalf("take %d of a burst of 3: ok=%v err=%v", i+1, ok, err)
		}
	}
	ok, wait, err := b.Allow(t.Context(), "ws-limit", r, 1)
	if ok || err != nil || wait <= 0 || wait > 110*time.Millisecond {
		t.Fatalf("4th take: ok=%v wait=%v err=%v; want a refusal with a wait of at most 1/rate", ok, wait, err)
	}
	if ok, _, _ := a.Allow(t.Context(), "ws-other", r, 1); !ok {
		t.Fatal("another key shares the bucket")
	}
	time.Sleep(wait + 20*time.Millisecond) // past the wait; only the direction matters
	if ok, _, err := a.Allow(t.Context(), "ws-limit", r, 1); !ok || err != nil {
		t.Fatalf("after the advised wait: ok=%v err=%v; want a token", ok, err)
	}
	// A batch takes its size, all or nothing, and never more than the
	// burst, so that it can always succeed once the bucket is full.
	big := stream.Rate{Per: 10, Burst: 5}
	if ok, _, err := a.Allow(t.Context(), "ws-batch", big, 3); !ok || err != nil {
		t.Fatalf("3 of 5: ok=%v err=%v", ok, err)
	}
	ok, wait, err = b.Allow(t.Context(), "ws-batch", big, 3)
	if ok || err != nil || wait < 50*time.Millisecond || wait > 210*time.Millisecond {
		t.Fatalf("3 more of the 2 left: ok=%v wait=%v err=%v; want a refusal with a wait of about 1/10 s", ok, wait, err)
	}
	if ok, _, err := b.Allow(t.Context(), "ws-batch", big, 2); !ok || err != nil {
		t.Fatalf("the 2 left (the refusal took none): ok=%v err=%v", ok, err)
	}
	if ok, _, err := a.Allow(t.Context(), "ws-huge", big, 50); !ok || err != nil {
		t.Fatalf("a batch over the burst from a full bucket: ok=%v err=%v; want it counted as the burst", ok, err)
	}
}

func testBroadcast(t *testing.T, h Harness) {
	l := h.New(t, 100)
	before := appendN(t, l, "ws1", 1)
	tail := stream.NewTail(l, "ws1", stream.ID{}, true, stream.TailConfig{Filter: stream.Filter{Types: []string{"chat.*", "typing.*", "presence.*"}, UserID: "u1"}})
	defer tail.Close()
	if _, err := tail.Next(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	// A reader that did not ask for presence and typing gets neither.
	plain := stream.NewTail(l, "ws1", stream.ID{}, true, stream.TailConfig{Filter: stream.Filter{UserID: "u1"}})
	defer plain.Close()
	if _, err := plain.Next(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	typing := &stream.Event{Type: "typing.started", WorkspaceID: "ws1", Data: json.RawMessage(`{"chatId":"c","userId":"u2"}`)}
	if err := l.Broadcast(t.Context(), typing); err != nil {
		t.Fatal(err)
	}
	hidden := &stream.Event{Type: "presence.changed", WorkspaceID: "ws1", TargetUserID: "u3", Data: json.RawMessage(`{}`)}
	if err := l.Broadcast(t.Context(), hidden); err != nil {
		t.Fatal(err)
	}
	durable := appendN(t, l, "ws1", 1)
	var eph []string
	var got []*stream.Event
	// The two may come in separate batches, in either order (a resync can
	// send the reader to the log for the durable one first).
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for len(got) < 1 || len(eph) < 1 {
		b, err := tail.Next(ctx, nil)
		if err != nil {
			t.Fatalf("after %d durable and ephemeral %v: %v", len(got), eph, err)
		}
		for _, e := range b.Ephemeral {
			eph = append(eph, e.Type)
		}
		got = append(got, b.Events...)
	}
	if len(eph) != 1 || eph[0] != "typing.started" {
		t.Fatalf("ephemeral deliveries %v; want the one for this reader", eph)
	}
	if got[0].ID != durable[0].ID {
		t.Fatalf("durable delivery %s; want %s", got[0].ID, durable[0].ID)
	}
	for got := 0; got < 1; {
		b, err := plain.Next(ctx, nil)
		if err != nil {
			t.Fatalf("plain reader: %v", err)
		}
		if len(b.Ephemeral) > 0 {
			t.Fatalf("a reader without types got ephemeral %s", b.Ephemeral[0].Type)
		}
		got += len(b.Events)
	}
	// Not stored: the log holds only the durable events.
	if all := readAll(t, l, "ws1", stream.ID{}, 10); len(all) != 2 || all[0].ID != before[0].ID {
		t.Fatalf("log holds %v; want only the 2 durable events", ids(all))
	}
}

// RunPresence checks presence and typing semantics; a and b must share
// state (one log, or two nodes of one Redis).
func RunPresence(t *testing.T, a, b stream.PresenceStore) {
	ctx := t.Context()
	step := func(what string, p stream.Presence, changed bool, err error, status string, wantChanged bool) {
		t.Helper()
		if err != nil || p.Status != status || changed != wantChanged {
			t.Fatalf("%s: %+v changed=%v err=%v; want %s changed=%v", what, p, changed, err, status, wantChanged)
		}
	}
	list := func(ws string) string {
		t.Helper()
		ps, err := b.ListPresence(ctx, ws)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range ps {
			out = append(out, p.UserID+"="+p.Status)
		}
		return strings.Join(out, ",")
	}
	p, c, err := a.SetPresence(ctx, "ws", "alice", "away", time.Minute)
	step("alice sets away", p, c, err, "away", true)
	p, c, err = b.SetPresence(ctx, "ws", "alice", "away", time.Minute)
	step("alice refreshes away", p, c, err, "away", false)
	p, c, err = a.OpenConn(ctx, "ws", "bob", "c1", time.Minute)
	step("bob's first stream", p, c, err, "online", true)
	p, c, err = b.OpenConn(ctx, "ws", "bob", "c2", time.Minute)
	step("bob's second stream", p, c, err, "online", false)
	if got := list("ws"); got != "alice=away,bob=online" {
		t.Fatalf("list = %s", got)
	}
	if got := list("other"); got != "" {
		t.Fatalf("another workspace lists %s", got)
	}
	// A round of joins in one call reports each as OpenConn would: a
	// user's first stream changes them, a second does not (fay has two in
	// wb). The 600 joins of wd are more than one of Redis's pipelines, and
	// u000's second stream, in the last, comes after its first.
	refs := []stream.ConnRef{{Workspace: "wb", User: "fay", Conn: "c1"}, {Workspace: "wb", User: "gus", Conn: "c1"},
		{Workspace: "wb", User: "fay", Conn: "c2"}, {Workspace: "wc", User: "fay", Conn: "c3"}}
	for i := range 600 {
		refs = append(refs, stream.ConnRef{Workspace: "wd", User: fmt.Sprintf("u%03d", i), Conn: "c"})
	}
	refs = append(refs, stream.ConnRef{Workspace: "wd", User: "u000", Conn: "c2"})
	for round, store := range []stream.PresenceStore{a, b} {
		opened := store.OpenConns(ctx, refs, time.Minute)
		if len(opened) != len(refs) {
			t.Fatalf("OpenConns of %d returned %d results", len(refs), len(opened))
		}
		for i, o := range opened {
			// The second round, on the other node, only repeats the joins.
			wantChanged := round == 0 && i != len(refs)-1
			if i == 0 || i == 2 {
				wantChanged = o.Changed // checked together below
			}
			if o.Err != nil || o.Presence.UserID != refs[i].User || o.Presence.Status != "online" || o.Changed != wantChanged {
				t.Fatalf("round %d, join %d (%+v): %+v; want %s online, changed=%v", round, i, refs[i], o, refs[i].User, wantChanged)
			}
		}
		if changes := btoi(opened[0].Changed) + btoi(opened[2].Changed); changes != 1-round {
			t.Fatalf("round %d: fay's two joins in wb made %d changes; want %d", round, changes, 1-round)
		}
	}
	if got := list("wb"); got != "fay=online,gus=online" {
		t.Fatalf("after OpenConns, list = %s", got)
	}
	if ps, err := b.ListPresence(ctx, "wd"); err != nil || len(ps) != 600 {
		t.Fatalf("after OpenConns, wd lists %d, %v; want 600", len(ps), err)
	}
	// And a round of departures: fay closes one of her two streams in wb
	// and stays, gus and the 600 close their only one and go once settled.
	gone := append([]stream.ConnRef{refs[0], refs[1]}, refs[4:]...) // u000's two among them
	if err := b.CloseConns(ctx, gone); err != nil {
		t.Fatal(err)
	}
	settled := map[stream.ConnRef]bool{}
	for _, r := range gone {
		user := stream.ConnRef{Workspace: r.Workspace, User: r.User}
		if settled[user] {
			continue // u000 had two
		}
		settled[user] = true
		p, c, err := a.SettlePresence(ctx, r.Workspace, r.User)
		if want := map[bool]string{true: "online", false: "offline"}[r.User == "fay"]; err != nil || p.Status != want || c != (want == "offline") {
			t.Fatalf("%+v closed and settled: %+v changed=%v err=%v; want %s", r, p, c, err, want)
		}
	}
	if ps, err := b.ListPresence(ctx, "wd"); err != nil || len(ps) != 0 {
		t.Fatalf("after CloseConns, wd lists %d, %v; want none", len(ps), err)
	}
	// A refresh extends what is recorded and records nothing else.
	if err := a.RefreshConns(ctx, []stream.ConnRef{{Workspace: "ws", User: "bob", Conn: "c1"}, {Workspace: "ws", User: "dave", Conn: "c9"}, {Workspace: "none", User: "erin", Conn: "c8"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := list("ws"); got != "alice=away,bob=online" {
		t.Fatalf("after a refresh, list = %s", got)
	}
	// A refresh is what keeps a connection past its ttl.
	a.OpenConn(ctx, "wr", "dave", "c5", 50*time.Millisecond)
	a.OpenConn(ctx, "wr", "erin", "c6", 50*time.Millisecond)
	if err := b.RefreshConns(ctx, []stream.ConnRef{{Workspace: "wr", User: "dave", Conn: "c5"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	p, c, err = a.SettlePresence(ctx, "wr", "dave")
	step("dave refreshed, past his first ttl", p, c, err, "online", false)
	p, c, err = a.SettlePresence(ctx, "wr", "erin")
	step("erin not refreshed, past hers", p, c, err, "offline", true)
	a.CloseConn(ctx, "ws", "bob", "c1")
	p, c, err = b.SettlePresence(ctx, "ws", "bob")
	step("bob closed one of two", p, c, err, "online", false)
	b.CloseConn(ctx, "ws", "bob", "c2")
	p, c, err = a.SettlePresence(ctx, "ws", "bob")
	step("bob closed his last", p, c, err, "offline", true)
	p, c, err = b.SettlePresence(ctx, "ws", "bob")
	step("bob settled again", p, c, err, "offline", false)
	// An explicit status wins over a stream, and lapses on its own.
	a.OpenConn(ctx, "ws", "carol", "c3", time.Minute)
	p, c, err = a.SetPresence(ctx, "ws", "carol", "busy", 40*time.Millisecond)
	step("carol busy", p, c, err, "busy", true)
	a.SetPresence(ctx, "ws", "dave", "away", 40*time.Millisecond)
	time.Sleep(80 * time.Millisecond) // past the TTL; only the direction matters
	if got := list("ws"); got != "alice=away,carol=online" {
		t.Fatalf("list after the TTLs = %s; want dave gone and carol back to online", got)
	}
	p, c, err = b.SettlePresence(ctx, "ws", "carol")
	step("carol's busy lapsed", p, c, err, "online", true)
	p, c, err = b.SettlePresence(ctx, "ws", "dave")
	step("dave's away lapsed", p, c, err, "offline", true)

	// Typing: one start, renewals are silent, the last setter's expiry stops it.
	if ch, err := a.SetTyping(ctx, "ws", "chat1", "alice", "t1", true, time.Minute); !ch || err != nil {
		t.Fatalf("start typing: %v %v", ch, err)
	}
	if ch, _ := b.SetTyping(ctx, "ws", "chat1", "alice", "t2", true, 40*time.Millisecond); ch {
		t.Fatal("renewed typing reported as a change")
	}
	if stopped, left, _ := a.ExpireTyping(ctx, "ws", "chat1", "alice", "t1"); stopped || left != 0 {
		t.Fatalf("an older setter's expiry: stopped=%v left=%v; want nothing (t2 owns it)", stopped, left)
	}
	if stopped, left, _ := b.ExpireTyping(ctx, "ws", "chat1", "alice", "t2"); stopped || left <= 0 {
		t.Fatalf("the owner's early expiry: stopped=%v left=%v; want time left", stopped, left)
	}
	time.Sleep(80 * time.Millisecond)
	if stopped, _, _ := b.ExpireTyping(ctx, "ws", "chat1", "alice", "t2"); !stopped {
		t.Fatal("the owner's expiry after the TTL did not stop typing")
	}
	if stopped, _, _ := b.ExpireTyping(ctx, "ws", "chat1", "alice", "t2"); stopped {
		t.Fatal("typing stopped twice")
	}
	a.SetTyping(ctx, "ws", "chat1", "bob", "t3", true, time.Minute)
	if ch, _ := b.SetTyping(ctx, "ws", "chat1", "bob", "t4", false, 0); !ch {
		t.Fatal("an explicit stop was not a change")
	}
	if ch, _ := b.SetTyping(ctx, "ws", "chat1", "bob", "t5", false, 0); ch {
		t.Fatal("stopping twice was a change")
	}
}

// RunTickets checks a ticket store: a and b must share state (one log, or
// two nodes of one Redis).
func RunTickets(t *testing.T, a, b stream.TicketStore) {
	ctx := t.Context()
	exp := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	tk := stream.Ticket{UserID: "alice", Workspace: "ws", Types: []string{"chat.*"}, Expires: exp}
	id := stream.NewTicketID()
	if !stream.ValidTicketID(id) {
		t.Fatalf("NewTicketID() = %q, not a valid ticket id", id)
	}
	if err := a.PutTicket(ctx, id, tk, time.Minute); err != nil {
		t.Fatal(err)
	}
	// Not for another workspace, and looking does not spend it.
	if _, ok, err := b.TakeTicket(ctx, "other", id); ok || err != nil {
		t.Fatalf("another workspace took the ticket: ok=%v err=%v", ok, err)
	}
	got, ok, err := b.TakeTicket(ctx, "ws", id)
	if err != nil || !ok {
		t.Fatalf("take on the other store: ok=%v err=%v", ok, err)
	}
	if got.UserID != tk.UserID || got.Workspace != tk.Workspace || strings.Join(got.Types, ",") != "chat.*" || !got.Expires.Equal(exp) {
		t.Fatalf("took %+v; want %+v", got, tk)
	}
	if _, ok, _ := a.TakeTicket(ctx, "ws", id); ok {
		t.Fatal("a ticket was taken twice")
	}
	// Expiry.
	short := stream.NewTicketID()
	if err := a.PutTicket(ctx, short, tk, 40*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(80 * time.Millisecond) // past the TTL; only the direction matters
	if _, ok, _ := b.TakeTicket(ctx, "ws", short); ok {
		t.Fatal("an expired ticket was taken")
	}
	// Racing redeemers: exactly one wins.
	race := stream.NewTicketID()
	if err := a.PutTicket(ctx, race, tk, time.Minute); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			if _, ok, err := s.TakeTicket(ctx, "ws", race); ok && err == nil {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d of 16 concurrent redeemers got the ticket; want 1", n)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
