package stream

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Hub fans the events a node learns of out to that node's subscribers. Each
// log implementation owns one and feeds it, per workspace, in log order:
// Memory from Append, redisstream from its single notification reader.
//
// Fan-out never blocks the feeder: a delivery is either a non-blocking
// write straight to an armed subscriber's connection (DirectWriter) or an
// entry in its bounded queue, and a subscriber whose queue is full is
// closed with ErrSlowSubscriber so that its reader resumes from the log
// without slowing anyone else. No lock shared between workspaces is held
// during a fan-out: the hub's own lock only finds a workspace's topic, and
// everything after takes that topic's locks (direct.go lists the order).
// A large workspace, and every workspace of a detached hub (the Redis
// feed, which serves them all), fans out on a worker of its own (see
// publish), so one workspace's thousand writes delay no other's events.
type Hub struct {
	maxTopics     int
	detached      bool
	positionEvery uint64
	orderedFeed   bool

	mu     sync.Mutex // guards topics and closed
	topics map[string]*topic
	closed bool

	workers sync.WaitGroup // fan-out workers of large topics (see publish)
}

type topic struct {
	mu   sync.Mutex // guards subs, last, hint, gen, scratch, and every delivery to and close of a subscription
	subs map[*Subscription]struct{}
	last ID // last event fanned out, zero before the first
	// hint is a store head a reader read (noteHead) while last was zero,
	// with no resync since: Subscription.Head's answer until last is set.
	hint ID
	gen  uint64 // counts resyncs, so that a head read across one is not noted
	// scratch is fanOut's list of a large topic's subscribers, kept to
	// save its allocation per event.
	scratch []*Subscription
	n       atomic.Int32 // len(subs), read without mu to pick publish's path
	// orderedFeed is the hub's HubConfig.OrderedFeed.
	orderedFeed bool

	pmu     sync.Mutex // guards pending and busy
	pending []pending  // events waiting for the topic's worker, in order
	busy    bool       // a worker owns the topic's fan-out
}

// pending is an event handed to a topic's fan-out worker.
type pending struct {
	e         *Event
	ephemeral bool
}

// HubConfig configures a Hub. Zero values are defaults.
type HubConfig struct {
	// MaxWorkspaces caps how many workspaces the hub follows at once (0:
	// no cap); see ErrTooManyWorkspaces.
	MaxWorkspaces int
	// Detached makes every workspace fan out on a worker of its own, never
	// on the goroutine that calls Publish: for a feeder that serves every
	// workspace (the Redis notification reader), so that one workspace's
	// fan-out never delays another's events. Otherwise a workspace with
	// fewer than 1,024 subscribers fans out on the caller's goroutine,
	// which must then hold no lock another workspace needs.
	Detached bool
	// Retention is the log's (DefaultRetention when zero). A live reader
	// whose filter hides a tenth of that many events in a row gets an
	// id-only frame with the last of them (see Subscription.passHidden):
	// its resume point keeps up with what it may not see even when a burst
	// of hidden events outruns the heartbeat's id-only frame, and a
	// reconnect from it is not reset.
	Retention int
	// OrderedFeed says that every event reaches Publish in log order over
	// one channel whose loss the feeder reports (Resync): the embedded
	// log, a single Redis. Then the first event of a newer epoch is no
	// hole, and readers live at the old epoch's last event get it without
	// a reset. Not on Redis Cluster, where a shard's notifications cross
	// the cluster bus, which may drop them with no connection lost.
	OrderedFeed bool
}

// NewHub returns an empty hub.
func NewHub(cfg HubConfig) *Hub {
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	return &Hub{maxTopics: cfg.MaxWorkspaces, detached: cfg.Detached, positionEvery: uint64(max(1, cfg.Retention/10)), orderedFeed: cfg.OrderedFeed, topics: make(map[string]*topic)}
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
		t = &topic{subs: make(map[*Subscription]struct{}), orderedFeed: h.orderedFeed}
		s := newSubscription(h, workspace, t, f, size)
		t.mu.Lock()
		s.closeLocked(ErrTooManyWorkspaces)
		t.mu.Unlock()
		return s
	}
	if t == nil {
		t = &topic{subs: make(map[*Subscription]struct{}), orderedFeed: h.orderedFeed}
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

// Following reports whether the hub has subscribers of workspace: a feed
// may skip decoding an event that no one here would be handed. Publish
// would drop it all the same, so a subscriber arriving just after the
// answer misses nothing it would otherwise have had (it reads what it
// missed from the log).
func (h *Hub) Following(workspace string) bool { return h.topic(workspace) != nil }

// Publish fans e out to the subscribers of its workspace. Calls for one
// workspace must come in log order from one goroutine at a time. An event
// that repeats or precedes the last one is dropped; one that leaves a hole
// or starts a new epoch is preceded by a KindResync delivery, so that readers
// fill the hole from the log.
func (h *Hub) Publish(e *Event) { h.publish(e, false) }

// PublishEphemeral fans e, which has no id, out to the subscribers of its
// workspace whose filter matches. It neither checks nor moves the topic's
// position.
func (h *Hub) PublishEphemeral(e *Event) { h.publish(e, true) }

// publish fans e out on the caller's goroutine for an ordinary topic of an
// attached hub. A large one, or any topic of a detached hub, is handed to
// a worker of its own, in order: its fan-out takes up to tens of
// milliseconds of direct writes, which must hold up neither the caller
// (the embedded log holds the workspace's lock) nor, on a feeder that
// serves every workspace, other workspaces.
func (h *Hub) publish(e *Event, ephemeral bool) {
	t := h.topic(e.WorkspaceID)
	if t == nil {
		return
	}
	t.pmu.Lock()
	if !t.busy && !h.detached && t.n.Load() < parallelFanOut {
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
	// A hole in what the hub fans out makes every reader re-read the log.
	if !ephemeral {
		if !t.last.IsZero() && !t.succeeds(t.last, e.ID) {
			if e.ID.Epoch == t.last.Epoch && e.ID.Seq <= t.last.Seq {
				return // a duplicate notification
			}
			for s := range t.subs {
				s.send(Delivery{Kind: KindResync})
			}
		}
		t.last = e.ID
	}
	t.fanOut(e)
}

// succeeds reports whether id directly follows prev in what the topic fans
// out, with no hole between: the next seq, or, on an ordered feed
// (HubConfig.OrderedFeed), the first event of a newer epoch, since each
// event of the old epoch was notified, in order, by the append that stored
// it, before the history was lost and the new epoch began. A reader live
// at prev then missed nothing (Tail delivers id without a reset).
func (t *topic) succeeds(prev, id ID) bool {
	return id == prev.Next() || t.orderedFeed && id.startsEpochAfter(prev)
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
	var pos []byte // e's id-only frame, made once for every reader that passHidden gives one
	if len(t.subs) < parallelFanOut || procs == 1 {
		var n [3]uint64 // by outcome
		for s := range t.subs {
			if s.shows(e, &pos) {
				n[s.deliver(e)]++
			}
		}
		countDeliveries(n[written]+n[writtenInPart], n[queued])
		return
	}
	subs := t.scratch[:0]
	for s := range t.subs {
		if s.shows(e, &pos) {
			subs = append(subs, s)
		}
	}
	outcomes := make([]outcome, len(subs))
	chunk := (len(subs) + procs - 1) / procs
	var wg sync.WaitGroup
	for lo := chunk; lo < len(subs); lo += chunk {
		wg.Go(func() { directAll(e, subs[lo:min(lo+chunk, len(subs))], outcomes[lo:]) })
	}
	directAll(e, subs[:min(chunk, len(subs))], outcomes)
	wg.Wait()
	var n [3]uint64 // by outcome
	for i, s := range subs {
		s.settle(e, outcomes[i])
		n[outcomes[i]]++
	}
	countDeliveries(n[written]+n[writtenInPart], n[queued])
	clear(subs) // hold no closed subscription
	t.scratch = subs[:0]
}

// directAll runs direct for each of subs, recording the outcomes.
func directAll(e *Event, subs []*Subscription, outcomes []outcome) {
	for i, s := range subs {
		outcomes[i] = s.direct(e.ID, e.Frame())
	}
}

// Resync sends a KindResync delivery to every subscriber: the feeder may have
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
			s.send(Delivery{Kind: KindResync})
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
