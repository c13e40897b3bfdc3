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

func TestPresenceAndTypingAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	env["REALTIME_PRESENCE_GRACE"] = "300ms"
	env["REALTIME_TYPING_TTL"] = "400ms"
	a, b := startNode(t, env), startNode(t, env)
	alice, bob := token(t, "alice", []string{"ws1"}), token(t, "bob", []string{"ws1"})

	// Bob watches from node B; his stream makes him present.
	watch := b.openStream(t, "ws1", bob, "")
	watch.first(t)
	if typ, d := watch.nextEphemeral(t); typ != "presence.updated" || d["userId"] != "bob" || d["status"] != "online" {
		t.Fatalf("bob's own arrival: %s %v", typ, d)
	}
	if got := a.presence(t, "ws1", alice); got != "bob=online" {
		t.Fatalf("presence = %s; want bob=online", got)
	}
	// Alice sets a status on node A; bob sees it on B.
	resp, body := do(t, "PUT", a.URL+"/v1/workspaces/ws1/presence", alice, `{"status":"away"}`)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"away"`) {
		t.Fatalf("PUT presence: %d %s", resp.StatusCode, body)
	}
	if typ, d := watch.nextEphemeral(t); typ != "presence.updated" || d["userId"] != "alice" || d["status"] != "away" {
		t.Fatalf("alice away: %s %v", typ, d)
	}
	if got := b.presence(t, "ws1", bob); got != "alice=away,bob=online" {
		t.Fatalf("presence = %s", got)
	}

	// Typing on A reaches a long poll waiting on B, and stops by itself.
	head := b.poll(t, "ws1", bob, "").NextCursor
	var polled struct {
		Events    []event           `json:"events"`
		Ephemeral []json.RawMessage `json:"ephemeral"`
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		_, body := do(t, "GET", b.URL+"/v1/workspaces/ws1/events?wait=10&cursor="+head, bob, "")
		json.Unmarshal(body, &polled)
	})
	waitFor(t, func() bool { return strings.Contains(b.stderr.String(), `"msg":"long poll"`) })
	resp, body = do(t, "POST", a.URL+"/v1/workspaces/ws1/chats/general/typing", alice, `{"typing":true}`)
	if resp.StatusCode != 200 {
		t.Fatalf("POST typing: %d %s", resp.StatusCode, body)
	}
	wg.Wait()
	if len(polled.Events) != 0 || len(polled.Ephemeral) != 1 || !strings.Contains(string(polled.Ephemeral[0]), `"type":"typing.started"`) {
		t.Fatalf("long poll answer: %d events, ephemeral %s; want just typing.started", len(polled.Events), polled.Ephemeral)
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
	resumed := b.openStream(t, "ws1", bob, "", "Last-Event-ID", head)
	resumed.first(t)
	resumed.wantEphemeral = true
	if f, ok := resumed.next(t); !ok || f.ID != e.ID {
		t.Fatalf("resumed stream's first frame %+v; want %s, with no stale presence or typing", f, e.ID)
	}
	resumed.close()

	// A second stream of bob's closing changes nothing; his last one
	// closing makes him leave after the grace.
	other := a.openStream(t, "ws1", alice, "")
	other.first(t)
	watch.close()
	for {
		typ, d := other.nextEphemeral(t)
		if typ == "presence.updated" && d["userId"] == "bob" {
			if d["status"] != "offline" {
				t.Fatalf("bob leaving: %v", d)
			}
			break
		}
	}
	if got := a.presence(t, "ws1", alice); got != "alice=away" {
		t.Fatalf("presence after bob left = %s; want alice=away", got)
	}
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
