package stream_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/stream"
)

func TestEventFrame(t *testing.T) {
	ts := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		e    *stream.Event
		want string
	}{
		{
			name: "logged",
			e: &stream.Event{ID: stream.ID{Epoch: 35, Seq: 7}, Type: "chat.message", WorkspaceID: "ws1",
				CorrelationID: "c1", Timestamp: ts, Data: json.RawMessage(`{ "text": "hi" }`)},
			want: "id: z-7\nevent: chat.message\ndata: " +
				`{"id":"z-7","type":"chat.message","workspaceId":"ws1","correlationId":"c1","timestamp":"2026-11-26T08:00:00Z","data":{"text":"hi"}}` +
				"\n\n",
		},
		{
			// Ephemeral: no id line, no id member; it never moves a cursor.
			name: "ephemeral",
			e:    &stream.Event{Type: "presence.joined", WorkspaceID: "ws1", CorrelationID: "c2", Timestamp: ts, Data: json.RawMessage(`{"userId":"u1"}`)},
			want: "event: presence.joined\ndata: " +
				`{"type":"presence.joined","workspaceId":"ws1","correlationId":"c2","timestamp":"2026-11-26T08:00:00Z","data":{"userId":"u1"}}` +
				"\n\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := string(tt.e.Frame())
			if frame != tt.want {
				t.Fatalf("Frame:\n got %q\nwant %q", frame, tt.want)
			}
			// JSON is the data line, and shares Frame's bytes without
			// letting an append through JSON overwrite the frame's end.
			data := strings.TrimSuffix(strings.TrimPrefix(frame[strings.Index(frame, "data: "):], "data: "), "\n\n")
			if got := string(tt.e.JSON()); got != data {
				t.Fatalf("JSON = %q, want the data line %q", got, data)
			}
			_ = append(tt.e.JSON(), "XX"...)
			if got := string(tt.e.Frame()); got != tt.want {
				t.Fatalf("after appending to JSON, Frame = %q", got)
			}
			var v map[string]any
			if err := json.Unmarshal(tt.e.JSON(), &v); err != nil {
				t.Fatalf("JSON is not JSON: %v", err)
			}
		})
	}
}

// An event read back from the log (DecodeEvent) frames the same as the one
// that was appended: readers on any node get identical bytes.
func TestEventFrameRoundTrip(t *testing.T) {
	e := &stream.Event{ID: stream.ID{Epoch: 1, Seq: 2}, Type: "approval.created", WorkspaceID: "ws1",
		TargetUserID: "u9", CorrelationID: "c", Source: "s", Timestamp: time.Unix(1795657302, 5).UTC(), Data: json.RawMessage(`{"a":[1,2]}`)}
	body, err := e.Body()
	if err != nil {
		t.Fatal(err)
	}
	back, err := stream.DecodeEvent(e.ID, body)
	if err != nil {
		t.Fatal(err)
	}
	if string(back.Frame()) != string(e.Frame()) {
		t.Fatalf("decoded frame %q, appended frame %q", back.Frame(), e.Frame())
	}
}
