package stream

import (
	"errors"
	"sync"
)

// ErrTooManyWorkspaces is the reason a subscription starts closed: this
// node already follows as many workspaces as it was allowed to.
var ErrTooManyWorkspaces = errors.New("node follows too many workspaces")

// ErrSlowSubscriber is the reason a subscription was closed when its queue
// was full: its reader fell behind. The reader resumes from the log.
var ErrSlowSubscriber = errors.New("subscriber too slow")

// Kind says what a Delivery is.
type Kind uint8

const (
	// KindEvent is a log event, in log order (the hub drops repeats).
	KindEvent Kind = iota + 1
	// KindEphemeral is a broadcast event (presence, typing): the zero ID,
	// not in the log, never replayed (see Log.Broadcast).
	KindEphemeral
	// KindResync says the node may have missed events before the next
	// delivery (the Redis notification connection dropped, or a hole
	// appeared in the numbering): the reader must read the log from its
	// own last id before trusting deliveries again. Event is nil.
	KindResync
	// kindFinish wakes a Tail whose DirectWriter kept part of a frame for
	// it to finish (see direct.go). Event is nil; only Tails see it.
	kindFinish
)

// Delivery is one item of a subscription's queue.
type Delivery struct {
	Kind  Kind
	Event *Event // for KindEvent and KindEphemeral
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
	dw     DirectWriter // guarded by t.mu; set once by setDirect
	// hiddenRun counts the events the fan-out passed that the filter
	// hides, since the last it matched (guarded by t.mu; passHidden).
	hiddenRun uint64

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
	armed  bool          // guarded by qmu: the fan-out may write directly (direct.go)
	dlast  ID            // guarded by qmu: the last event written, directly or not
}

// newSubscription returns an empty subscription with a queue of size.
func newSubscription(h *Hub, workspace string, t *topic, f Filter, size int) *Subscription {
	return &Subscription{hub: h, ws: workspace, t: t, filter: f, size: size, ready: make(chan struct{}, 1)}
}

// succeeds reports whether id directly follows prev in what s's topic fans
// out (topic.succeeds; fixed for the topic's life).
func (s *Subscription) succeeds(prev, id ID) bool { return s.t.succeeds(prev, id) }

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

// Head returns the last event the hub had fanned out on the workspace when
// s subscribed, if it knew one (it does not before the topic's first event,
// nor after a resync). Every later event reaches s, in order, so a reader
// that starts "from now" can start there instead of asking the store: on
// Redis that saves a round trip per connecting stream. It may be a little
// behind the store's head (a notification in flight), which only means the
// reader also gets the events in flight.
func (s *Subscription) Head() (ID, bool) { return s.head, !s.head.IsZero() }

// noteHead records head, read from the store after s subscribed, for the
// next subscriptions' Head while the hub has fanned nothing out: the
// connect burst before a workspace's first event then asks the store once,
// not once per stream. It is dropped if a resync came in between, since
// the feed may have missed events after head. It never affects which
// events the hub drops as repeats.
func (s *Subscription) noteHead(head ID) {
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
