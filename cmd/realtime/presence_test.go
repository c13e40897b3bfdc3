package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

type presenceList struct {
	Users []struct {
		UserID string    `json:"userId"`
		Status string    `json:"status"`
		Since  time.Time `json:"since"`
	} `json:"users"`
}

func (n *node) presence(t *testing.T, ws, tok string) string {
	t.Helper()
	resp, body := do(t, "GET", n.URL+"/v1/workspaces/"+ws+"/presence", tok, "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET presence: %d %s", resp.StatusCode, body)
	}
	var l presenceList
	if err := json.Unmarshal(body, &l); err != nil || l.Users == nil {
		t.Fatalf("presence %s: %v", body, err)
	}
	var out []string
	for _, u := range l.Users {
		if u.Since.IsZero() {
			t.Errorf("presence of %s has no since", u.UserID)
		}
		out = append(out, u.UserID+"="+u.Status)
	}
	return strings.Join(out, ",")
}

// nextEphemeral returns the next presence or typing frame, checking it has
// no id.
func (s *sseStream) nextEphemeral(t *testing.T) (typ string, data map[string]any) {
	t.Helper()
	s.wantEphemeral = true
	defer func() { s.wantEphemeral = false }()
	for {
		f, ok := s.next(t)
		if !ok {
			t.Fatal("stream ended")
		}
		if !isEphemeral(f) {
			continue
		}
		if f.HasID {
			t.Fatalf("ephemeral frame %+v has an id", f)
		}
		var e struct {
			Type string         `json:"type"`
			ID   *string        `json:"id"`
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal([]byte(f.Data), &e); err != nil || e.ID != nil || e.Type != f.Event {
			t.Fatalf("ephemeral data %q: %v", f.Data, err)
		}
		return e.Type, e.Data
	}
}

// statusOf returns the status a presence.changed event gives user ("" if
// none).
func statusOf(t *testing.T, typ string, d map[string]any, user string) string {
	t.Helper()
	if typ != "presence.changed" {
		return ""
	}
	for _, status := range []string{"online", "away", "busy", "offline"} {
		users, ok := d[status].([]any)
		if !ok {
			t.Fatalf("presence.changed %v: %s is not an array", d, status)
		}
		for _, u := range users {
			if u == user {
				return status
			}
		}
	}
	return ""
}

// nextStatus reads presence.changed events until one mentions user.
func (s *sseStream) nextStatus(t *testing.T, user string) string {
	t.Helper()
	for {
		typ, d := s.nextEphemeral(t)
		if st := statusOf(t, typ, d, user); st != "" {
			return st
		}
	}
}

func TestPresenceAndTypingAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	env["REALTIME_PRESENCE_GRACE"] = "300ms"
	env["REALTIME_TYPING_TTL"] = "400ms"
	a, b := startNode(t, env), startNode(t, env)
	alice, bob := token(t, "alice", []string{"ws1"}), token(t, "bob", []string{"ws1"})

	// Bob watches from node B, asking for presence and typing; his
	// stream makes him present.
	watch := b.openStream(t, "ws1", bob, "types=*")
	watch.first(t)
	if st := watch.nextStatus(t, "bob"); st != "online" {
		t.Fatalf("bob's own arrival: %s", st)
	}
	// A plain stream asks for no presence or typing, and gets none.
	plain := b.openStream(t, "ws1", bob, "")
	plain.first(t)
	if got := a.presence(t, "ws1", alice); got != "bob=online" {
		t.Fatalf("presence = %s; want bob=online", got)
	}
	// Alice sets a status on node A; bob sees it on B.
	resp, body := do(t, "PUT", a.URL+"/v1/workspaces/ws1/presence", alice, `{"status":"away"}`)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"away"`) {
		t.Fatalf("PUT presence: %d %s", resp.StatusCode, body)
	}
	if st := watch.nextStatus(t, "alice"); st != "away" {
		t.Fatalf("alice: %s; want away", st)
	}
	if got := b.presence(t, "ws1", bob); got != "alice=away,bob=online" {
		t.Fatalf("presence = %s", got)
	}

	// Typing on A reaches a long poll waiting on B that asked for it, and
	// not one that did not; it stops by itself.
	head := b.poll(t, "ws1", bob, "").NextCursor
	type answer struct {
		Events    []event           `json:"events"`
		Ephemeral []json.RawMessage `json:"ephemeral"`
	}
	var asked, unasked answer
	var wg sync.WaitGroup
	wg.Go(func() {
		_, body := do(t, "GET", b.URL+"/v1/workspaces/ws1/events?wait=10&types=typing.*&cursor="+head, bob, "")
		json.Unmarshal(body, &asked)
	})
	wg.Go(func() {
		_, body := do(t, "GET", b.URL+"/v1/workspaces/ws1/events?wait=2&cursor="+head, bob, "")
		json.Unmarshal(body, &unasked)
	})
	waitFor(t, func() bool { return strings.Count(b.stderr.String(), `"msg":"long poll"`) >= 2 })
	resp, body = do(t, "POST", a.URL+"/v1/workspaces/ws1/chats/general/typing", alice, `{"typing":true}`)
	if resp.StatusCode != 200 {
		t.Fatalf("POST typing: %d %s", resp.StatusCode, body)
	}
	wg.Wait()
	if len(asked.Events) != 0 || len(asked.Ephemeral) != 1 || !strings.Contains(string(asked.Ephemeral[0]), `"type":"typing.started"`) {
		t.Fatalf("long poll with types=typing.*: %d events, ephemeral %s; want just typing.started", len(asked.Events), asked.Ephemeral)
	}
	if unasked.Ephemeral == nil || len(unasked.Ephemeral) != 0 || len(unasked.Events) != 0 {
		t.Fatalf("long poll without types: events %v, ephemeral %s; want neither", unasked.Events, unasked.Ephemeral)
	}
	if typ, d := watch.nextEphemeral(t); typ != "typing.started" || d["chatId"] != "general" || d["userId"] != "alice" {
		t.Fatalf("typing started: %s %v", typ, d)
	}
	if typ, d := watch.nextEphemeral(t); typ != "typing.stopped" || d["userId"] != "alice" {
		t.Fatalf("typing lapsed: %s %v; want typing.stopped after the TTL", typ, d)
	}

	// Ephemeral events are not in the log: a client that resumes from
	// before them gets only the durable events.
	e := a.publish(t, "ws1", chat(1))
	resumed := b.openStream(t, "ws1", bob, "types=*", "Last-Event-ID", head)
	resumed.first(t)
	resumed.wantEphemeral = true
	if f, ok := resumed.next(t); !ok || f.ID != e.ID {
		t.Fatalf("resumed stream's first frame %+v; want %s, with no stale presence or typing", f, e.ID)
	}
	resumed.close()
	// The plain stream saw all of it pass as nothing but the event.
	plain.wantEphemeral = true
	if f, ok := plain.next(t); !ok || f.ID != e.ID {
		t.Fatalf("plain stream's first frame %+v; want %s, and no presence or typing before it", f, e.ID)
	}
	plain.close()

	// Bob's last stream closing makes him leave after the grace.
	other := a.openStream(t, "ws1", alice, "types=presence.*")
	other.first(t)
	watch.close()
	if st := other.nextStatus(t, "bob"); st != "offline" {
		t.Fatalf("bob leaving: %s", st)
	}
	if got := a.presence(t, "ws1", alice); got != "alice=away" {
		t.Fatalf("presence after bob left = %s; want alice=away", got)
	}
}

// Presence and typing changes are limited per user, on every node: past
// the burst, 429 with Retry-After; another user is not affected.
func TestPresenceRateLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		env["REALTIME_PRESENCE_RATE"] = "0.5"
		env["REALTIME_PRESENCE_BURST"] = "3"
		n := startNode(t, env)
		flood, calm := token(t, "flood", []string{"ws1"}), token(t, "calm", []string{"ws1"})
		base := n.URL + "/v1/workspaces/ws1"
		for i := range 3 {
			status := []string{"away", "busy", "online"}[i]
			if resp, body := do(t, "PUT", base+"/presence", flood, `{"status":"`+status+`"}`); resp.StatusCode != 200 {
				t.Fatalf("change %d within the burst: %d %s", i+1, resp.StatusCode, body)
			}
		}
		for _, req := range []struct{ method, url, body string }{
			{"PUT", base + "/presence", `{"status":"away"}`},
			{"POST", base + "/chats/c1/typing", `{"typing":true}`},
		} {
			resp, body := do(t, req.method, req.url, flood, req.body)
			expectProblem(t, req.method+" past the burst", resp, body, http.StatusTooManyRequests, "rate_limited")
			if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
				t.Fatalf("%s past the burst: Retry-After %q", req.method, ra)
			}
		}
		if resp, body := do(t, "POST", base+"/chats/c1/typing", calm, `{"typing":true}`); resp.StatusCode != 200 {
			t.Fatalf("another user: %d %s", resp.StatusCode, body)
		}
		if got := n.presence(t, "ws1", calm); !strings.Contains(got, "flood=online") {
			t.Fatalf("presence = %s; want the last accepted status (online)", got)
		}
	})
}

func TestPresenceErrors(t *testing.T) {
	n := startNode(t, nil)
	tok := token(t, "u1", []string{"ws1"})
	base := n.URL + "/v1/workspaces/ws1"
	for _, tc := range []struct {
		name, method, url, body string
		hdr                     []string
		status                  int
		code                    string
	}{
		{"bad status", "PUT", base + "/presence", `{"status":"sleeping"}`, nil, 422, "invalid_event"},
		{"no status", "PUT", base + "/presence", `{}`, nil, 422, "invalid_event"},
		{"presence not json", "PUT", base + "/presence", `{"status":`, nil, 400, "invalid_json"},
		// Read as strictly as a publish: a repeated member, an unknown one,
		// a name in another case.
		{"presence repeated member", "PUT", base + "/presence", `{"status":"away","status":"online"}`, nil, 400, "invalid_json"},
		{"presence unknown member", "PUT", base + "/presence", `{"status":"away","mood":"good"}`, nil, 400, "invalid_json"},
		{"presence member case", "PUT", base + "/presence", `{"Status":"away"}`, nil, 400, "invalid_json"},
		{"ticket unknown member", "POST", base + "/stream-tickets", `{"types":"chat.*","x":1}`, nil, 400, "invalid_json"},
		{"presence wrong type", "PUT", base + "/presence", `{"status":"away"}`, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"typing missing", "POST", base + "/chats/c1/typing", `{}`, nil, 422, "invalid_event"},
		{"typing not bool", "POST", base + "/chats/c1/typing", `{"typing":"yes"}`, nil, 400, "invalid_json"},
		{"bad chat id", "POST", base + "/chats/a%7Bb/typing", `{"typing":true}`, nil, 400, "invalid_parameter"},
		{"other workspace", "PUT", n.URL + "/v1/workspaces/ws2/presence", `{"status":"away"}`, nil, 403, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.method, tc.url, tok, tc.body, tc.hdr...)
			expectProblem(t, tc.name, resp, body, tc.status, tc.code)
		})
	}
	if got := n.presence(t, "ws1", tok); got != "" {
		t.Fatalf("bad requests changed presence: %s", got)
	}
	resp, _ := do(t, "GET", base+"/presence", "", "")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("presence without a token: %d", resp.StatusCode)
	}
}

// A quiet stream gets its heartbeats, and keeps its user present, from the
// node's sweeper (its own goroutine sleeps): over several presence
// lifetimes (3 heartbeats each) of silence, heartbeats keep coming, the
// user stays online, and an event published meanwhile still arrives.
func TestQuietStreamHeartbeatsAndPresence(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		env["REALTIME_HEARTBEAT"] = "100ms"
		n := startNode(t, env)
		tok := token(t, "u1", []string{"ws1"})
		s := n.openStream(t, "ws1", tok, "")
		s.first(t)
		beats := func(k int) {
			t.Helper()
			for seen := 0; seen < k; {
				f, ok := s.next(t)
				if !ok {
					t.Fatal("stream ended")
				}
				if f.Event == "heartbeat" {
					if f.HasID || f.Data != "{}" {
						t.Fatalf("heartbeat frame %+v", f)
					}
					seen++
				}
			}
		}
		beats(8)
		if got := n.presence(t, "ws1", tok); got != "u1=online" {
			t.Fatalf("after 8 heartbeats of silence: presence %q; want u1=online", got)
		}
		id := n.publish(t, "ws1", `{"type":"chat.message","data":{"chatId":"c","id":"m1","text":"hi"}}`).ID
		if got := s.events(t, 1); got[0].ID != id {
			t.Fatalf("got %s; want %s", got[0].ID, id)
		}
		beats(4)
		if got := n.presence(t, "ws1", tok); got != "u1=online" {
			t.Fatalf("after the event and 4 more heartbeats: presence %q; want u1=online", got)
		}
	})
}
