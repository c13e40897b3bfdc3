package stream

import (
	"errors"
	"strings"
	"sync"
)

// ErrTooManyWorkspaces is the reason a subscription starts closed: this
// node already follows as many workspaces as it was allowed to.
var ErrTooManyWorkspaces = errors.New("node follows too many workspaces")

// ErrSlowSubscriber is the reason a subscription was closed when its queue
// was full: its reader fell behind. The reader resumes from the log.
var ErrSlowSubscriber = errors.New("subscriber too slow")

// Delivery is one item of a subscription's queue. It is one pointer wide,
// because every subscriber's queue is allocated at its full bound.
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

// Filter selects the events a reader may and wants to see.
type Filter struct {
	// Types are patterns from ParseTypes; empty means every type.
	Types []string
	// UserID is the authenticated reader: events targeted at another user
	// never match.
	UserID string
}

// Match reports whether e passes the filter.
func (f Filter) Match(e *Event) bool {
	if e.TargetUserID != "" && e.TargetUserID != f.UserID {
		return false
	}
	if len(f.Types) == 0 {
		return true
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
// Fan-out never blocks the feeder: every subscription has a bounded queue,
// and one that is full is closed with ErrSlowSubscriber so that its reader
// resumes from the log without slowing anyone else.
type Hub struct {
	maxTopics int

	mu     sync.Mutex // guards topics and closed
	topics map[string]*topic
	closed bool
}

type topic struct {
	mu   sync.Mutex // guards subs, last and every send on and close of a subscription channel
	subs map[*Subscription]struct{}
	last ID // last event fanned out, zero before the first
}

// NewHub returns an empty hub that follows at most maxWorkspaces
// workspaces at once (0: no limit).
func NewHub(maxWorkspaces int) *Hub {
	return &Hub{maxTopics: maxWorkspaces, topics: make(map[string]*topic)}
}

// Subscription is a reader's registration with a Hub.
type Subscription struct {
	c      chan Delivery
	hub    *Hub
	ws     string
	t      *topic
	filter Filter
	done   bool  // guarded by t.mu: c is closed
	err    error // guarded by t.mu: why the hub closed c
}

// C returns the queue. It is closed when the hub drops the subscription (Err
// says why) or after Close.
func (s *Subscription) C() <-chan Delivery { return s.c }

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

// closeLocked closes c once; t.mu must be held.
func (s *Subscription) closeLocked(reason error) {
	if s.done {
		return
	}
	s.done = true
	s.err = reason
	delete(s.t.subs, s)
	if reason == ErrClosed {
		// The log is shutting down: what is still queued (a resync after
		// the feed resubscribed, say) would reach a reader that must stop,
		// so drop it and let the reader see the end now.
		for len(s.c) > 0 {
			<-s.c
		}
	}
	close(s.c)
}

// send enqueues d without blocking; t.mu must be held.
func (s *Subscription) send(d Delivery) {
	select {
	case s.c <- d:
	default:
		s.closeLocked(ErrSlowSubscriber)
	}
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
		s := &Subscription{c: make(chan Delivery), hub: h, ws: workspace, t: t, filter: f}
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
	s := &Subscription{c: make(chan Delivery, size), hub: h, ws: workspace, t: t, filter: f}
	t.subs[s] = struct{}{}
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
func (h *Hub) Publish(e *Event) {
	t := h.topic(e.WorkspaceID)
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.last.IsZero() && e.ID != t.last.Next() {
		if e.ID.Epoch == t.last.Epoch && e.ID.Seq <= t.last.Seq {
			return // a duplicate notification
		}
		for s := range t.subs {
			s.send(Delivery{Event: resyncMarker})
		}
	}
	t.last = e.ID
	for s := range t.subs {
		if s.filter.Match(e) {
			s.send(Delivery{Event: e})
		}
	}
}

// PublishEphemeral fans e, which has no id, out to the subscribers of its
// workspace whose filter matches. It neither checks nor moves the topic's
// position.
func (h *Hub) PublishEphemeral(e *Event) {
	t := h.topic(e.WorkspaceID)
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.subs {
		if s.filter.Match(e) {
			s.send(Delivery{Event: e})
		}
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
