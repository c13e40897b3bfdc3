package poll

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/realtime-dev/realtime/stream"
)

// Limits of a poll.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
	// MaxWait is the longest long poll the API accepts.
	MaxWait = 30 * time.Second
	// maxScanPages bounds how many pages one poll reads looking for an
	// event that passes its filter before answering hasMore.
	maxScanPages = 8
	// MaxAnswerBytes bounds the events of one answer, as their JSON: an
	// answer that reaches it ends with hasMore (it always holds at least
	// one event), so that a thousand large events do not become one
	// buffer of a thousand times their size for every poll that asks.
	MaxAnswerBytes = 1 << 20
)

// Query is a parsed poll request.
type Query struct {
	// Cursor is where to read after; meaningful when HasCursor.
	Cursor    stream.ID
	HasCursor bool
	Limit     int
	Wait      time.Duration
	Types     []string
}

// ParamError reports a bad query parameter.
type ParamError struct {
	Param string
	Err   error
}

func (e *ParamError) Error() string { return fmt.Sprintf("parameter %s: %v", e.Param, e.Err) }
func (e *ParamError) Unwrap() error { return e.Err }

// ParseQuery reads cursor, limit, wait and types from v. A wait above
// maxWait (the server's cap, at most MaxWait) is clamped to it.
func ParseQuery(v url.Values, maxWait time.Duration) (Query, error) {
	q := Query{Limit: DefaultLimit}
	if s, ok := v["cursor"]; ok {
		id, err := stream.ParseID(s[0])
		if err != nil {
			return Query{}, &ParamError{Param: "cursor", Err: err}
		}
		q.Cursor, q.HasCursor = id, true
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return Query{}, &ParamError{Param: "limit", Err: fmt.Errorf("want an integer from 1 to %d", MaxLimit)}
		}
		q.Limit = n
	}
	if s := v.Get("wait"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > int(MaxWait/time.Second) {
			return Query{}, &ParamError{Param: "wait", Err: fmt.Errorf("want whole seconds from 0 to %d", int(MaxWait/time.Second))}
		}
		q.Wait = min(time.Duration(n)*time.Second, maxWait)
	}
	types, err := stream.ParseTypes(v.Get("types"))
	if err != nil {
		return Query{}, &ParamError{Param: "types", Err: err}
	}
	q.Types = types
	return q, nil
}

// Result is a poll's answer.
type Result struct {
	Events     []*stream.Event
	NextCursor stream.ID
	HasMore    bool
	Reset      bool
	// Ephemeral are broadcast events (presence, typing) that arrived while
	// a long poll waited; they are not in the log and never repeated.
	Ephemeral []*stream.Event

	bytes int // Events' JSON, for MaxAnswerBytes
}

// add appends e to the answer and moves its cursor to e, unless the
// answer holds events already and e would take it past MaxAnswerBytes.
func (r *Result) add(e *stream.Event) bool {
	n := len(e.JSON())
	if len(r.Events) > 0 && r.bytes+n > MaxAnswerBytes {
		return false
	}
	r.bytes += n
	r.Events = append(r.Events, e)
	r.NextCursor = e.ID
	return true
}

// ephemeralQueue is how many broadcast events a waiting long poll holds.
const ephemeralQueue = 16

// Poll answers q for workspace as seen by user. With q.Wait it holds an
// empty answer until an event arrives, q.Wait passes, or ctx is done, in
// which case it answers with what it has: a poll cancelled by shutdown
// still gets a valid cursor back.
//
// release unsubscribes a long poll; the caller calls it once, after it has
// sent the answer: when one event wakes thousands of long polls they all
// leave the workspace's topic at once, and unsubscribing queues on its
// lock behind the fan-out and each other (the mutex profile's top entry),
// which the answer need not wait for. It is never nil.
func Poll(ctx context.Context, log stream.Log, workspace, user string, q Query) (res Result, release func(), err error) {
	release = func() {}
	if !q.HasCursor {
		head, err := log.Head(ctx, workspace)
		if err != nil {
			return Result{}, release, err
		}
		return Result{Events: []*stream.Event{}, NextCursor: head}, release, nil
	}
	filter := stream.Filter{Types: q.Types, UserID: user}
	var sub *stream.Subscription
	if q.Wait > 0 {
		// Subscribe before the first read, so that an event appended
		// between the read and the wait still wakes us.
		sub = log.Subscribe(workspace, filter, ephemeralQueue)
		release = func() { sub.Close() } // sub as it is at the end
		if err := sub.Err(); errors.Is(err, stream.ErrTooManyWorkspaces) {
			return Result{}, release, err
		}
	}
	var timeout <-chan time.Time
	cursor := q.Cursor
	for {
		res, err := scan(ctx, log, workspace, cursor, filter, q.Limit)
		if err != nil || len(res.Events) > 0 || res.HasMore || res.Reset || sub == nil {
			return res, release, err
		}
		cursor = res.NextCursor
		if timeout == nil {
			t := time.NewTimer(q.Wait)
			defer t.Stop()
			timeout = t.C
		}
		d, ok, done := wait(ctx, sub, timeout)
		if done {
			// Events this reader may not see may have passed while it
			// waited: its cursor moves past them (see Covered), or a
			// retention that passed its cursor would reset it.
			if pos, ok := sub.Covered(res.NextCursor); ok {
				res.NextCursor = pos
			}
			return res, release, nil
		}
		if !ok {
			// Closed because events overflowed the queue (a wake-up
			// like any other), or the log closed.
			if errors.Is(sub.Err(), stream.ErrClosed) {
				return res, release, nil
			}
			sub.Close()
			sub = log.Subscribe(workspace, filter, ephemeralQueue)
			if errors.Is(sub.Err(), stream.ErrTooManyWorkspaces) {
				return res, release, nil // no room to wait here: answer now
			}
			continue
		}
		switch {
		case d.Kind == stream.KindEphemeral:
			// Broadcast events answer the poll at once, with whatever
			// else is queued; the cursor stays where it is.
			res.Ephemeral = append(res.Ephemeral, d.Event)
			drain(sub, &res, q.Limit, false)
			return res, release, nil
		case d.Kind == stream.KindEvent && d.Event.ID == res.NextCursor.Next():
			// The hub handed over exactly the next event: answer with
			// it (and whatever follows it, contiguous, in the queue)
			// without reading the log, so one event waking thousands
			// of long polls costs no reads of the store.
			res.add(d.Event) // the first: always room
			drain(sub, &res, q.Limit, true)
			return res, release, nil
		}
	}
}

// wait returns the next delivery of sub, or ok false once sub ended; done
// reports that ctx or timeout came first.
func wait(ctx context.Context, sub *stream.Subscription, timeout <-chan time.Time) (d stream.Delivery, ok, done bool) {
	for {
		if d, ok, open := sub.Pop(); ok || !open {
			return d, ok, false
		}
		select {
		case <-ctx.Done():
			return stream.Delivery{}, false, true
		case <-timeout:
			return stream.Delivery{}, false, true
		case <-sub.Ready():
		}
	}
}

// scan reads after cursor until it finds events that pass filter, reaches
// the head, or has read maxScanPages pages.
func scan(ctx context.Context, log stream.Log, workspace string, cursor stream.ID, filter stream.Filter, limit int) (Result, error) {
	res := Result{Events: []*stream.Event{}, NextCursor: cursor}
	for range maxScanPages {
		p, err := log.Read(ctx, workspace, res.NextCursor, limit)
		var exp *stream.ExpiredError
		if errors.As(err, &exp) {
			return Result{Events: []*stream.Event{}, NextCursor: exp.Head, Reset: true}, nil
		}
		if err != nil {
			return Result{}, err
		}
		for _, e := range p.Events {
			if !filter.Match(e) {
				continue
			}
			if !res.add(e) {
				// Full: the rest, from e on, is the next poll's.
				res.HasMore = true
				return res, nil
			}
		}
		res.NextCursor = p.Last(res.NextCursor)
		if res.NextCursor.IsZero() {
			res.NextCursor = p.Head // "0" on a log with nothing retained
		}
		res.HasMore = res.NextCursor.Seq < p.Head.Seq
		if len(res.Events) > 0 || !res.HasMore {
			return res, nil
		}
	}
	return res, nil
}

// drain adds to res what is already queued without waiting: broadcast
// events always, and, when events is set, durable events that follow
// res.NextCursor without a gap (up to limit). With events set, anything
// else (a gap, a resync) ends the answer with hasMore; otherwise durable
// deliveries are left for the next poll to read from the log.
func drain(sub *stream.Subscription, res *Result, limit int, events bool) {
	for !events || len(res.Events) < limit {
		d, ok, _ := sub.Pop()
		switch {
		case !ok:
			return
		case d.Kind == stream.KindEphemeral:
			res.Ephemeral = append(res.Ephemeral, d.Event)
		case !events:
		case d.Kind == stream.KindEvent && d.Event.ID == res.NextCursor.Next():
			if !res.add(d.Event) {
				res.HasMore = true
				return
			}
		default:
			// A gap or a resync: the next poll reads the log.
			res.HasMore = true
			return
		}
	}
}
