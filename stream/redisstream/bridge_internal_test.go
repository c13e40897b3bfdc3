package redisstream

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/realtime-dev/realtime/stream"
)

// Whatever an Event Bus entry holds, translating it never panics, and what
// it accepts is an event the log can store and serve: a valid type and
// workspace, bounded fields, an envelope that encodes.
func FuzzTranslate(f *testing.F) {
	for _, s := range [][2]string{
		{"event", `{"id":"e1","type":"chat.message","tenantId":"acme","timestamp":"2026-11-26T09:30:00Z","data":{"chatId":"c","id":"m","text":"t"}}`},
		{"event", `{"id":"e2","type":"notification.new","tenantId":"acme","userId":"bob","data":{"id":"n"}}`},
		{"event", `{"type":"chat.message","tenantId":"acme","timestamp":"9999-12-31T23:59:59-01:00","data":{}}`},
		{"event", `not json`},
		{"data", `{"x":1}`},
	} {
		f.Add(s[0], s[1], "acme", "agent.status.changed")
	}
	b := &Bridge{cfg: BridgeConfig{Validate: func(string, json.RawMessage) error { return nil }}}
	f.Fuzz(func(t *testing.T, field, value, tenant, typ string) {
		for _, values := range []map[string]any{
			{field: value},
			{"type": typ, "tenantId": tenant, "data": value, field: value},
		} {
			ev, reason := b.translate(redis.XMessage{ID: "1-0", Values: values})
			if reason != "" {
				continue
			}
			if !stream.ValidType(ev.Type) || !stream.ValidWorkspace(ev.WorkspaceID) || ev.upstreamID == "" {
				t.Fatalf("translate(%v) accepted %+v", values, ev.Event)
			}
			if _, err := ev.Body(); err != nil {
				t.Fatalf("translate(%v) accepted an event that does not encode: %v", values, err)
			}
		}
	})
}

func TestNotifiedWorkspaceReadsWhatBodyWrites(t *testing.T) {
	e := &stream.Event{Type: "approval.created", WorkspaceID: "ws-1.a:b", CorrelationID: "c", Timestamp: time.Now(), Data: []byte(`{"id":"x"}`)}
	body, err := e.Body()
	if err != nil {
		t.Fatal(err)
	}
	if ws, ok := notifiedWorkspace("1 2 " + string(body)); !ok || ws != "ws-1.a:b" {
		t.Fatalf("notifiedWorkspace = %q, %v; want ws-1.a:b", ws, ok)
	}
	for _, p := range []string{"", "1 2 {}", `1 2 {"workspaceId":"w","type":"x"}`, `1 2 {"type":"a\"b","workspaceId":"w"}`, `1 2 {"type":"a","workspaceId":"w\u0041"}`, `1 2 {"type":"a","workspaceId":"w`} {
		if ws, ok := notifiedWorkspace(p); ok {
			t.Errorf("notifiedWorkspace(%q) = %q; want no answer (decode in full)", p, ws)
		}
	}
}

func TestDecodeNotificationOfABatch(t *testing.T) {
	var bodies []string
	for i := range 3 {
		e := &stream.Event{Type: "chat.message", WorkspaceID: "w", CorrelationID: fmt.Sprint(i), Timestamp: time.Now(), Data: []byte(`{"id":"x"}`)}
		b, err := e.Body()
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, string(b))
	}
	events, err := decodeNotification("17 5*3 " + strings.Join(bodies, "\n"))
	if err != nil || len(events) != 3 {
		t.Fatalf("decode: %v, %d events", err, len(events))
	}
	for i, e := range events {
		if e.ID != (stream.ID{Epoch: 17, Seq: uint64(5 + i)}) || e.CorrelationID != fmt.Sprint(i) {
			t.Fatalf("event %d: %s %s", i, e.ID, e.CorrelationID)
		}
	}
	for _, p := range []string{"17 5*2 " + strings.Join(bodies, "\n"), "17 5*0 ", "17 5*x " + bodies[0], "17 5*101 " + bodies[0]} {
		if _, err := decodeNotification(p); err == nil {
			t.Errorf("decodeNotification(%.30q…) succeeded; want an error (the readers resync)", p)
		}
	}
}

// An entry whose data is larger than a publish body may be is poison, not
// an event: the log, its readers and their clients size for 64 KiB.
func TestTranslateRefusesOversizedData(t *testing.T) {
	b := &Bridge{cfg: BridgeConfig{Validate: func(string, json.RawMessage) error { return nil }}}
	for _, n := range []int{maxBusData - 20, maxBusData + 1} {
		data := `{"p":"` + strings.Repeat("x", n-8) + `"}`
		_, reason := b.translate(redis.XMessage{ID: "1-0", Values: map[string]any{"type": "chat.message", "tenantId": "acme", "data": data}})
		if fits := len(data) <= maxBusData; fits != (reason == "") {
			t.Fatalf("data of %d bytes: reason %q", len(data), reason)
		}
	}
}
