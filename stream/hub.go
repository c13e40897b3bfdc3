package stream

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// ErrTooManyWorkspaces is the reason a subscription starts closed: this
// node already follows as many workspaces as it was allowed to.
var ErrTooManyWorkspaces = errors.New("node follows too many workspaces")

// ErrSlowSubscriber is the reason a subscription was closed when its queue
// was full: its reader fell behind. The reader resumes from the log.
var ErrSlowSubscriber = errors.New("subscriber too slow")

// Delivery is one item of a subscription's queue.
type Delivery struct {
	// Event is the next event (nil for a resync marker). An event with the
	// zero ID is ephemeral (see Log.Broadcast).
	Event *Event
}

// resyncMarker is the Event of a resync Delivery.
var resyncMarker = &Event{Type: "resync"}

// Resync reports a resync marker: the node may have missed events before
// the next delivery (the Redis notification connection dropped, or a hole
// appeared in the numbering), so the reader must read the log from its own
// last id before trusting deliveries again.
func (d Delivery) Resync() bool { return d.Event == resyncMarker }

// wakeMarker is the Event of a Delivery that only wakes the reader: a
// direct write left part of a frame for it to finish (see DirectWriter).
var wakeMarker = &Event{Type: "wake"}

// DirectWriter lets the hub's fan-out write a live event straight to a
// subscriber's connection while the subscriber's own goroutine is parked,
// caught up, with nothing queued: one write(2) per delivery instead of a
// queue hand-off, a goroutine wake-up and a write. A Tail arms it only in
// that state, so events still reach the connection exactly once and in
// order; anything else (a backlog, a resync, a full socket) goes through
// the queue.
type DirectWriter interface {
	// WriteNow writes frame without blocking: the frame of the event id, or,
	// for the zero id, an ephemeral frame (a broadcast, a heartbeat). taken
	// reports that the frame was written, whole or in part; partial, that a
	// remainder was kept for the reader's goroutine to finish, which the
	// hub then wakes. Nothing written (a full socket buffer, an error) is
	// !taken: the event goes through the queue and the goroutine meets the
	// error itself.
	//
	// The hub calls it under the subscription's lock, and never once
	// Subscription.Close (or the hub's own close of it) has returned: the
	// reader may release what WriteNow writes to from then on.
	WriteNow(id ID, frame []byte) (taken, partial bool)
}

// Filter selects the events a reader may and wants to see.
type Filter struct {
	// Types are patterns from ParseTypes; empty means every type of the
	// log, and no ephemeral events.
	Types []string
	// UserID is the authenticated reader: events targeted at another user
	// never match.
	UserID string
}

// Match reports whether e passes the filter. Ephemeral events (presence,
// typing: the zero ID) are opt-in: they match only a pattern that names
// them, such as "presence.*", "typing.*" or "*", never the empty filter,
// so that a plain stream of a workspace of thousands is not sent every
// join and leave of the others.
func (f Filter) Match(e *Event) bool {
	if e.TargetUserID != "" && e.TargetUserID != f.UserID {
		return false
	}
	if len(f.Types) == 0 {
		return !e.ID.IsZero()
	}
	for _, p := range f.Types {
		if p == "*" || p == e.Type || (strings.HasSuffix(p, ".*") && strings.HasPrefix(e.Type, p[:len(p)-1])) {
			return true
		}
	}
	return false
}

// Hub fans the events a node learns of out to that node's subscribers. Each
// log implementation owns one and feeds it, per workspace, in log order:
// Memory from Append, redisstream from its single notification reader.
//
// Fan-out never blocks the feeder: a delivery is either a non-blocking
// write straight to an armed subscriber's connection (DirectWriter) or an
// entry in its bounded queue, and a subscriber whose queue is full is
// closed with ErrSlowSubscriber so that its reader resumes from the log
// without slowing anyone else. A large workspace fans out on a worker of
// its own (see publish).
type Hub struct {
	maxTopics int

	mu     sync.Mutex // guards topics and closed
	topics map[string]*topic
	closed bool

	workers sync.WaitGroup // fan-out workers of large topics (see publish)
}

type topic struct {
	mu   sync.Mutex // guards subs, last, hint, gen, scratch, and every delivery to and close of a subscription
	subs map[*Subscription]struct{}
	last ID // last event fanned out, zero before the first
	// hint is a store head a reader read (NoteHead) while last was zero,
	// with no resync since: Subscription.Head's answer until last is set.
	hint ID
	gen  uint64 // counts resyncs, so that a head read across one is not noted
	// scratch is fanOut's list of a large topic's subscribers, kept to
	// save its allocation per event.
	scratch []*Subscription
	n       atomic.Int32 // len(subs), read without mu to pick publish's path

	pmu     sync.Mutex // guards pending and busy
	pending []pending  // events waiting for the topic's worker, in order
	busy    bool       // a worker owns the topic's fan-out
}

// pending is an event handed to a topic's fan-out worker.
type pending struct {
	e         *Event
	ephemeral bool
}

// NewHub returns an empty hub that follows at most maxWorkspaces
// workspaces at once (0: no limit).
func NewHub(maxWorkspaces int) *Hub {
	return &Hub{maxTopics: maxWorkspaces, topics: make(map[string]*topic)}
}

// Subscription is a reader's registration with a Hub.
type Subscription struct {
	hub    *Hub
	ws     string
	t      *topic
	filter Filter
	done   bool  // guarded by t.mu: dropped from the topic
	err    error // guarded by t.mu: why the hub dropped it
	head   ID    // the topic's last event when s subscribed, if known
	gen    uint64
	dw     DirectWriter // guarded by t.mu; set once by SetDirect

	// The queue is a slice that grows on demand up to size, not a channel
	// allocated at its bound: with direct writes most live streams never
	// queue anything, and 256 idle slots were 2 KiB of every connection.
	// qmu also orders direct writes against the queue: every send disarms
	// under qmu, and the reader arms under qmu only while q is empty.
	qmu    sync.Mutex
	q      []Delivery // guarded by qmu: q[qhead:] are queued, oldest first
	qhead  int
	size   int
	closed bool          // guarded by qmu: nothing more will be queued
	ready  chan struct{} // holds a token when something was queued or closed
	armed  bool          // guarded by qmu: the fan-out may write directly
	dlast  ID            // guarded by qmu: the last event written, directly or not
}

// newSubscription returns an empty subscription with a queue of size.
func newSubscription(h *Hub, workspace string, t *topic, f Filter, size int) *Subscription {
	return &Subscription{hub: h, ws: workspace, t: t, filter: f, size: size, ready: make(chan struct{}, 1)}
}

// signal leaves a token in ready, without blocking.
func (s *Subscription) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Ready receives when deliveries may be queued or the subscription ended:
// the reader then calls Pop until it reports nothing queued. It may also
// receive when a previous Pop already took everything.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Pop removes the oldest queued delivery (ok). With nothing queued, open
// reports whether more may come: false once the hub dropped the
// subscription (Err says why) or it was closed.
func (s *Subscription) Pop() (d Delivery, ok, open bool) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.qhead == len(s.q) {
		return Delivery{}, false, !s.closed
	}
	d = s.q[s.qhead]
	s.q[s.qhead] = Delivery{}
	s.qhead++
	if s.qhead == len(s.q) {
		// Empty: start over, and give back what a burst grew.
		s.qhead = 0
		s.q = s.q[:0]
		if cap(s.q) > 16 {
			s.q = nil
		}
	}
	return d, true, true
}

// queued returns how many deliveries wait; qmu must be held.
func (s *Subscription) queued() int { return len(s.q) - s.qhead }

// SetDirect lets the fan-out write to dw while the reader has armed the
// subscription (Arm). Call it once, before the first Arm.
func (s *Subscription) SetDirect(dw DirectWriter) {
	s.t.mu.Lock()
	s.dw = dw
	s.t.mu.Unlock()
}

// Arm lets the fan-out write events after last straight to the
// subscription's DirectWriter, as long as nothing is queued. The reader
// calls it just before it waits on Ready, and Disarm as soon as it wakes.
func (s *Subscription) Arm(last ID) {
	s.qmu.Lock()
	s.dlast = last
	s.armed = s.queued() == 0 && !s.closed
	s.qmu.Unlock()
}

// Disarm stops direct writes and returns the last event written, the one
// passed to Arm if none was written directly since.
func (s *Subscription) Disarm() ID {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.armed = false
	return s.dlast
}

// Ping writes beat, an ephemeral frame such as a heartbeat, to the
// subscription's DirectWriter if the reader is parked with nothing queued,
// and reports whether it did. It never queues beat: a reader that is not
// parked is busy writing anyway. When events the reader's filter hides
// have passed since its last delivery, the frame is preceded by an id-only
// frame with the last of them (see Covered), so that its resume point
// moves past them.
func (s *Subscription) Ping(beat []byte) bool {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if s.done || s.dw == nil {
		return false
	}
	o := queueIt
	if last := s.t.last; s.hiddenSince(last) {
		o = s.direct(last, appendPosition(make([]byte, 0, len(beat)+40), last, beat))
	}
	if o == queueIt {
		o = s.direct(ID{}, beat)
	}
	if o == writtenIn {
		s.send(Delivery{Event: wakeMarker})
	}
	return o != queueIt
}

// hiddenSince reports whether the reader is armed at an event before last,
// the topic's newest; t.mu must be held.
func (s *Subscription) hiddenSince(last ID) bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return s.armed && !last.IsZero() && last.Epoch == s.dlast.Epoch && last.Seq > s.dlast.Seq
}

// appendPosition appends an id-only frame for id, then rest.
func appendPosition(b []byte, id ID, rest []byte) []byte {
	b = append(b, "id: "...)
	b = id.append(b)
	b = append(b, "\n\n"...)
	return append(b, rest...)
}

// Covered returns the newest event the hub has fanned out on the
// workspace, when it is after pos and everything between was shown or
// hidden: the reader, caught up at pos and live, has nothing queued, so
// every event up to it that its filter matches was delivered, and the rest
// were ones it may not see. The reader can then move its resume point
// there, so that a stream filtered by type, or a reader that events target
// others than, is not reset for having missed nothing once retention
// passes its last visible event.
//
// It holds only for a reader whose pos comes from a log read made after
// subscribing (or from Head), with no resync pending: the hub numbers
// what it fans out and queues a resync marker on any hole, so an empty
// queue means no hole either.
func (s *Subscription) Covered(pos ID) (ID, bool) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	last := s.t.last
	if s.done || last.IsZero() || last.Epoch != pos.Epoch || last.Seq <= pos.Seq {
		return ID{}, false
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.queued() > 0 {
		return ID{}, false
	}
	return last, true
}

// Outcomes of Subscription.direct.
const (
	queueIt   = iota // not written: send it through the queue
	written          // written in full
	writtenIn        // written in part: wake the reader to finish it
)

// direct tries to hand the frame of event id to the DirectWriter, if s has
// one. It touches only s's own state (not t.subs), so that a large topic's
// fan-out can run it on several goroutines at once; the caller acts on the
// outcome under t.mu, which it holds (so s.dw is stable).
func (s *Subscription) direct(id ID, frame []byte) int {
	if s.dw == nil {
		return queueIt
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if !s.armed || (!id.IsZero() && (id.Epoch != s.dlast.Epoch || id.Seq <= s.dlast.Seq)) {
		// Not armed, or not plainly the next event: the reader's
		// goroutine sorts it out (a new epoch means reading the log).
		return queueIt
	}
	taken, partial := s.dw.WriteNow(id, frame)
	switch {
	case !taken:
		return queueIt
	case !id.IsZero():
		s.dlast = id
	}
	if partial {
		s.armed = false
		return writtenIn
	}
	return written
}

// deliver hands e to s directly or through its queue; t.mu must be held.
func (s *Subscription) deliver(e *Event) {
	s.settle(e, s.direct(e.ID, e.Frame()))
}

// settle queues what direct did not write; t.mu must be held.
func (s *Subscription) settle(e *Event, outcome int) {
	switch outcome {
	case queueIt:
		s.send(Delivery{Event: e})
	case writtenIn:
		s.send(Delivery{Event: wakeMarker})
	}
}

// Head returns the last event the hub had fanned out on the workspace when
// s subscribed, if it knew one (it does not before the topic's first event,
// nor after a resync). Every later event reaches s, in order, so a reader
// that starts "from now" can start there instead of asking the store: on
// Redis that saves a round trip per connecting stream. It may be a little
// behind the store's head (a notification in flight), which only means the
// reader also gets the events in flight.
func (s *Subscription) Head() (ID, bool) { return s.head, !s.head.IsZero() }

// NoteHead records head, read from the store after s subscribed, for the
// next subscriptions' Head while the hub has fanned nothing out: the
// connect burst before a workspace's first event then asks the store once,
// not once per stream. It is dropped if a resync came in between, since
// the feed may have missed events after head. It never affects which
// events the hub drops as repeats.
func (s *Subscription) NoteHead(head ID) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if s.t.gen == s.gen && s.t.last.IsZero() {
		s.t.hint = head
	}
}

// Err returns why the hub closed the queue: ErrSlowSubscriber or ErrClosed,
// or nil while it is open or after the reader's own Close.
func (s *Subscription) Err() error {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	return s.err
}

// Close unregisters the subscription. It is idempotent.
func (s *Subscription) Close() {
	s.t.mu.Lock()
	s.closeLocked(nil)
	last := len(s.t.subs) == 0
	s.t.mu.Unlock()
	// Only the last subscriber out takes the hub's lock: when one event
	// answers thousands of long polls they all close at once, and each
	// taking h.mu was a convoy (the mutex profile's top entry).
	if last {
		s.hub.release(s.ws, s.t)
	}
}

// closeLocked drops the subscription once; t.mu must be held. The reader
// still pops what was queued before, then sees the end.
func (s *Subscription) closeLocked(reason error) {
	if s.done {
		return
	}
	s.done = true
	s.err = reason
	delete(s.t.subs, s)
	s.t.n.Store(int32(len(s.t.subs)))
	s.qmu.Lock()
	s.closed = true
	s.armed = false
	if reason == ErrClosed {
		// The log is shutting down: what is still queued (a resync after
		// the feed resubscribed, say) would reach a reader that must stop,
		// so drop it and let the reader see the end now.
		s.q, s.qhead = nil, 0
	}
	s.qmu.Unlock()
	s.signal()
}

// send enqueues d without blocking, or drops the subscription when its
// queue is full; t.mu must be held.
func (s *Subscription) send(d Delivery) {
	s.qmu.Lock()
	s.armed = false
	if s.queued() >= s.size {
		s.qmu.Unlock()
		s.closeLocked(ErrSlowSubscriber)
		return
	}
	if len(s.q) == cap(s.q) && s.qhead > 0 {
		// Full slice, taken from the front: slide down rather than grow.
		n := copy(s.q, s.q[s.qhead:])
		clear(s.q[n:])
		s.q, s.qhead = s.q[:n], 0
	}
	s.q = append(s.q, d)
	s.qmu.Unlock()
	s.signal()
}

// Subscribe registers a subscription to workspace with a queue of size
// deliveries (at least 1).
func (h *Hub) Subscribe(workspace string, f Filter, size int) *Subscription {
	if size < 1 {
		size = 1
	}
	h.mu.Lock()
	t := h.topics[workspace]
	if t == nil && h.maxTopics > 0 && len(h.topics) >= h.maxTopics {
		h.mu.Unlock()
		// A subscription that starts closed, on a topic of its own that
		// the hub never sees.
		t = &topic{subs: make(map[*Subscription]struct{})}
		s := newSubscription(h, workspace, t, f, size)
		t.mu.Lock()
		s.closeLocked(ErrTooManyWorkspaces)
		t.mu.Unlock()
		return s
	}
	if t == nil {
		t = &topic{subs: make(map[*Subscription]struct{})}
		h.topics[workspace] = t
	}
	closed := h.closed
	// Taking t.mu before releasing h.mu keeps release from deleting the
	// topic between lookup and registration.
	t.mu.Lock()
	h.mu.Unlock()
	s := newSubscription(h, workspace, t, f, size)
	s.head, s.gen = t.last, t.gen
	if s.head.IsZero() {
		s.head = t.hint
	}
	t.subs[s] = struct{}{}
	t.n.Store(int32(len(t.subs)))
	if closed {
		s.closeLocked(ErrClosed)
	}
	t.mu.Unlock()
	return s
}

// release drops the topic of workspace once it has no subscribers.
func (h *Hub) release(workspace string, t *topic) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.subs) == 0 && h.topics[workspace] == t {
		delete(h.topics, workspace)
	}
}

func (h *Hub) topic(workspace string) *topic {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.topics[workspace]
}

// Publish fans e out to the subscribers of its workspace. Calls for one
// workspace must come in log order from one goroutine at a time. An event
// that repeats or precedes the last one is dropped; one that leaves a hole
// or starts a new epoch is preceded by a resync marker, so that readers
// fill the hole from the log.
func (h *Hub) Publish(e *Event) { h.publish(e, false) }

// PublishEphemeral fans e, which has no id, out to the subscribers of its
// workspace whose filter matches. It neither checks nor moves the topic's
// position.
func (h *Hub) PublishEphemeral(e *Event) { h.publish(e, true) }

// publish fans e out on the caller's goroutine for an ordinary topic. A
// large one is handed to a worker of its own, in order: its fan-out takes
// tens of milliseconds of direct writes, which must hold up neither the
// caller (the embedded log holds its lock, the Redis feed serves every
// workspace) nor other workspaces.
func (h *Hub) publish(e *Event, ephemeral bool) {
	t := h.topic(e.WorkspaceID)
	if t == nil {
		return
	}
	t.pmu.Lock()
	if !t.busy && t.n.Load() < parallelFanOut {
		t.pmu.Unlock()
		// No worker can start meanwhile: calls for one workspace come
		// one at a time.
		t.mu.Lock()
		t.publishLocked(e, ephemeral)
		t.mu.Unlock()
		return
	}
	t.pending = append(t.pending, pending{e: e, ephemeral: ephemeral})
	start := !t.busy
	t.busy = true
	t.pmu.Unlock()
	if start {
		h.workers.Add(1)
		// Exits once it has fanned out everything pending.
		go h.work(t)
	}
}

// work fans out t's pending events in order until none is left.
func (h *Hub) work(t *topic) {
	defer h.workers.Done()
	for {
		t.pmu.Lock()
		if len(t.pending) == 0 {
			t.busy = false
			t.pending = nil
			t.pmu.Unlock()
			return
		}
		p := t.pending[0]
		t.pending[0] = pending{}
		t.pending = t.pending[1:]
		t.pmu.Unlock()
		t.mu.Lock()
		t.publishLocked(p.e, p.ephemeral)
		t.mu.Unlock()
	}
}

// publishLocked fans e out; t.mu must be held.
func (t *topic) publishLocked(e *Event, ephemeral bool) {
	if !ephemeral {
		if !t.last.IsZero() && e.ID != t.last.Next() {
			if e.ID.Epoch == t.last.Epoch && e.ID.Seq <= t.last.Seq {
				return // a duplicate notification
			}
			for s := range t.subs {
				s.send(Delivery{Event: resyncMarker})
			}
		}
		t.last = e.ID
	}
	t.fanOut(e)
}

// parallelFanOut is the number of subscribers from which a topic fans out
// on a worker of its own (publish) and spreads its direct writes over
// GOMAXPROCS goroutines (fanOut). Below it, starting and waking them costs
// more than it saves.
const parallelFanOut = 1024

// fanOut delivers e to every subscriber whose filter matches; t.mu must be
// held. Direct writes are most of the cost (one write(2) each), so for a
// large topic they run on every P, which is what lets one event reach
// thousands of subscribers in a few tens of milliseconds; whatever they did
// not write is queued afterwards, still under t.mu, so each subscriber
// sees e before the topic's next event either way.
func (t *topic) fanOut(e *Event) {
	procs := runtime.GOMAXPROCS(0)
	if len(t.subs) < parallelFanOut || procs == 1 {
		for s := range t.subs {
			if s.filter.Match(e) {
				s.deliver(e)
			}
		}
		return
	}
	subs := t.scratch[:0]
	for s := range t.subs {
		if s.filter.Match(e) {
			subs = append(subs, s)
		}
	}
	outcomes := make([]int8, len(subs))
	chunk := (len(subs) + procs - 1) / procs
	var wg sync.WaitGroup
	for lo := chunk; lo < len(subs); lo += chunk {
		wg.Go(func() { directAll(e, subs[lo:min(lo+chunk, len(subs))], outcomes[lo:]) })
	}
	directAll(e, subs[:min(chunk, len(subs))], outcomes)
	wg.Wait()
	for i, s := range subs {
		s.settle(e, int(outcomes[i]))
	}
	clear(subs) // hold no closed subscription
	t.scratch = subs[:0]
}

// directAll runs direct for each of subs, recording the outcomes.
func directAll(e *Event, subs []*Subscription, outcomes []int8) {
	for i, s := range subs {
		outcomes[i] = int8(s.direct(e.ID, e.Frame()))
	}
}

// Resync sends a resync marker to every subscriber: the feeder may have
// missed events (its connection to Redis dropped and came back).
func (h *Hub) Resync() {
	h.mu.Lock()
	ts := make([]*topic, 0, len(h.topics))
	for _, t := range h.topics {
		ts = append(ts, t)
	}
	h.mu.Unlock()
	for _, t := range ts {
		t.mu.Lock()
		t.last = ID{} // unknown until the next event
		t.hint = ID{}
		t.gen++
		for s := range t.subs {
			s.send(Delivery{Event: resyncMarker})
		}
		t.mu.Unlock()
	}
}

// Close closes every subscription with ErrClosed; later ones start closed.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	ts := h.topics
	h.topics = make(map[string]*topic)
	h.mu.Unlock()
	for _, t := range ts {
		t.mu.Lock()
		for s := range t.subs {
			s.closeLocked(ErrClosed)
		}
		t.mu.Unlock()
	}
	h.workers.Wait()
}

// Subscribers returns how many subscriptions are open, for metrics and
// tests.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, t := range h.topics {
		t.mu.Lock()
		n += len(t.subs)
		t.mu.Unlock()
	}
	return n
}
