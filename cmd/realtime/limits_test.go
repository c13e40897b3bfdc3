package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

func TestPublishRateLimitSharedAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	env["REALTIME_PUBLISH_RATE"] = "2"
	env["REALTIME_PUBLISH_BURST"] = "4"
	a, b := startNode(t, env), startNode(t, env)
	pub := pubToken(t)
	for i := range 4 {
		n := a
		if i%2 == 1 {
			n = b
		}
		n.publish(t, "noisy", chat(i))
	}
	resp, body := do(t, "POST", b.URL+"/v1/workspaces/noisy/events", pub, chat(5))
	expectProblem(t, "publish past the burst", resp, body, http.StatusTooManyRequests, "rate_limited")
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q; want whole seconds", resp.Header.Get("Retry-After"))
	}
	// Other workspaces are not slowed by a noisy one.
	a.publish(t, "quiet", chat(6))
	if ids, _ := a.pollAll(t, "noisy", pub, "0"); len(ids) != 4 {
		t.Errorf("noisy holds %d events; want the 4 allowed", len(ids))
	}
	// The bucket refills.
	time.Sleep(600 * time.Millisecond) // a token is due after 500ms at 2/s
	a.publish(t, "noisy", chat(7))
}

func TestEmbeddedPublishRateLimit(t *testing.T) {
	n := startNode(t, map[string]string{"REALTIME_PUBLISH_RATE": "1", "REALTIME_PUBLISH_BURST": "1"})
	// Invalid publishes spend no token: a publisher that sends malformed
	// events does not use up the workspace's rate for the others.
	for range 5 {
		resp, body := do(t, "POST", n.URL+"/v1/workspaces/ws1/events", pubToken(t), `{"type":"chat.message","data":{}}`)
		expectProblem(t, "invalid publish", resp, body, http.StatusUnprocessableEntity, "invalid_event")
	}
	n.publish(t, "ws1", chat(1))
	resp, body := do(t, "POST", n.URL+"/v1/workspaces/ws1/events", pubToken(t), chat(2))
	expectProblem(t, "second publish", resp, body, http.StatusTooManyRequests, "rate_limited")
}

func TestStreamsPerUserCap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		env["REALTIME_MAX_STREAMS_PER_USER"] = "2"
		checkStreamsPerUserCap(t, startNode(t, env))
	})
}

func checkStreamsPerUserCap(t *testing.T, n *node) {
	u1, u2 := token(t, "u1", []string{"ws1"}), token(t, "u2", []string{"ws1"})
	s1 := n.openStream(t, "ws1", u1, "")
	s1.first(t)
	s2 := n.openStream(t, "ws1", u1, "")
	s2.first(t)
	// The third stream is refused the browser-safe way: 200, retry, end.
	s3 := n.openStream(t, "ws1", u1, "")
	if f, ok := s3.next(t); !ok || f.Retry == "" || f.Event != "" {
		t.Fatalf("third stream: %+v; want only a retry hint", f)
	}
	if f, ok := s3.next(t); ok {
		t.Fatalf("third stream went on with %+v", f)
	}
	// A long poll counts as a connection too.
	head := n.poll(t, "ws1", u1, "").NextCursor
	resp, body := do(t, "GET", n.URL+"/v1/workspaces/ws1/events?wait=5&cursor="+head, u1, "")
	expectProblem(t, "long poll at the cap", resp, body, http.StatusTooManyRequests, "too_many_streams")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Other users are not affected, and a closed stream frees its slot.
	n.openStream(t, "ws1", u2, "").first(t)
	s1.close()
	waitFor(t, func() bool {
		s, _ := n.tryStream(t, "ws1", u1, "")
		f, ok := s.next(t)
		defer s.close()
		if !ok || f.Retry == "" {
			return false
		}
		f, ok = s.next(t)
		return ok && f.Event == "ready"
	})
}

func TestWorkspacesPerNodeCap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		env["REALTIME_MAX_WORKSPACES"] = "2"
		checkWorkspacesPerNodeCap(t, startNode(t, env))
	})
}

func checkWorkspacesPerNodeCap(t *testing.T, n *node) {
	tok := token(t, "u1", []string{"*"})
	a := n.openStream(t, "wsA", tok, "")
	a.first(t)
	n.openStream(t, "wsB", tok, "").first(t)
	a2 := n.openStream(t, "wsA", tok, "") // more readers of a followed workspace are fine
	a2.first(t)
	c := n.openStream(t, "wsC", tok, "")
	if f, ok := c.next(t); !ok || f.Retry == "" || f.Event != "" {
		t.Fatalf("stream of a third workspace: %+v; want only a retry hint", f)
	}
	if f, ok := c.next(t); ok {
		t.Fatalf("stream of a third workspace went on with %+v", f)
	}
	head := n.poll(t, "wsC", tok, "").NextCursor // a plain poll needs no following
	resp, body := do(t, "GET", n.URL+"/v1/workspaces/wsC/events?wait=5&cursor="+head, tok, "")
	expectProblem(t, "long poll of a third workspace", resp, body, http.StatusServiceUnavailable, "node_busy")
	// Once wsA has no reader left here, wsC fits.
	a.close()
	a2.close()
	waitFor(t, func() bool {
		resp, _ := do(t, "GET", n.URL+"/v1/workspaces/wsC/events?wait=1&cursor="+head, tok, "")
		return resp.StatusCode == 200
	})
}

// A user buys stream tickets at REALTIME_TICKET_RATE, on all nodes and
// workspaces together (each ticket is held until it expires, so a flood
// of them would fill the store); another user is not slowed.
func TestTicketRateLimitPerUser(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	env["REALTIME_TICKET_RATE"] = "0.5" // a burst of 2, a token back every 2 s
	a, b := startNode(t, env), startNode(t, env)
	flood := token(t, "flood", []string{"*"})
	buy := func(n *node, ws, tok string) (*http.Response, []byte) {
		return do(t, "POST", n.URL+"/v1/workspaces/"+ws+"/stream-tickets", tok, "")
	}
	for i, n := range []*node{a, b} {
		if resp, body := buy(n, "ws"+strconv.Itoa(i), flood); resp.StatusCode != http.StatusCreated {
			t.Fatalf("ticket %d: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := buy(b, "ws9", flood)
	expectProblem(t, "a ticket past the burst", resp, body, http.StatusTooManyRequests, "rate_limited")
	if resp, body := buy(a, "ws0", token(t, "other", []string{"ws0"})); resp.StatusCode != http.StatusCreated {
		t.Fatalf("another user's ticket: %d %s", resp.StatusCode, body)
	}
	_, m := do(t, "GET", b.URL+"/metrics", "", "")
	if !strings.Contains(string(m), `realtime_rate_limited_total{limit="ticket"} 1`) {
		t.Errorf("metrics do not count the refused ticket:\n%s", m)
	}
}
