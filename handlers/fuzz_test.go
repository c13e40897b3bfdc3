package handlers_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/handlers"
	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

// Every body a client can send to the routes that take one (publish,
// batch publish, presence, typing, stream tickets) is answered with a
// status below 500, and only a 201 puts events in the log: one for a
// publish, as many as the answer lists for a batch.
func FuzzRequestBodies(f *testing.F) {
	for _, s := range []string{
		`{"type":"chat.message","data":{"chatId":"c","id":"m","text":"hi"}}`,
		`{"type":"notification.new","targetUserId":"u2","data":{"id":"n"}}`,
		`{"status":"away"}`, `{"typing":true}`, `{"types":"chat.*,approval.*"}`, `{"types":"a..b"}`, `{"types":7}`, `{"typing":"yes"}`, `{`, `[]`, "{\"type\":\"chat.message\",\"data\":{\"text\":\"\xff\"}}",
		`{"type":"chat.message","data":{"chatId":"c","id":"m","text":"hi"},"correlationId":"` + strings.Repeat("x", 200) + `"}`,
		`{"events":[{"type":"chat.message","data":{"chatId":"c","id":"m","text":"hi"}},{"type":"agent.status.changed","data":{"agentId":"a","status":"idle"}}]}`,
		`{"events":[]}`, `{"events":[{"type":"chat.message","data":{}}]}`, `{"events":{}}`, `{"events":[1],"events":[2]}`, `{"events":[{`,
	} {
		for route := range 5 {
			f.Add(uint8(route), s)
		}
	}
	log := stream.NewMemory(stream.MemoryConfig{})
	f.Cleanup(func() { log.Close() })
	pres := stream.NewPresenceTracker(log, log, stream.PresenceConfig{})
	f.Cleanup(pres.Close)
	v, err := appmw.NewVerifier(appmw.AuthConfig{Secret: secret})
	if err != nil {
		f.Fatal(err)
	}
	h := handlers.New(slog.New(slog.DiscardHandler), handlers.Config{}, log, pres, log, v, f.Context())
	tok, _ := appmw.IssueToken(secret, appmw.TokenSpec{Subject: "u1", Workspaces: []string{"*"}, Scopes: []string{appmw.ScopePublish}, TTL: time.Hour}, time.Now())
	f.Fuzz(func(t *testing.T, route uint8, body string) {
		method, path := "POST", "/v1/workspaces/ws1/events"
		switch route % 5 {
		case 4:
			path = "/v1/workspaces/ws1/events/batch"
		case 1:
			method, path = "PUT", "/v1/workspaces/ws1/presence"
		case 2:
			path = "/v1/workspaces/ws1/chats/c1/typing"
		case 3:
			path = "/v1/workspaces/ws1/stream-tickets"
		}
		before, _ := log.Head(t.Context(), "ws1")
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
		after, _ := log.Head(t.Context(), "ws1")
		want := uint64(0)
		if rec.Code == http.StatusCreated {
			switch route % 5 {
			case 0:
				want = 1
			case 4:
				var ans struct{ Events []json.RawMessage }
				if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || len(ans.Events) == 0 {
					t.Fatalf("batch %q: 201 %s", body, rec.Body)
				}
				want = uint64(len(ans.Events))
			}
		}
		if appended := after.Seq - before.Seq; appended != want {
			t.Fatalf("%s %q: %d, and the log gained %d events; want %d", path, body, rec.Code, appended, want)
		}
	})
}
