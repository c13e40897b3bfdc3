package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

func TestBatchPublish(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	t.Run("embedded", func(t *testing.T) { checkBatchPublish(t, startNode(t, nil), nil) })
	t.Run("redis, across nodes", func(t *testing.T) { checkBatchPublish(t, startNode(t, env), startNode(t, env)) })
}

type batchAnswer struct {
	Events []event `json:"events"`
}

func batchBody(from, n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(`{"type":"chat.message","data":{"chatId":"c","id":"m%d","text":"t%d"},"correlationId":"corr-%d"}`, from+i, from+i, from+i)
	}
	return `{"events":[` + strings.Join(items, ",") + `]}`
}

func checkBatchPublish(t *testing.T, a, b *node) {
	pub := pubToken(t)
	url := a.URL + "/v1/workspaces/ws1/events/batch"
	sub := a.openStream(t, "ws1", token(t, "u1", []string{"ws1"}), "")
	sub.first(t)

	// In order, contiguous, each with its own id and correlation id.
	a.publish(t, "ws1", `{"type":"chat.message","data":{"chatId":"c","id":"m0","text":"single"}}`)
	resp, body := do(t, "POST", url, pub, batchBody(1, 5))
	if resp.StatusCode != 201 {
		t.Fatalf("batch: %d %s", resp.StatusCode, body)
	}
	var ans batchAnswer
	if err := json.Unmarshal(body, &ans); err != nil || len(ans.Events) != 5 {
		t.Fatalf("batch answer %s: %v", body, err)
	}
	for i, e := range ans.Events {
		if e.CorrelationID != fmt.Sprintf("corr-%d", 1+i) || e.WorkspaceID != "ws1" || !strings.Contains(string(e.Data), fmt.Sprintf(`"m%d"`, 1+i)) {
			t.Fatalf("event %d of the answer: %+v", i, e)
		}
	}
	ids, _ := a.pollAll(t, "ws1", pub, "0")
	if len(ids) != 6 || fmt.Sprint(ids[1:]) != fmt.Sprint(eventIDs(ans.Events)) {
		t.Fatalf("log holds %v; want the single event then the batch %v", ids, eventIDs(ans.Events))
	}
	if got := frameIDs(sub.events(t, 6)); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("stream delivered %v; want %v", got, ids)
	}

	// One bad event refuses the whole batch, with pointers to it.
	bad := `{"events":[` +
		`{"type":"chat.message","data":{"chatId":"c","id":"ok","text":"fine"}},` +
		`{"type":"chat.message","data":{"chatId":"c","text":"no id"}},` +
		`{"type":"no.such.type","data":{}},` +
		`{"type":"chat.message","data":{"chatId":"c","id":"x","text":"t"},"extra":1}]}`
	resp, body = do(t, "POST", url, pub, bad)
	p := expectProblem(t, "a batch with bad events", resp, body, 422, "invalid_event")
	for _, ptr := range []string{"/events/1/data/id", "/events/2/type", "/events/3"} {
		if _, ok := p.Errors[ptr]; !ok {
			t.Errorf("problem errors %v lack %s", p.Errors, ptr)
		}
	}
	for _, k := range []string{"/events/0", "/events/0/data"} {
		if _, ok := p.Errors[k]; ok {
			t.Errorf("problem errors %v point at the good event", p.Errors)
		}
	}
	for _, tc := range []struct{ what, body, code string }{
		{"empty", `{"events":[]}`, "invalid_event"},
		{"too many", batchBody(100, 101), "invalid_event"},
		{"not an array", `{"events":{}}`, "invalid_event"},
		{"other members", `{"events":[],"x":1}`, "invalid_event"},
		{"an array", `[]`, "invalid_event"},
		{"an array of events", `[{"type":"chat.message","data":{}}]`, "invalid_event"},
		{"a string", `"events"`, "invalid_event"},
	} {
		resp, body := do(t, "POST", url, pub, tc.body)
		expectProblem(t, tc.what, resp, body, 422, tc.code)
	}
	resp, body = do(t, "POST", url, pub, `{"events":[`)
	expectProblem(t, "truncated", resp, body, 400, "invalid_json")
	huge := `{"events":[{"type":"chat.message","data":{"chatId":"c","id":"big","text":"` + strings.Repeat("x", 1<<20) + `"}}]}`
	resp, body = do(t, "POST", url, pub, huge)
	expectProblem(t, "over 1 MiB", resp, body, 413, "body_too_large")
	// Within the batch's 1 MiB, one event may still be only what a single
	// publish may be (64 KiB).
	oversized := `{"events":[{"type":"chat.message","data":{"chatId":"c","id":"ok","text":"fine"}},` +
		`{"type":"chat.message","data":{"chatId":"c","id":"big","text":"` + strings.Repeat("x", 65<<10) + `"}}]}`
	resp, body = do(t, "POST", url, pub, oversized)
	if p := expectProblem(t, "an event over 64 KiB", resp, body, 422, "invalid_event"); p.Errors["/events/1"] == "" || len(p.Errors) != 1 {
		t.Errorf("problem errors %v; want one, at /events/1", p.Errors)
	}
	resp, body = do(t, "POST", url, token(t, "u1", []string{"ws1"}), batchBody(200, 1))
	expectProblem(t, "without the publish scope", resp, body, 403, "forbidden")
	if after, _ := a.pollAll(t, "ws1", pub, "0"); len(after) != 6 {
		t.Fatalf("refused batches changed the log: %v", after)
	}

	// A retried batch replays every event, on any node; another batch under
	// the key conflicts, and so does the same batch cut short.
	resp, first := do(t, "POST", url, pub, batchBody(10, 3), "Idempotency-Key", "batch-1")
	if resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first keyed batch: %d %s", resp.StatusCode, first)
	}
	other := a
	if b != nil {
		other = b
	}
	resp, again := do(t, "POST", other.URL+"/v1/workspaces/ws1/events/batch", pub, batchBody(10, 3), "Idempotency-Key", "batch-1")
	if resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "true" || string(again) != string(first) {
		t.Fatalf("retried batch: %d %s replayed %q; want the first answer %s", resp.StatusCode, again, resp.Header.Get("Idempotent-Replayed"), first)
	}
	resp, body = do(t, "POST", url, pub, batchBody(20, 3), "Idempotency-Key", "batch-1")
	expectProblem(t, "another batch under the key", resp, body, 422, "idempotency_key_reused")
	resp, body = do(t, "POST", url, pub, batchBody(10, 2), "Idempotency-Key", "batch-1")
	expectProblem(t, "the batch cut short under the key", resp, body, 422, "idempotency_key_reused")
	if after, _ := a.pollAll(t, "ws1", pub, "0"); len(after) != 9 {
		t.Fatalf("log holds %d events; want 9 (retries appended nothing)", len(after))
	}

	// Concurrent batches and single publishes: each batch contiguous, and
	// the stream sees everything once, in log order.
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 5 {
				if w%2 == 0 {
					resp, body := do(t, "POST", a.URL+"/v1/workspaces/ws1/events", pub, fmt.Sprintf(`{"type":"chat.message","data":{"chatId":"c","id":"s%d-%d","text":"t"}}`, w, i))
					if resp.StatusCode != 201 {
						t.Errorf("single: %d %s", resp.StatusCode, body)
					}
					continue
				}
				resp, body := do(t, "POST", url, pub, batchBody(1000*w+10*i, 4))
				var ans batchAnswer
				if resp.StatusCode != 201 || json.Unmarshal(body, &ans) != nil || len(ans.Events) != 4 {
					t.Errorf("batch: %d %s", resp.StatusCode, body)
					continue
				}
				if !contiguous(eventIDs(ans.Events)) {
					t.Errorf("batch ids %v are not contiguous", eventIDs(ans.Events))
				}
			}
		})
	}
	wg.Wait()
	all, _ := a.pollAll(t, "ws1", pub, "0")
	if want := 9 + 3*5 + 3*5*4; len(all) != want {
		t.Fatalf("log holds %d events; want %d", len(all), want)
	}
	if got := frameIDs(sub.events(t, len(all)-6)); fmt.Sprint(got) != fmt.Sprint(all[6:]) {
		t.Fatalf("stream delivered %v; want %v", got, all[6:])
	}
}

func eventIDs(es []event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// contiguous reports whether ids are one epoch's consecutive seqs.
func contiguous(ids []string) bool {
	for i := 1; i < len(ids); i++ {
		ep0, s0, _ := strings.Cut(ids[i-1], "-")
		ep1, s1, _ := strings.Cut(ids[i], "-")
		var a, b int
		fmt.Sscan(s0, &a)
		fmt.Sscan(s1, &b)
		if ep0 != ep1 || b != a+1 {
			return false
		}
	}
	return true
}
