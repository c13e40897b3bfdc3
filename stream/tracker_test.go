package stream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/realtime-dev/realtime/stream"
)

// watcher collects the presence and typing events of one workspace.
type watcher struct {
	t   *testing.T
	sub *stream.Subscription
}

func watch(t *testing.T, l *stream.Memory, ws string) *watcher {
	t.Helper()
	sub := l.Subscribe(ws, stream.Filter{Types: []string{"presence.*", "typing.*"}, UserID: "watcher"}, 1000)
	t.Cleanup(sub.Close)
	return &watcher{t: t, sub: sub}
}

// events returns what was delivered so far.
func (w *watcher) events() []*stream.Event {
	w.t.Helper()
	var out []*stream.Event
	for {
		d, ok, _ := w.sub.Pop()
		if !ok {
			return out
		}
		if d.Kind == stream.KindResync {
			continue
		}
		out = append(out, d.Event)
	}
}

func changeOf(t *testing.T, e *stream.Event) stream.PresenceChange {
	t.Helper()
	if e.Type != stream.TypePresenceChanged || !e.ID.IsZero() {
		t.Fatalf("event %s (id %s); want an ephemeral %s", e.Type, e.ID, stream.TypePresenceChanged)
	}
	var c stream.PresenceChange
	if err := json.Unmarshal(e.Data, &c); err != nil || c.Online == nil || c.Away == nil || c.Busy == nil || c.Offline == nil {
		t.Fatalf("presence.changed data %s: %v (arrays must not be null)", e.Data, err)
	}
	return c
}

// A burst of joins reaches a watcher as a few coalesced events, carrying
// every change once; leaving is one more, after the grace.
func TestPresenceTrackerCoalescesJoins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := stream.NewMemory(stream.MemoryConfig{})
		defer l.Close()
		tr := stream.NewPresenceTracker(l, l, stream.PresenceConfig{Interval: 500 * time.Millisecond, Grace: 5 * time.Second})
		defer tr.Close()
		w := watch(t, l, "ws1")

		const n = 1000
		var members []*stream.Member
		var want []string
		for i := range n {
			// Joins spread over two seconds: at most one event per
			// interval, however many people.
			if i%250 == 0 && i > 0 {
				time.Sleep(500 * time.Millisecond)
			}
			user := fmt.Sprintf("u%04d", i)
			members = append(members, tr.Join("ws1", user))
			want = append(want, user)
		}
		// A second stream of the same user changes nothing.
		extra := tr.Join("ws1", "u0000")
		time.Sleep(time.Second)
		synctest.Wait()
		evs := w.events()
		if len(evs) > 2000/500+2 {
			t.Fatalf("%d joins over 2s made %d events; want at most one per 500ms interval", n, len(evs))
		}
		var online []string
		for _, e := range evs {
			c := changeOf(t, e)
			online = append(online, c.Online...)
			if len(c.Offline)+len(c.Away)+len(c.Busy) > 0 {
				t.Fatalf("a join announced %+v", c)
			}
		}
		slices.Sort(online)
		if d := cmp.Diff(want, online); d != "" {
			t.Fatalf("users announced online (-want +got):\n%s", d)
		}

		// Everyone leaves at once: one event, after the grace.
		extra.Leave()
		for _, m := range members {
			m.Leave()
		}
		members[0].Leave() // idempotent
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if evs := w.events(); len(evs) != 0 {
			t.Fatalf("%d events within the grace; want none", len(evs))
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		evs = w.events()
		if len(evs) != 1 {
			t.Fatalf("%d events after the grace; want 1", len(evs))
		}
		if c := changeOf(t, evs[0]); len(c.Offline) != n || len(c.Online) != 0 {
			t.Fatalf("leave announced %d offline, %d online; want %d offline", len(c.Offline), len(c.Online), n)
		}
		if ps, _ := tr.List(t.Context(), "ws1"); len(ps) != 0 {
			t.Fatalf("presence after everyone left: %v", ps)
		}
	})
}

// A reconnect within the grace announces nothing.
func TestPresenceTrackerGraceHidesReconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := stream.NewMemory(stream.MemoryConfig{})
		defer l.Close()
		tr := stream.NewPresenceTracker(l, l, stream.PresenceConfig{Grace: 5 * time.Second})
		defer tr.Close()
		w := watch(t, l, "ws1")
		tr.Join("ws1", "alice").Leave()
		time.Sleep(2 * time.Second)
		back := tr.Join("ws1", "alice")
		defer back.Leave()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		evs := w.events()
		if len(evs) != 1 || !slices.Equal(changeOf(t, evs[0]).Online, []string{"alice"}) {
			t.Fatalf("got %d events; want only alice's first arrival", len(evs))
		}
	})
}

// An explicit status is announced, and so is its lapse; typing stops by
// itself after its TTL.
func TestPresenceTrackerStatusAndTyping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := stream.NewMemory(stream.MemoryConfig{})
		defer l.Close()
		tr := stream.NewPresenceTracker(l, l, stream.PresenceConfig{StatusTTL: 10 * time.Second, TypingTTL: 3 * time.Second})
		defer tr.Close()
		w := watch(t, l, "ws1")

		if p, err := tr.SetStatus(t.Context(), "ws1", "bob", "away"); err != nil || p.Status != "away" {
			t.Fatalf("SetStatus: %+v %v", p, err)
		}
		synctest.Wait()
		evs := w.events()
		if len(evs) != 1 || !slices.Equal(changeOf(t, evs[0]).Away, []string{"bob"}) {
			t.Fatalf("status change: %d events; want bob away", len(evs))
		}
		// Repeating the status refreshes it and announces nothing.
		time.Sleep(5 * time.Second)
		tr.SetStatus(t.Context(), "ws1", "bob", "away")
		time.Sleep(10 * time.Second) // 15s after the first, 10s after the second
		synctest.Wait()
		if evs := w.events(); len(evs) != 0 {
			t.Fatalf("%d events before the refreshed status lapsed", len(evs))
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		evs = w.events()
		if len(evs) != 1 || !slices.Equal(changeOf(t, evs[0]).Offline, []string{"bob"}) {
			t.Fatalf("status lapse: %d events; want bob offline", len(evs))
		}

		if err := tr.SetTyping(t.Context(), "ws1", "chat1", "carol", true, "corr-1"); err != nil {
			t.Fatal(err)
		}
		tr.SetTyping(t.Context(), "ws1", "chat1", "carol", true, "corr-2") // a renewal: silent
		synctest.Wait()
		evs = w.events()
		if len(evs) != 1 || evs[0].Type != stream.TypeTypingStarted || evs[0].CorrelationID != "corr-1" {
			t.Fatalf("typing start: %v", evs)
		}
		time.Sleep(3*time.Second + time.Millisecond)
		synctest.Wait()
		evs = w.events()
		if len(evs) != 1 || evs[0].Type != stream.TypeTypingStopped || string(evs[0].Data) != `{"chatId":"chat1","userId":"carol"}` {
			t.Fatalf("typing lapse: %v", evs)
		}
	})
}

// Close announces what is pending and stops the tracker's goroutine
// (goleak checks the package).
func TestPresenceTrackerCloseFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := stream.NewMemory(stream.MemoryConfig{})
		defer l.Close()
		tr := stream.NewPresenceTracker(l, l, stream.PresenceConfig{Interval: time.Minute})
		w := watch(t, l, "ws1")
		tr.Join("ws1", "a")
		synctest.Wait()
		tr.Join("ws1", "b") // within the interval: pending
		synctest.Wait()
		if evs := w.events(); len(evs) != 1 {
			t.Fatalf("%d events before Close; want a's arrival alone", len(evs))
		}
		tr.Close()
		tr.Close()
		evs := w.events()
		if len(evs) != 1 || !slices.Equal(changeOf(t, evs[0]).Online, []string{"b"}) {
			t.Fatalf("Close announced %d events; want b's arrival", len(evs))
		}
	})
}

// Two setters of one user's typing at once (two tabs): whichever the store
// kept, typing stops by itself when its TTL passes.
func TestPresenceTrackerConcurrentTypingStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := stream.NewMemory(stream.MemoryConfig{})
		defer l.Close()
		tr := stream.NewPresenceTracker(l, l, stream.PresenceConfig{TypingTTL: 3 * time.Second})
		defer tr.Close()
		w := watch(t, l, "ws1")
		for range 2 {
			if err := tr.SetTyping(t.Context(), "ws1", "chat1", "carol", true, ""); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(4 * time.Second)
		synctest.Wait()
		var types []string
		for _, e := range w.events() {
			types = append(types, e.Type)
		}
		if !slices.Equal(types, []string{stream.TypeTypingStarted, stream.TypeTypingStopped}) {
			t.Fatalf("events %v; want one start and one stop", types)
		}
	})
}

// Close still forgets the connections of streams that ended just before
// it: their records do not linger in the store.
func TestPresenceTrackerCloseRunsQueuedCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := stream.NewMemory(stream.MemoryConfig{})
		defer l.Close()
		tr := stream.NewPresenceTracker(l, l, stream.PresenceConfig{})
		tr.Join("ws1", "dave")
		m := tr.Join("ws1", "erin")
		synctest.Wait() // both recorded
		m.Leave()       // erin's close is queued
		tr.Close()
		ps, _ := l.ListPresence(t.Context(), "ws1")
		var got []string
		for _, p := range ps {
			got = append(got, p.UserID)
		}
		if !slices.Equal(got, []string{"dave"}) {
			t.Fatalf("present after Close: %v; want only dave (erin's stream ended)", got)
		}
	})
}

// slowCloses is a store whose CloseConns waits for release and then, as a
// pipelined Redis call does, sends nothing once its context has ended.
type slowCloses struct {
	*stream.Memory
	started chan struct{}
	release chan struct{}
}

func (s *slowCloses) CloseConns(ctx context.Context, conns []stream.ConnRef) error {
	select {
	case s.started <- struct{}{}:
	default:
	}
	<-s.release
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Memory.CloseConns(ctx, conns)
}

// Close during a round of departures lets the round's call finish: a burst
// of departures cut short at shutdown would leave its records to their ttl.
func TestPresenceTrackerCloseFinishesARoundInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := stream.NewMemory(stream.MemoryConfig{})
		defer l.Close()
		store := &slowCloses{Memory: l, started: make(chan struct{}, 1), release: make(chan struct{})}
		tr := stream.NewPresenceTracker(store, l, stream.PresenceConfig{})
		var ms []*stream.Member
		for i := range 100 {
			ms = append(ms, tr.Join("ws1", fmt.Sprintf("u%02d", i)))
		}
		synctest.Wait() // all recorded
		for _, m := range ms {
			m.Leave()
		}
		<-store.started // a round of departures is in its store call
		closed := make(chan struct{})
		go func() {
			tr.Close()
			close(closed)
		}()
		synctest.Wait() // Close has cancelled the tracker and waits for it
		close(store.release)
		<-closed
		if ps, _ := l.ListPresence(t.Context(), "ws1"); len(ps) != 0 {
			t.Fatalf("%d users present after Close, the first %+v; want none (every stream ended)", len(ps), ps[0])
		}
	})
}
