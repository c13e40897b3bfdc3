package stream

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Event is one entry of a workspace log, in the envelope every reader sees.
//
// An Event handed out by a Log is shared by every local subscriber and must
// be treated as read-only.
type Event struct {
	ID            ID
	Type          string
	WorkspaceID   string
	TargetUserID  string // empty: every reader of the workspace
	CorrelationID string
	Source        string
	Timestamp     time.Time
	Data          json.RawMessage

	// body is the envelope without its id, exactly as stored in the log.
	// Keeping it lets an event read back from Redis be served without being
	// re-encoded, and lets JSON splice the id in once for all subscribers.
	body       []byte
	encodeOnce sync.Once // guards frame and json (encode)
	frame      []byte    // Frame's bytes; json is the data line's part of them
	json       []byte
}

// envelope is the stored form: every field but the id, which the log
// assigns. Field order is the wire order.
type envelope struct {
	Type          string          `json:"type"`
	WorkspaceID   string          `json:"workspaceId"`
	TargetUserID  string          `json:"targetUserId,omitempty"`
	CorrelationID string          `json:"correlationId"`
	Source        string          `json:"source,omitempty"`
	Timestamp     time.Time       `json:"timestamp"`
	Data          json.RawMessage `json:"data"`
}

// Body returns the event encoded without its id: what a Log stores and what
// DecodeEvent takes back. It is computed once.
func (e *Event) Body() ([]byte, error) {
	if e.body != nil {
		return e.body, nil
	}
	data := e.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	b, err := json.Marshal(envelope{
		Type: e.Type, WorkspaceID: e.WorkspaceID, TargetUserID: e.TargetUserID,
		CorrelationID: e.CorrelationID, Source: e.Source, Timestamp: e.Timestamp.UTC(), Data: data,
	})
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.Type, err)
	}
	e.body = b
	return b, nil
}

// DecodeEvent rebuilds an event from its id and the bytes Body returned.
func DecodeEvent(id ID, body []byte) (*Event, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("decode event %s: %w", id, err)
	}
	return &Event{
		ID: id, Type: env.Type, WorkspaceID: env.WorkspaceID, TargetUserID: env.TargetUserID,
		CorrelationID: env.CorrelationID, Source: env.Source, Timestamp: env.Timestamp,
		Data: env.Data, body: body,
	}, nil
}

// JSON returns the full envelope, id first, as compact single-line JSON. It
// is computed once per event, however many subscribers write it. An
// ephemeral event (zero ID) has no id member.
func (e *Event) JSON() []byte {
	e.encode()
	return e.json
}

// Frame returns the event as one Server-Sent Events frame: an id line (none
// for an ephemeral event), an event line with its type, a data line with
// JSON, and the blank line that ends a frame. It is computed once per
// event, with JSON, whose bytes it shares: the fan-out writes these same
// bytes to every subscriber, and a retained event keeps one copy.
func (e *Event) Frame() []byte {
	e.encode()
	return e.frame
}

// encode renders Frame and JSON, once.
func (e *Event) encode() {
	e.encodeOnce.Do(func() {
		body, err := e.Body()
		if err != nil || len(body) < 2 {
			// Body only fails for Data that is not JSON, which no Log
			// accepts; keep the frame well-formed regardless.
			body = []byte(`{}`)
		}
		b := make([]byte, 0, len(body)+len(e.Type)+80)
		if !e.ID.IsZero() {
			b = append(b, "id: "...)
			b = e.ID.append(b)
			b = append(b, '\n')
		}
		// Types are validated (ValidType) and JSON is compact, so neither
		// line can hold a newline that would split the frame.
		b = append(b, "event: "...)
		b = append(b, e.Type...)
		b = append(b, "\ndata: "...)
		start := len(b)
		if e.ID.IsZero() {
			b = append(b, body...)
		} else {
			b = append(b, `{"id":"`...)
			b = e.ID.append(b)
			b = append(b, '"')
			if len(body) > 2 {
				b = append(b, ',')
			}
			b = append(b, body[1:]...)
		}
		end := len(b)
		b = append(b, "\n\n"...)
		e.frame = b
		e.json = b[start:end:end] // full capacity: an append copies
	})
}

// MarshalJSON implements json.Marshaler with the envelope of JSON.
func (e *Event) MarshalJSON() ([]byte, error) { return e.JSON(), nil }

// Page is one result of Log.Read.
type Page struct {
	// Events are the events after the cursor, in log order, at most limit.
	Events []*Event
	// Head is the id of the newest event of the log when it was read
	// (seq 0 while the epoch has no events yet).
	Head ID
}

// Last returns the id of the last event of the page, or after when the page
// is empty: the cursor to read the next page from.
func (p Page) Last(after ID) ID {
	if len(p.Events) == 0 {
		return after
	}
	return p.Events[len(p.Events)-1].ID
}
