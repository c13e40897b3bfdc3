package stream_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/realtime-dev/realtime/stream"
)

// A ?types= filter from a client: accepted patterns are well-formed, and
// none can put a CR, LF or NUL into a frame.
func FuzzParseTypes(f *testing.F) {
	for _, s := range []string{"", "*", "approval.*,chat.message", "presence.*,typing.*", "a..b", "*.x", "a,", strings.Repeat("a,", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		types, err := stream.ParseTypes(s)
		if err != nil {
			return
		}
		if len(types) > 32 {
			t.Fatalf("ParseTypes(%q) accepted %d patterns", s, len(types))
		}
		for _, p := range types {
			if strings.ContainsAny(p, "\r\n\x00 ") || p == "" {
				t.Fatalf("ParseTypes(%q) accepted pattern %q", s, p)
			}
		}
		f := stream.Filter{Types: types}
		f.Match(&stream.Event{ID: stream.ID{Epoch: 1, Seq: 1}, Type: "approval.created"})
		f.Match(&stream.Event{Type: "presence.changed"})
	})
}

// A stored envelope read back (from Redis, or a bus entry's translation):
// decoding never panics, and a decoded event renders one well-formed SSE
// frame, whatever the bytes.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"type":"chat.message","workspaceId":"ws","correlationId":"c","timestamp":"2026-12-01T00:00:00Z","data":{"text":"hi"}}`,
		`{"type":"a\nb","data":{}}`, `{}`, `[]`, `{"data":"x"}`, "{\"type\":\"x\",\"data\":{\"t\":\"\xff\"}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := stream.DecodeEvent(stream.ID{Epoch: 1, Seq: 2}, body)
		if err != nil {
			return
		}
		frame := e.Frame()
		if !bytes.HasSuffix(frame, []byte("\n\n")) {
			t.Fatalf("frame %q does not end a frame", frame)
		}
		if stream.ValidType(e.Type) && bytes.Count(frame[:len(frame)-2], []byte("\n")) != 2 {
			t.Fatalf("a valid event's frame %q is not three lines", frame)
		}
	})
}

// A ?ticket= from a client: only the exact shape of a ticket id passes,
// so nothing else reaches a store key.
func FuzzValidTicketID(f *testing.F) {
	for _, s := range []string{"", stream.NewTicketID(), stream.NewTicketID() + "x", strings.Repeat("A", 43), strings.Repeat("/", 43), "a\r\nb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !stream.ValidTicketID(s) {
			return
		}
		if len(s) != 43 || strings.ContainsAny(s, "{}:\r\n\x00 /+=") {
			t.Fatalf("ValidTicketID(%q) accepted it", s)
		}
	})
}
