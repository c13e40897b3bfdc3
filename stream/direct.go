package stream

// Direct writes: the hub's fan-out writes a live event straight to a
// subscriber's connection while the subscriber's own goroutine (a Tail's
// reader) is parked, caught up, with nothing queued. That is one write(2)
// per delivery instead of a queue hand-off, a goroutine wake-up and a
// write, and it is most of why a delivery is cheap. Everything about it is
// in this file.
//
// Lock order: Hub.mu → topic.mu → Subscription.qmu (topic.pmu is never
// held with another). The DirectWriter's own lock (handlers/sock) is taken
// last, by WriteNow, and never waited for.
//
// Invariants, each kept by the code named:
//  1. WriteNow is called only under topic.mu and Subscription.qmu, and
//     only while the subscription is armed (direct).
//  2. Only the reader arms (arm), and only with an empty queue on an open
//     subscription; every enqueue disarms first, under qmu (send). So
//     while armed the reader's goroutine is parked in Tail.live, writes
//     nothing, and the fan-out is the connection's only writer.
//  3. dlast is the last event written to the connection by either path.
//     The fan-out writes only the plainly next event (same epoch, later
//     seq); anything else (a repeat, a new epoch) goes through the queue,
//     where the reader sorts it out (direct).
//  4. A partial write disarms, and queues a kindFinish delivery that
//     makes the reader finish the frame before anything else; the writer
//     itself refuses direct writes while a remainder is pending
//     (DirectWriter).
//  5. Once Subscription.Close (or the hub's close) has returned, WriteNow
//     is never called again: closeLocked disarms under topic.mu and qmu.
//     The connection's owner (handlers/sock) additionally refuses every
//     write after its own Close, under its lock, so a connection closed
//     early, in whatever order, is never written through a reused
//     descriptor.
//  6. Covered moves a reader past hidden events only while it is live with
//     an empty queue: the hub queues a resync on any hole in what it fans
//     out, so an empty queue means the reader was offered every event up
//     to topic.last.
//  7. ping queues nothing but kindFinish: a reader that is not parked is
//     writing anyway.

// DirectWriter lets the hub's fan-out write a live event straight to a
// subscriber's connection (see the invariants above). A Tail arms it only
// while its reader is parked, caught up, with nothing queued, so events
// still reach the connection exactly once and in order; anything else (a
// backlog, a resync, a full socket) goes through the queue.
type DirectWriter interface {
	// WriteNow writes frame, one SSE frame or a few, without blocking.
	// taken reports that it was written, whole or in part; partial, that
	// a remainder was kept for the reader's goroutine to finish, which
	// the hub then wakes. Nothing written (a full socket buffer, a closed
	// connection, another write in progress, a remainder still pending)
	// is !taken: the event goes through the queue and the reader meets
	// any error itself.
	//
	// The hub calls it under the subscription's lock, and never once
	// Subscription.Close (or the hub's own close of it) has returned.
	WriteNow(frame []byte) (taken, partial bool)
}

// outcome is what a direct write did.
type outcome uint8

const (
	queued        outcome = iota // not written: it goes through the queue
	written                      // written in full
	writtenInPart                // written in part: the reader finishes it
)

// setDirect lets the fan-out write to dw while the reader has armed the
// subscription. It is called once, before the first arm.
func (s *Subscription) setDirect(dw DirectWriter) {
	s.t.mu.Lock()
	s.dw = dw
	s.t.mu.Unlock()
}

// arm lets the fan-out write events after last straight to the
// subscription's DirectWriter, as long as nothing is queued. The reader
// calls it just before it waits on Ready, and disarm as soon as it wakes.
func (s *Subscription) arm(last ID) {
	s.qmu.Lock()
	s.dlast = last
	s.armed = s.queued() == 0 && !s.closed
	s.qmu.Unlock()
}

// disarm stops direct writes and returns the last event written, the one
// passed to arm if none was written directly since.
func (s *Subscription) disarm() ID {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.armed = false
	return s.dlast
}

// direct tries to hand the frame of event id (the zero ID: an ephemeral
// frame) to the DirectWriter, if s has one. It touches only s's own state
// (not t.subs), so that a large topic's fan-out can run it on several
// goroutines at once; the caller acts on the outcome under t.mu, which it
// holds (so s.dw is stable).
func (s *Subscription) direct(id ID, frame []byte) outcome {
	if s.dw == nil {
		return queued
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if !s.armed || (!id.IsZero() && (id.Epoch != s.dlast.Epoch || id.Seq <= s.dlast.Seq)) {
		// Not armed, or not plainly the next event: the reader's
		// goroutine sorts it out (a new epoch means reading the log).
		return queued
	}
	taken, partial := s.dw.WriteNow(frame)
	switch {
	case !taken:
		return queued
	case !id.IsZero():
		s.dlast = id
	}
	if partial {
		s.armed = false
		return writtenInPart
	}
	return written
}

// deliver hands e to s directly or through its queue, and says which;
// t.mu must be held.
func (s *Subscription) deliver(e *Event) outcome {
	o := s.direct(e.ID, e.Frame())
	s.settle(e, o)
	return o
}

// settle queues what direct did not write; t.mu must be held.
func (s *Subscription) settle(e *Event, o outcome) {
	switch o {
	case queued:
		kind := KindEvent
		if e.ID.IsZero() {
			kind = KindEphemeral
		}
		s.send(Delivery{Kind: kind, Event: e})
	case writtenInPart:
		s.send(Delivery{Kind: kindFinish})
	}
}

// ping writes beat, an ephemeral frame such as a heartbeat (or nothing,
// when beat is empty), to the subscription's DirectWriter if the reader is
// parked with nothing queued, and reports whether it wrote anything. When events the reader's filter hides have
// passed since its last delivery, the frame is preceded by an id-only
// frame with the last of them (see Covered), so that its resume point
// moves past them.
func (s *Subscription) ping(beat []byte) bool {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if s.done || s.dw == nil {
		return false
	}
	o := queued
	if last := s.t.last; s.hiddenSince(last) {
		o = s.direct(last, appendPosition(make([]byte, 0, len(beat)+40), last, beat))
	}
	if o == queued && len(beat) > 0 {
		o = s.direct(ID{}, beat)
	}
	if o == writtenInPart {
		s.send(Delivery{Kind: kindFinish})
	}
	return o != queued
}

// shows reports whether s's filter shows e, counting an event it hides
// toward s's hidden run (passHidden); t.mu must be held. frame is e's
// id-only frame, made by the first reader that needs it.
func (s *Subscription) shows(e *Event, frame *[]byte) bool {
	if s.filter.Match(e) {
		s.hiddenRun = 0
		return true
	}
	s.passHidden(e.ID, frame)
	return false
}

// passHidden notes that the fan-out passed the event id, which s's filter
// hides; t.mu must be held. Every Hub.positionEvery such events in a row,
// an armed reader gets an id-only frame with id, as ping gives one with
// the heartbeat: armed means nothing is queued and every event before id
// was offered to it (invariant 6), so its resume point may move to id.
// Broadcast events (presence, typing: the zero id) are not counted: they
// use up no retention, and an id-only frame of theirs would say "id: 0".
// Counting costs no lock; a frame is written once every positionEvery.
func (s *Subscription) passHidden(id ID, frame *[]byte) {
	if id.IsZero() {
		return
	}
	s.hiddenRun++
	if s.hiddenRun < s.hub.positionEvery || s.dw == nil {
		return
	}
	s.hiddenRun = 0
	if *frame == nil {
		*frame = appendPosition(make([]byte, 0, 40), id, nil)
	}
	if s.direct(id, *frame) == writtenInPart {
		s.send(Delivery{Kind: kindFinish})
	}
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
// what it fans out and queues a resync on any hole, so an empty queue
// means no hole either.
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
