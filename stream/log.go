package stream

import (
	"context"
	"fmt"
	"time"
)

// Once identifies an append that must happen at most once.
type Once struct {
	// Key names the append within its workspace: a client's
	// Idempotency-Key, or an upstream event id.
	Key string
	// Fingerprint identifies the request's content; a repeat with another
	// fingerprint is a conflict. Empty: not checked.
	Fingerprint string
	// TTL is how long the key is remembered (DefaultOnceTTL when zero).
	TTL time.Duration
}

// BatchItem is one event of an AppendBatch, with the Once that makes its
// append safe to repeat, if any.
type BatchItem struct {
	Event *Event
	Once  *Once // nil: appended every time
}

// MaxBatch is the most events one AppendBatch takes.
const MaxBatch = 100

// BatchError says which item of a batch made AppendBatch fail (an
// idempotency conflict, an event the log cannot encode). It wraps the
// cause.
type BatchError struct {
	Index int
	Err   error
}

func (e *BatchError) Error() string { return fmt.Sprintf("batch item %d: %v", e.Index, e.Err) }
func (e *BatchError) Unwrap() error { return e.Err }

// CheckBatch checks what AppendBatch requires of items before any store is
// touched: 1 to MaxBatch items, all of one workspace, each encodable, and
// no once key repeated with another fingerprint. Logs call it; it is
// exported for their tests.
func CheckBatch(items []BatchItem) error {
	if len(items) == 0 || len(items) > MaxBatch {
		return fmt.Errorf("a batch holds 1 to %d events, not %d", MaxBatch, len(items))
	}
	ws := items[0].Event.WorkspaceID
	fps := make(map[string]string)
	for i, it := range items {
		if it.Event.WorkspaceID != ws {
			return &BatchError{Index: i, Err: fmt.Errorf("workspace %q in a batch for %q", it.Event.WorkspaceID, ws)}
		}
		if _, err := it.Event.Body(); err != nil {
			return &BatchError{Index: i, Err: err}
		}
		if it.Once == nil {
			continue
		}
		if fp, ok := fps[it.Once.Key]; ok && fp != "" && it.Once.Fingerprint != "" && fp != it.Once.Fingerprint {
			return &BatchError{Index: i, Err: ErrIdempotencyConflict}
		}
		fps[it.Once.Key] = it.Once.Fingerprint
	}
	return nil
}

// DefaultOnceTTL is how long AppendOnce remembers a key by default.
const DefaultOnceTTL = 24 * time.Hour

// Log is the per-workspace event log that the SSE stream and the polling
// endpoint both read. Memory and redisstream.Log implement it and pass the
// conformance suite in streamtest.
//
// All methods are safe for concurrent use.
type Log interface {
	// Append stores e at the end of the log of e.WorkspaceID and returns it
	// with its ID set. Appends to one workspace are totally ordered: ids of
	// one epoch grow by exactly one. Append blocks until the event is
	// durable in the log (for Redis: acknowledged by the server). e must not
	// be modified afterwards.
	Append(ctx context.Context, e *Event) (*Event, error)

	// AppendOnce is Append made safe to repeat: the first call with a given
	// once.Key in e's workspace appends and records the result for
	// once.TTL; a later call with the same key within that window appends
	// nothing and returns the recorded event with replayed set, or, if its
	// once.Fingerprint differs from the first one's (and both are set),
	// ErrIdempotencyConflict. Concurrent calls with one key append once.
	AppendOnce(ctx context.Context, e *Event, once Once) (ev *Event, replayed bool, err error)
	// AppendBatch appends the events of items, 1 to MaxBatch of one
	// workspace, in their order and contiguously (no other append comes
	// between them), all or none, in one step of the store (for Redis: one
	// script, one round trip). An item whose Once key is recorded, by an
	// earlier append or by an earlier item of the same batch, is not
	// appended: its recorded event comes back with replayed[i] set, as
	// AppendOnce would return it. A fingerprint conflict on any item is a
	// *BatchError wrapping ErrIdempotencyConflict, and nothing is appended.
	AppendBatch(ctx context.Context, items []BatchItem) (events []*Event, replayed []bool, err error)

	// Broadcast hands e, an ephemeral event (presence, typing), to the
	// current subscribers of its workspace on every node. It is not stored,
	// gets no id, and is never replayed: a reader that was not subscribed
	// when it was broadcast never sees it. Delivery is best effort.
	Broadcast(ctx context.Context, e *Event) error

	// Read returns up to limit events of workspace that follow the cursor
	// after, in log order, and the log's head. The zero cursor means "from
	// the oldest retained event". Read does not wait for new events. A page
	// may hold fewer than limit events before the head (always at least
	// one): a log may bound the bytes of a page of large events, and only
	// Head says whether more follow.
	//
	// A cursor the log can no longer continue from (older epoch, trimmed,
	// ahead of the head) yields an *ExpiredError, which matches
	// ErrCursorExpired and names the head. A cursor that is exactly the
	// last trimmed event is not expired: nothing after it was lost.
	Read(ctx context.Context, workspace string, after ID, limit int) (Page, error)

	// Head returns the id of the newest event of workspace, or seq 0 of the
	// current epoch when it has none. Reading after Head yields only events
	// appended later.
	Head(ctx context.Context, workspace string) (ID, error)

	// Subscribe registers for the events of workspace that match f, as this
	// node learns of them, in log order. It never blocks and never fails;
	// the caller must Close the subscription. Events appended before
	// Subscribe returns may or may not be delivered, so a reader subscribes
	// first, then reads the log, then drops delivered ids it has already
	// seen. size bounds the queue (see Subscription).
	Subscribe(workspace string, f Filter, size int) *Subscription

	// Ping reports whether the log can serve reads and appends now.
	Ping(ctx context.Context) error

	// Close stops the log. Open subscriptions are closed with ErrClosed.
	Close() error
}
