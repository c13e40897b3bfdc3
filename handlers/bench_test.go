package handlers

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	appmw "github.com/realtime-dev/realtime/middleware"
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

// BenchmarkPublish is one publish request through the whole router
// (auth, body, schema validation, idempotency-free append, response) on
// the embedded log, without the network: the per-event cost that a
// node pays once however many subscribers the event has.
func BenchmarkPublish(b *testing.B) {
	secret := []byte("bench-secret-bench-secret-bench-secret-0123")
	v, err := appmw.NewVerifier(appmw.AuthConfig{Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	log := stream.NewMemory(stream.MemoryConfig{})
	defer log.Close()
	h := New(slog.New(slog.DiscardHandler), Config{}, log, v, b.Context())
	tok, err := appmw.IssueToken(secret, appmw.TokenSpec{Subject: "pub", Workspaces: []string{"*"}, Scopes: []string{"events:publish"}, TTL: time.Hour}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	body := `{"type":"approval.created","data":{"id":"sl-1","sl_seq":1,"sl_ts":1795657302783000,"pad":"` + strings.Repeat("x", 150) + `"}}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/workspaces/ws1/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusCreated {
			b.Fatalf("publish: %d %s", w.Code, w.Body)
		}
	}
}
