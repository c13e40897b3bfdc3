package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

func TestIdempotentPublish(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	t.Run("embedded", func(t *testing.T) { checkIdempotentPublish(t, startNode(t, nil), startNode(t, nil), false) })
	t.Run("redis, across nodes", func(t *testing.T) { checkIdempotentPublish(t, startNode(t, env), startNode(t, env), true) })
}

func checkIdempotentPublish(t *testing.T, a, b *node, shared bool) {
	pub := pubToken(t)
	body := `{"type":"chat.message","data":{"chatId":"c","id":"m1","text":"once"}}`
	resp, first := do(t, "POST", a.URL+"/v1/workspaces/ws1/events", pub, body, "Idempotency-Key", "retry-me-1")
	if resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first publish: %d %s (replayed %q)", resp.StatusCode, first, resp.Header.Get("Idempotent-Replayed"))
	}
	// The same body re-encoded (key order, spacing) is the same request.
	same := `{ "data": {"text":"once","id":"m1","chatId":"c"}, "type":"chat.message" }`
	resp, again := do(t, "POST", a.URL+"/v1/workspaces/ws1/events", pub, same, "Idempotency-Key", "retry-me-1")
	if resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "true" || string(again) != string(first) {
		t.Fatalf("retry: %d %s (replayed %q); want 201 with the first result %s", resp.StatusCode, again, resp.Header.Get("Idempotent-Replayed"), first)
	}
	if shared {
		resp, other := do(t, "POST", b.URL+"/v1/workspaces/ws1/events", pub, body, "Idempotency-Key", "retry-me-1")
		if resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "true" || string(other) != string(first) {
			t.Fatalf("retry on another node: %d %s; want the first result", resp.StatusCode, other)
		}
	}
	resp, conflict := do(t, "POST", a.URL+"/v1/workspaces/ws1/events", pub, `{"type":"chat.message","data":{"chatId":"c","id":"m2","text":"other"}}`, "Idempotency-Key", "retry-me-1")
	expectProblem(t, "same key, other body", resp, conflict, 422, "idempotency_key_reused")
	resp, bad := do(t, "POST", a.URL+"/v1/workspaces/ws1/events", pub, body, "Idempotency-Key", strings.Repeat("k", 256))
	expectProblem(t, "overlong key", resp, bad, 400, "invalid_parameter")
	var e event
	json.Unmarshal(first, &e)
	ids, _ := a.pollAll(t, "ws1", pub, "0")
	if len(ids) != 1 || ids[0] != e.ID {
		t.Fatalf("log holds %v; want only %s", ids, e.ID)
	}
	// Another key appends.
	resp, _ = do(t, "POST", a.URL+"/v1/workspaces/ws1/events", pub, body, "Idempotency-Key", "retry-me-2")
	if resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("new key: %d replayed %q", resp.StatusCode, resp.Header.Get("Idempotent-Replayed"))
	}
}
