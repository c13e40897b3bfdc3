package stream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
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
// DecodeEvent takes back. It is computed once. The bytes are what
// encoding/json would make of envelope (the same escaping, Data compacted),
// written without reflection: a publish spent a tenth of its CPU in
// json.Marshal here.
func (e *Event) Body() ([]byte, error) {
	if e.body != nil {
		return e.body, nil
	}
	data := e.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	ts := e.Timestamp.UTC()
	if y := ts.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("encode event %s: timestamp year %d outside of range [0,9999]", e.Type, y)
	}
	b := make([]byte, 0, 128+len(e.Type)+len(e.WorkspaceID)+len(e.TargetUserID)+len(e.CorrelationID)+len(e.Source)+len(data))
	b = append(b, `{"type":`...)
	b = appendString(b, e.Type)
	b = append(b, `,"workspaceId":`...)
	b = appendString(b, e.WorkspaceID)
	if e.TargetUserID != "" {
		b = append(b, `,"targetUserId":`...)
		b = appendString(b, e.TargetUserID)
	}
	b = append(b, `,"correlationId":`...)
	b = appendString(b, e.CorrelationID)
	if e.Source != "" {
		b = append(b, `,"source":`...)
		b = appendString(b, e.Source)
	}
	b = append(b, `,"timestamp":"`...)
	b = ts.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","data":`...)
	start := len(b)
	b = append(b, data...)
	// Compact validates as it goes, and never lengthens, so it rewrites
	// the copy in place.
	v := jsontext.Value(b[start:])
	if err := v.Compact(); err != nil {
		return nil, fmt.Errorf("encode event %s: data: %w", e.Type, err)
	}
	if needsHTMLEscape(v) {
		// As encoding/json: '<', '>', '&', U+2028 and U+2029 escaped in
		// strings, so that bodies are what they were before Body was
		// written by hand.
		var esc bytes.Buffer
		json.HTMLEscape(&esc, v)
		b = append(b[:start], esc.Bytes()...)
	} else {
		b = append(b[:start], v...)
	}
	b = append(b, '}')
	e.body = b
	return b, nil
}

// needsHTMLEscape reports whether json.HTMLEscape would change b.
func needsHTMLEscape(b []byte) bool {
	for _, c := range b {
		if c == '<' || c == '>' || c == '&' || c == 0xe2 {
			return true
		}
	}
	return false
}

// appendString appends s as a JSON string, escaped as encoding/json
// escapes it: control characters, '"' and '\\', '<', '>' and '&' (HTML
// safe), U+2028 and U+2029, and invalid UTF-8 as U+FFFD.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
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
