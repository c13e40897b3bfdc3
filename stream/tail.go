package stream

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// DefaultTailPage is how many events a Tail reads from the log per call
// while catching up.
const DefaultTailPage = 256

// DefaultQueue is the subscription queue a Tail uses when none is given.
const DefaultQueue = 256

// Reason says why Next returned.
type Reason uint8

const (
	// Delivered: the batch holds what to write (events, ephemeral events,
	// a reset) or a Position past events the filter hid.
	Delivered Reason = iota
	// Idle: idle fired. Position may have moved past events the filter
	// hid (see Subscription.Covered), with nothing else to show for it.
	Idle
	// Unfinished: a direct write left part of a frame, which the caller
	// must finish before it writes anything else (see DirectWriter).
	Unfinished
)

// Batch is what Tail.Next returns: the next events a reader must deliver.
type Batch struct {
	// Reason says why Next returned; the batch may be empty.
	Reason Reason
	// Reset reports that the reader's position could not be continued
	// (history trimmed or lost): it must tell its client to refetch state.
	// Position is then the head the log continues from.
	Reset bool
	// Events are the events that pass the filter, in log order, each after
	// the previous batch's Position.
	Events []*Event
	// Ephemeral are broadcast events (presence, typing) that arrived with
	// this batch. They have no id and do not move Position.
	Ephemeral []*Event
	// Written is the last event the fan-out wrote straight to the
	// DirectWriter while Next waited (zero if none): those events are not
	// in Events, and the connection's resume point is already there.
	Written ID
	// Position is the id up to which the log has been handled, filtered-out
	// events included. It is at least the id of the last event.
	Position ID
}

// Tail follows one workspace log from a cursor: it catches up from the log,
// then switches to the node's live deliveries, and delivers every event
// after the cursor exactly once and in log order. Whenever the live feed may
// have a hole (a KindResync delivery, a new epoch) it goes back to the log.
//
// A Tail is used by one goroutine. Close it when done.
type Tail struct {
	log    Log
	ws     string
	filter Filter
	page   int
	queue  int

	last     ID   // handled up to here
	fromHead bool // no cursor: start at the head
	started  bool
	caughtUp bool // the last log read reached the head: deliveries are now live
	sub      *Subscription
	current  atomic.Pointer[Subscription] // sub, for Ping from other goroutines
	direct   DirectWriter
	err      error // ends the tail at the next call
}

// TailConfig configures a Tail. Zero values are defaults.
type TailConfig struct {
	// Filter selects the events delivered.
	Filter Filter
	// Page is the read size while catching up (DefaultTailPage).
	Page int
	// Queue bounds the live queue (DefaultQueue). Falling further behind
	// than this once caught up ends the tail with ErrSlowSubscriber.
	Queue int
}

// NewTail follows workspace from the cursor after (the zero ID: from the
// oldest retained event), or from the head when fromHead is set.
func NewTail(log Log, workspace string, after ID, fromHead bool, cfg TailConfig) *Tail {
	if cfg.Page <= 0 {
		cfg.Page = DefaultTailPage
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	return &Tail{log: log, ws: workspace, filter: cfg.Filter, page: cfg.Page, queue: cfg.Queue, last: after, fromHead: fromHead}
}

// SetDirect lets dw take live events straight from the fan-out while Next
// waits with nothing queued (see DirectWriter). Those events are not
// returned by Next, but Written and Position account for them; Next
// returns an Unfinished batch when a direct write left a remainder for the
// caller to finish.
func (t *Tail) SetDirect(dw DirectWriter) {
	t.direct = dw
	if t.sub != nil {
		t.sub.setDirect(dw)
	}
}

// Position returns the id up to which events have been handed out.
func (t *Tail) Position() ID { return t.last }

// Next returns the next batch. The first call subscribes and reads the log
// without waiting, and may return an empty batch: once it has returned,
// nothing appended afterwards can be missed. Later calls block until there
// is something to deliver, idle fires (an empty batch: time for a
// heartbeat), or ctx is done. idle may be nil.
//
// Errors: ctx's error; ErrSlowSubscriber when the reader fell behind its
// queue while live; ErrClosed when the log closed; any other error is the
// log's (wrapping ErrUnavailable for a store failure).
func (t *Tail) Next(ctx context.Context, idle <-chan time.Time) (Batch, error) {
	if t.err != nil {
		return Batch{}, t.err
	}
	if !t.started {
		t.started = true
		t.subscribe()
		if err := t.sub.Err(); errors.Is(err, ErrTooManyWorkspaces) {
			t.err = err
			return Batch{}, err
		}
		if t.fromHead {
			head, known := t.sub.Head()
			if !known {
				var err error
				if head, err = t.log.Head(ctx, t.ws); err != nil {
					return Batch{}, err
				}
				t.sub.noteHead(head)
			}
			t.last = head
			t.caughtUp = true
			return Batch{Position: t.last}, nil
		}
		return t.read(ctx)
	}
	for {
		if !t.caughtUp {
			prev := t.last
			b, err := t.read(ctx)
			if err != nil || b.Reset || len(b.Events) > 0 || b.Position != prev {
				return b, err
			}
			continue // nothing new: the read came back empty, so go live
		}
		b, again, err := t.live(ctx, idle)
		if err != nil || !again {
			return b, err
		}
	}
}

func (t *Tail) subscribe() {
	t.sub = t.log.Subscribe(t.ws, t.filter, t.queue)
	if t.direct != nil {
		t.sub.setDirect(t.direct)
	}
	t.current.Store(t.sub)
}

// Ping writes beat (an ephemeral frame: a heartbeat) to the DirectWriter
// if Next is parked with nothing queued, after an id-only frame when
// hidden events passed (see direct.go). Unlike the rest of Tail, it may be
// called from any goroutine.
func (t *Tail) Ping(beat []byte) bool {
	if s := t.current.Load(); s != nil {
		return s.ping(beat)
	}
	return false
}

// read reads one page after t.last.
func (t *Tail) read(ctx context.Context) (Batch, error) {
	p, err := t.log.Read(ctx, t.ws, t.last, t.page)
	var exp *ExpiredError
	if errors.As(err, &exp) {
		t.last = exp.Head
		t.caughtUp = false // read again from the head: events may follow it
		return Batch{Reset: true, Position: exp.Head}, nil
	}
	if err != nil {
		return Batch{}, fmt.Errorf("tail %s after %s: %w", t.ws, t.last, err)
	}
	b := Batch{Events: make([]*Event, 0, len(p.Events))}
	for _, e := range p.Events {
		if t.filter.Match(e) {
			b.Events = append(b.Events, e)
		}
	}
	t.last = p.Last(t.last)
	if t.last.IsZero() {
		// "From the oldest" on a log with nothing retained: the head is
		// where the next event will follow.
		t.last = p.Head
	}
	b.Position = t.last
	// Caught up when the page reached the head (a page may stop short of
	// its limit before it: Log.Read bounds large events' bytes), or when
	// it was empty: a store whose newest entry went missing (an operator's
	// XDEL) must not be read again and again.
	t.caughtUp = t.last == p.Head || len(p.Events) == 0
	if t.caughtUp && errors.Is(t.sub.Err(), ErrSlowSubscriber) {
		// The queue overflowed while we were reading the log, which is
		// not the reader's fault: subscribe again and read once more.
		t.sub.Close()
		t.subscribe()
		t.caughtUp = false
	}
	return b, nil
}

// live waits for the next deliveries. again reports that nothing was
// deliverable and Next should go round again.
func (t *Tail) live(ctx context.Context, idle <-chan time.Time) (b Batch, again bool, err error) {
	armedAt := t.last
	if t.direct != nil {
		t.sub.arm(t.last)
	}
	queued := false
	select {
	case <-ctx.Done():
	case <-idle:
	case <-t.sub.Ready():
		queued = true
	}
	if t.direct != nil {
		// Whatever was written directly while we waited is delivered.
		t.last = t.sub.disarm()
		if t.last != armedAt {
			b.Written = t.last
		}
	}
	if !queued {
		if err := ctx.Err(); err != nil {
			return Batch{}, false, err
		}
		// Idle: move past what the filter hid meanwhile.
		if pos, ok := t.sub.Covered(t.last); ok {
			t.last = pos
		}
		b.Reason, b.Position = Idle, t.last
		return b, false, nil
	}
	b.Position = t.last
	empty := func() bool {
		return len(b.Events) == 0 && len(b.Ephemeral) == 0 && b.Reason == Delivered && b.Written.IsZero()
	}
	for {
		// Coalesce whatever is queued into this batch.
		d, ok, open := t.sub.Pop()
		if !ok && open {
			return b, empty(), nil
		}
		if !ok {
			reason := t.sub.Err()
			if reason == nil { // closed by us; cannot happen while in use
				reason = ErrClosed
			}
			if !empty() {
				// Deliver what arrived before the close; the next call
				// reports it.
				t.err = reason
				return b, false, nil
			}
			return b, false, reason
		}
		switch d.Kind {
		case kindFinish:
			// Return even with nothing else, so that the reader
			// finishes the frame before anything else.
			b.Reason = Unfinished
		case KindEphemeral:
			b.Ephemeral = append(b.Ephemeral, d.Event)
		case KindResync:
			// The feed may have a hole here: deliver what we have, then
			// read the log from where we are. What is still queued
			// waits for the next call, which must not sleep on it.
			t.caughtUp = false
			t.sub.signal()
			return b, empty(), nil
		case KindEvent:
			e := d.Event
			switch {
			case e.ID.Epoch != t.last.Epoch && !t.sub.succeeds(t.last, e.ID):
				t.caughtUp = false // another epoch: read the log
				t.sub.signal()
				return b, empty(), nil
			case e.ID.Epoch != t.last.Epoch || e.ID.Seq > t.last.Seq:
				// A later event; or the first of a newer epoch with no
				// resync before it, on an ordered feed, which this reader
				// gets without a reset though the old epoch's history is
				// gone (a flushed Redis, an unused workspace's epoch that
				// expired): it missed nothing (topic.succeeds).
				b.Events = append(b.Events, e)
				t.last = e.ID
				b.Position = e.ID
			}
		}
	}
}

// Close releases the subscription.
func (t *Tail) Close() {
	if t.sub != nil {
		t.sub.Close()
	}
}
