package stream

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// Body writes the envelope by hand; it must be byte for byte what
// encoding/json made of it before, and refuse exactly the data
// encoding/json refused.
func FuzzEventBody(f *testing.F) {
	f.Add("approval.created", "ws1", "", "c1", "", []byte(`{"id":"a1"}`), int64(0))
	f.Add("chat.message", "w<s>&", "u\u2028x", "c\"\\\n\t\x01", "\xff\xfe", []byte(" { \"a\" : [1, 2.5e3, null, true, \"\\u00e9 \xff\"] }\n"), int64(1795657302783000123))
	f.Add("x", "y", "z", "c", "s", []byte(`{"a":1`), int64(-9223372036854775807))
	f.Fuzz(func(t *testing.T, typ, ws, target, corr, source string, data []byte, ns int64) {
		ts := time.Unix(0, ns).UTC()
		e := &Event{Type: typ, WorkspaceID: ws, TargetUserID: target, CorrelationID: corr, Source: source, Timestamp: ts, Data: data}
		got, err := e.Body()
		d := json.RawMessage(data)
		if len(d) == 0 {
			d = json.RawMessage("{}")
		}
		want, werr := json.Marshal(envelope{Type: typ, WorkspaceID: ws, TargetUserID: target, CorrelationID: corr, Source: source, Timestamp: ts, Data: d})
		if (err != nil) != (werr != nil) {
			t.Fatalf("Body error %v; encoding/json error %v", err, werr)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("Body:\n%s\nencoding/json:\n%s", got, want)
		}
	})
}
