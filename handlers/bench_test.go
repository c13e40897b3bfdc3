package handlers

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/stream"
)

// BenchmarkAppendBatch is the SSE frame encoding of one event, the work a
// stream does per delivery besides the write itself.
func BenchmarkAppendBatch(b *testing.B) {
	e := &stream.Event{ID: stream.ID{Epoch: 1795657302783000, Seq: 42}, Type: "approval.created", WorkspaceID: "ws1",
		CorrelationID: "4c1f", Timestamp: time.Now(), Data: json.RawMessage(`{"id":"a1","title":"Deploy to production","status":"pending"}`)}
	e.JSON() // encoded once per event, shared by every stream
	batch := stream.Batch{Events: []*stream.Event{e}, Position: e.ID}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		pos := stream.ID{}
		buf = appendBatch(buf[:0], batch, &pos)
	}
	b.SetBytes(int64(len(buf)))
}
