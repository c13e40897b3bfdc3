package stream

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// recorder is a DirectWriter that takes, refuses, or takes in part,
// according to mode.
type recorder struct {
	mode outcome // written, queued or writtenInPart
	got  []ID
}

func (r *recorder) WriteNow(frame []byte) (taken, partial bool) {
	switch r.mode {
	case queued:
		return false, false
	case writtenInPart:
		r.got = append(r.got, frameID(frame))
		return true, true
	}
	r.got = append(r.got, frameID(frame))
	return true, false
}

// frameID is the id of an event's frame (the zero ID for one without).
func frameID(frame []byte) ID {
	line, _, _ := strings.Cut(string(frame), "\n")
	id, _ := ParseID(strings.TrimPrefix(line, "id: "))
	return id
}

// A topic large enough to fan out on a worker and on several goroutines
// still gives each
// subscriber every event once, in order: written directly while armed,
// queued when its writer refuses, and a wake-up when a frame went out in
// part (after which it is disarmed, so later events queue behind it).
func TestHubParallelFanOut(t *testing.T) {
	h := NewHub(HubConfig{})
	defer h.Close()
	n := parallelFanOut + 100
	subs := make([]*Subscription, n)
	recs := make([]*recorder, n)
	start := ID{Epoch: 7, Seq: 10}
	for i := range n {
		subs[i] = h.Subscribe("ws", Filter{}, 8)
		recs[i] = &recorder{mode: outcome(i % 3)}
		subs[i].setDirect(recs[i])
		subs[i].arm(start)
	}
	// A subscriber that never armed gets everything through its queue.
	plain := h.Subscribe("ws", Filter{}, 8)
	defer plain.Close()
	for seq := uint64(11); seq <= 13; seq++ {
		h.Publish(&Event{ID: ID{Epoch: 7, Seq: seq}, WorkspaceID: "ws"})
	}
	// A topic this large fans out on a worker: wait for it.
	h.workers.Wait()
	queuedIDs := func(s *Subscription) string {
		var out []string
		for {
			d, ok, _ := s.Pop()
			if !ok {
				break
			}
			switch {
			case d.Kind == kindFinish:
				out = append(out, "wake")
			default:
				out = append(out, d.Event.ID.String())
			}
		}
		return fmt.Sprint(out)
	}
	for i, s := range subs {
		var wantGot, wantQueued string
		switch recs[i].mode {
		case written:
			wantGot, wantQueued = "[7-11 7-12 7-13]", "[]"
		case queued:
			wantGot, wantQueued = "[]", "[7-11 7-12 7-13]"
		case writtenInPart:
			wantGot, wantQueued = "[7-11]", "[wake 7-12 7-13]"
		}
		if got := fmt.Sprint(recs[i].got); got != wantGot {
			t.Fatalf("subscriber %d (mode %d): written directly %s; want %s", i, recs[i].mode, got, wantGot)
		}
		if got := queuedIDs(s); got != wantQueued {
			t.Fatalf("subscriber %d (mode %d): queued %s; want %s", i, recs[i].mode, got, wantQueued)
		}
		if last := s.disarm(); recs[i].mode != queued && last.Seq < 11 {
			t.Fatalf("subscriber %d: disarm returned %s after direct writes", i, last)
		}
	}
	if got := queuedIDs(plain); got != "[7-11 7-12 7-13]" {
		t.Fatalf("plain subscriber: queued %s", got)
	}
}

// Head answers from the last event fanned out, else from a store head a
// reader noted since the last resync; never from one read across a resync,
// after which the feed may have missed events.
func TestHubHead(t *testing.T) {
	h := NewHub(HubConfig{})
	defer h.Close()
	head := func() string {
		s := h.Subscribe("ws", Filter{}, 8)
		defer s.Close()
		id, ok := s.Head()
		if !ok {
			return "unknown"
		}
		return id.String()
	}
	a := h.Subscribe("ws", Filter{}, 8) // keeps the topic
	defer a.Close()
	if got := head(); got != "unknown" {
		t.Fatalf("fresh topic: Head %s; want unknown", got)
	}
	a.noteHead(ID{Epoch: 7, Seq: 5})
	if got := head(); got != "7-5" {
		t.Fatalf("after noteHead: Head %s; want 7-5", got)
	}
	h.Resync()
	if got := head(); got != "unknown" {
		t.Fatalf("after a resync: Head %s; want unknown", got)
	}
	a.noteHead(ID{Epoch: 7, Seq: 6}) // read before the resync: ignored
	if got := head(); got != "unknown" {
		t.Fatalf("a head read across a resync was noted: Head %s", got)
	}
	c := h.Subscribe("ws", Filter{}, 8)
	defer c.Close()
	c.noteHead(ID{Epoch: 7, Seq: 6})
	if got := head(); got != "7-6" {
		t.Fatalf("after noteHead since the resync: Head %s; want 7-6", got)
	}
	h.Publish(&Event{ID: ID{Epoch: 7, Seq: 7}, WorkspaceID: "ws"})
	if got := head(); got != "7-7" {
		t.Fatalf("after an event: Head %s; want 7-7", got)
	}
}

// The queue holds up to its bound in order, keeps what it held for the
// reader after the hub drops the subscription, grows only as needed and
// gives back what a burst grew once drained.
func TestSubscriptionQueue(t *testing.T) {
	h := NewHub(HubConfig{})
	defer h.Close()
	s := h.Subscribe("ws", Filter{}, 100)
	defer s.Close()
	if cap(s.q) != 0 {
		t.Fatalf("an idle subscription holds a queue of %d slots", cap(s.q))
	}
	for seq := uint64(1); seq <= 100; seq++ {
		h.Publish(&Event{ID: ID{Epoch: 1, Seq: seq}, WorkspaceID: "ws"})
	}
	<-s.Ready()
	for seq := uint64(1); seq <= 60; seq++ { // taken from the front while more come
		if d, ok, _ := s.Pop(); !ok || d.Event.ID.Seq != seq {
			t.Fatalf("pop %d: %v %v", seq, d.Event, ok)
		}
	}
	for seq := uint64(101); seq <= 160; seq++ { // 100 queued again: the bound
		h.Publish(&Event{ID: ID{Epoch: 1, Seq: seq}, WorkspaceID: "ws"})
	}
	if err := s.Err(); err != nil {
		t.Fatalf("dropped at the bound: %v", err)
	}
	h.Publish(&Event{ID: ID{Epoch: 1, Seq: 161}, WorkspaceID: "ws"})
	if err := s.Err(); err != ErrSlowSubscriber {
		t.Fatalf("past the bound: Err %v; want ErrSlowSubscriber", err)
	}
	for seq := uint64(61); seq <= 160; seq++ { // still delivered after the drop
		if d, ok, _ := s.Pop(); !ok || d.Event.ID.Seq != seq {
			t.Fatalf("pop %d after the drop: %v %v", seq, d.Event, ok)
		}
	}
	if _, ok, open := s.Pop(); ok || open {
		t.Fatalf("after the last: ok %v open %v; want the end", ok, open)
	}
	if cap(s.q) != 0 {
		t.Fatalf("a drained queue keeps %d slots", cap(s.q))
	}
}

// releaser is a DirectWriter whose target is released once the reader's
// Close returns, as handlers closes a stream's socket after its Tail.
type releaser struct {
	t        *testing.T
	released atomic.Bool
	writes   atomic.Int64
}

func (r *releaser) WriteNow([]byte) (taken, partial bool) {
	if r.released.Load() {
		r.t.Error("WriteNow called after Subscription.Close returned")
	}
	r.writes.Add(1)
	return true, false
}

// The fan-out (plain and parallel) and Ping never call a DirectWriter once
// its subscription's Close has returned, even while events are being
// published: that is what lets handlers write to a socket's descriptor
// without RawConn's lock.
func TestDirectWriterNotCalledAfterClose(t *testing.T) {
	for _, n := range []int{10, parallelFanOut + 10} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			h := NewHub(HubConfig{})
			defer h.Close()
			subs := make([]*Subscription, n)
			recs := make([]*releaser, n)
			for i := range n {
				subs[i] = h.Subscribe("ws", Filter{}, 1<<20)
				recs[i] = &releaser{t: t}
				subs[i].setDirect(recs[i])
				subs[i].arm(ID{Epoch: 1})
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for seq := uint64(1); ; seq++ {
					select {
					case <-stop:
						return
					default:
					}
					h.Publish(&Event{ID: ID{Epoch: 1, Seq: seq}, WorkspaceID: "ws"})
				}
			})
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					for _, s := range subs[:10] {
						s.ping([]byte("event: heartbeat\ndata: {}\n\n"))
					}
				}
			})
			// Close each subscription once it has taken a few writes, in
			// an order unrelated to the fan-out's.
			for i := n - 1; i >= 0; i-- {
				for recs[i].writes.Load() < 3 {
					runtime.Gosched()
				}
				subs[i].Close()
				recs[i].released.Store(true)
			}
			close(stop)
			wg.Wait()
			h.workers.Wait()
		})
	}
}

// frames records what WriteNow was given.
type frames struct {
	mu  sync.Mutex
	got []string
}

func (f *frames) WriteNow(b []byte) (taken, partial bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, string(b))
	return true, false
}

// A live reader whose filter hides a run of events gets an id-only frame
// with the last of them every tenth of the retention (here 20: every
// second one), on the plain and the parallel fan-out; broadcast events
// (presence, typing) it does not ask for count for nothing, and never
// make an "id: 0" frame.
func TestHiddenRunGetsIDOnlyFrames(t *testing.T) {
	for _, n := range []int{1, parallelFanOut + 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			h := NewHub(HubConfig{Retention: 20})
			defer h.Close()
			recs := make([]*frames, n)
			for i := range n {
				s := h.Subscribe("ws", Filter{Types: []string{"chat.*"}}, 1<<10)
				defer s.Close()
				recs[i] = &frames{}
				s.setDirect(recs[i])
				s.arm(ID{Epoch: 1})
			}
			for range 5 {
				h.PublishEphemeral(&Event{Type: "typing.started", WorkspaceID: "ws"})
			}
			for seq := uint64(1); seq <= 5; seq++ {
				h.Publish(&Event{ID: ID{Epoch: 1, Seq: seq}, Type: "approval.created", WorkspaceID: "ws"})
			}
			h.workers.Wait()
			for i, r := range recs {
				r.mu.Lock()
				got := r.got
				r.mu.Unlock()
				if want := []string{"id: 1-2\n\n", "id: 1-4\n\n"}; !slices.Equal(got, want) {
					t.Fatalf("subscriber %d got %q; want %q", i, got, want)
				}
			}
		})
	}
}

// On an ordered feed the first event of a newer epoch is no hole in what
// the hub fans out (every event of the old one was notified before it),
// so it comes without a resync; anything else after a different epoch
// does, and an older epoch's first event is no successor. Without an
// ordered feed (Redis Cluster: notifications cross the cluster bus) every
// epoch change resyncs.
func TestHubNewEpochFirstEventIsNoHole(t *testing.T) {
	for _, ordered := range []bool{true, false} {
		h := NewHub(HubConfig{OrderedFeed: ordered})
		s := h.Subscribe("ws", Filter{}, 64)
		for _, id := range []ID{{Epoch: 5, Seq: 1}, {Epoch: 5, Seq: 2}, {Epoch: 7, Seq: 1}, {Epoch: 6, Seq: 1}, {Epoch: 9, Seq: 4}} {
			h.Publish(&Event{ID: id, WorkspaceID: "ws"})
		}
		var kinds []string
		for {
			d, ok, _ := s.Pop()
			if !ok {
				break
			}
			k := "resync"
			if d.Kind != KindResync {
				k = "event " + d.Event.ID.String()
			}
			kinds = append(kinds, k)
		}
		s.Close()
		h.Close()
		want := []string{"event " + ID{5, 1}.String(), "event " + ID{5, 2}.String(), "event " + ID{7, 1}.String(),
			"resync", "event " + ID{6, 1}.String(), "resync", "event " + ID{9, 4}.String()}
		if !ordered {
			want = slices.Insert(want, 2, "resync")
		}
		if !slices.Equal(kinds, want) {
			t.Fatalf("ordered feed %v: deliveries %q; want %q", ordered, kinds, want)
		}
	}
}
