package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

var prefixes atomic.Int64

// forEachBackend runs fn against the embedded log and against a private
// redis-server: the service must keep its promises on both.
func forEachBackend(t *testing.T, fn func(t *testing.T, env map[string]string)) {
	t.Run("embedded", func(t *testing.T) { fn(t, map[string]string{}) })
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		fn(t, redisEnv(srv))
	})
}

func redisEnv(srv *redistest.Server) map[string]string {
	return map[string]string{"REALTIME_REDIS_URL": srv.URL(), "REALTIME_REDIS_PREFIX": fmt.Sprintf("e2e%d", prefixes.Add(1))}
}

func TestPublishStreamPoll(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		n := startNode(t, env)
		tok := token(t, "u1", []string{"ws1"})
		s := n.openStream(t, "ws1", tok, "")
		for k, want := range map[string]string{
			"Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-store, no-transform", "X-Accel-Buffering": "no",
		} {
			if got := s.resp.Header.Get(k); got != want {
				t.Errorf("stream header %s = %q; want %q", k, got, want)
			}
		}
		if ce := s.resp.Header.Get("Content-Encoding"); ce != "" {
			t.Errorf("stream is compressed: Content-Encoding %q", ce)
		}
		s.first(t)
		var published []event
		bodies := []string{
			`{"type":"approval.created","data":{"id":"a1","title":"Deploy"},"source":"deployer"}`,
			`{"type":"agent.status.changed","data":{"agentId":"ag1","status":"running"},"correlationId":"corr-9"}`,
			chat(1),
		}
		for _, b := range bodies {
			published = append(published, n.publish(t, "ws1", b))
		}
		got := s.events(t, 3)
		for i, f := range got {
			want, _ := json.Marshal(published[i])
			var gotEv event
			if err := json.Unmarshal([]byte(f.Data), &gotEv); err != nil {
				t.Fatalf("frame data %q: %v", f.Data, err)
			}
			back, _ := json.Marshal(gotEv)
			if f.ID != published[i].ID || f.Event != published[i].Type || string(back) != string(want) {
				t.Errorf("frame %d = id %q event %q data %s; want id %q event %q data %s", i, f.ID, f.Event, back, published[i].ID, published[i].Type, want)
			}
		}
		if published[1].CorrelationID != "corr-9" || published[0].Source != "deployer" || published[0].CorrelationID == "" {
			t.Errorf("envelope fields: %+v", published[:2])
		}
		ids, _ := n.pollAll(t, "ws1", tok, "0")
		if d := cmp.Diff(frameIDs(got), ids); d != "" {
			t.Errorf("poll from 0 vs stream ids (-stream +poll):\n%s", d)
		}
	})
}

func TestResumeByHeaderAndQuery(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		n := startNode(t, env)
		tok := token(t, "u1", []string{"*"})
		for i, tc := range []struct {
			name  string
			query func(ids []string) string
			hdr   func(ids []string) []string
			want  func(ids []string) []string
		}{
			{"header", func([]string) string { return "" }, func(ids []string) []string { return []string{"Last-Event-ID", ids[1]} }, func(ids []string) []string { return ids[2:] }},
			{"query", func(ids []string) string { return "lastEventId=" + ids[1] }, func([]string) []string { return nil }, func(ids []string) []string { return ids[2:] }},
			{"header wins over query", func(ids []string) string { return "lastEventId=" + ids[0] }, func(ids []string) []string { return []string{"Last-Event-ID", ids[3]} }, func(ids []string) []string { return ids[4:] }},
			{"from the oldest", func([]string) string { return "lastEventId=0" }, func([]string) []string { return nil }, func(ids []string) []string { return ids }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ws := fmt.Sprintf("resume%d", i)
				ids := n.publishN(t, ws, 5)
				want := tc.want(ids)
				s := n.openStream(t, ws, tok, tc.query(ids), tc.hdr(ids)...)
				s.first(t)
				if d := cmp.Diff(want, frameIDs(s.events(t, len(want)))); d != "" {
					t.Errorf("resumed ids (-want +got):\n%s", d)
				}
				// Then live, with nothing repeated.
				live := n.publish(t, ws, chat(99))
				if f := s.events(t, 1); f[0].ID != live.ID {
					t.Errorf("after catch-up got %s; want live %s", f[0].ID, live.ID)
				}
			})
		}
	})
}

func TestPollAndStreamAgree(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		n := startNode(t, env)
		tok := token(t, "u1", []string{"ws1"})
		ids := n.publishN(t, "ws1", 30)
		for _, cursor := range []string{"0", ids[0], ids[13], ids[29]} {
			polled, next := n.pollAll(t, "ws1", tok, cursor)
			s := n.openStream(t, "ws1", tok, "", "Last-Event-ID", cursor)
			s.first(t)
			streamed := frameIDs(s.events(t, len(polled)))
			if d := cmp.Diff(polled, streamed, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("from %s (-poll +stream):\n%s", cursor, d)
			}
			if next != ids[29] {
				t.Errorf("poll from %s ends at %s; want %s", cursor, next, ids[29])
			}
			s.close()
		}
		// A poll without a cursor gives the head, and nothing else.
		p := n.poll(t, "ws1", tok, "")
		if len(p.Events) != 0 || p.NextCursor != ids[29] || p.HasMore || p.Reset {
			t.Errorf("poll without cursor = %+v; want no events and nextCursor %s", p, ids[29])
		}
	})
}

// Clients that keep dropping and resuming, switching between streaming and
// polling, while events are published concurrently, each see every event
// exactly once and in order.
// Readers that keep dropping and resuming, by stream or by poll, while
// several publishers append at once (single events and batches, on both
// nodes when there are two): each reader gets the log, whole, once, in
// log order.
func TestResumeRacingPublishersExactlyOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		nodes := []*node{startNode(t, env)}
		if env["REALTIME_REDIS_URL"] != "" {
			nodes = append(nodes, startNode(t, env))
		}
		n := nodes[0]
		tok := token(t, "u1", []string{"ws1"})
		pub := pubToken(t)
		start := n.poll(t, "ws1", tok, "").NextCursor
		const publishers, each, clients = 4, 50, 6
		const total = publishers * each
		var wg sync.WaitGroup
		for p := range publishers {
			wg.Go(func() {
				on := nodes[p%len(nodes)]
				for i := 0; i < each; {
					if p%2 == 1 && i+5 <= each {
						resp, body := do(t, "POST", on.URL+"/v1/workspaces/ws1/events/batch", pub, batchBody(p*1000+i, 5))
						if resp.StatusCode != 201 {
							t.Errorf("batch: %d %s", resp.StatusCode, body)
							return
						}
						i += 5
						continue
					}
					on.publish(t, "ws1", chat(p*1000+i))
					i++
				}
			})
		}
		got := make([][]string, clients)
		for c := range clients {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(c), 7))
				cursor := start
				for len(got[c]) < total && !t.Failed() {
					on := nodes[rng.IntN(len(nodes))]
					if rng.IntN(3) == 0 { // a round of polling
						p := on.poll(t, "ws1", tok, fmt.Sprintf("cursor=%s&limit=%d&wait=5", cursor, 1+rng.IntN(20)))
						if p.Reset {
							t.Errorf("client %d: unexpected reset", c)
							return
						}
						for _, e := range p.Events {
							got[c] = append(got[c], e.ID)
						}
						cursor = p.NextCursor
						continue
					}
					s := on.openStream(t, "ws1", tok, "", "Last-Event-ID", cursor)
					s.first(t)
					want := min(1+rng.IntN(40), total-len(got[c]))
					for _, f := range s.events(t, want) {
						got[c] = append(got[c], f.ID)
						cursor = f.ID
					}
					s.close()
				}
			})
		}
		wg.Wait()
		logged, _ := n.pollAll(t, "ws1", pub, start)
		if len(logged) != total {
			t.Fatalf("log holds %d events after the start; want %d", len(logged), total)
		}
		for c := range clients {
			if d := cmp.Diff(logged, got[c]); d != "" {
				t.Errorf("client %d (-log +received):\n%s", c, d)
			}
		}
	})
}

func TestWorkspaceIsolation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		n := startNode(t, env)
		tokA := token(t, "u1", []string{"wsA"})
		for _, path := range []string{"/v1/workspaces/wsB/events", "/v1/workspaces/wsB/events/stream"} {
			resp, b := do(t, "GET", n.URL+path, tokA, "")
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), `"code":"forbidden"`) {
				t.Errorf("GET %s with a wsA token: %d %s; want 403 forbidden", path, resp.StatusCode, b)
			}
		}
		s := n.openStream(t, "wsA", tokA, "")
		s.first(t)
		n.publish(t, "wsB", chat(1))
		a := n.publish(t, "wsA", chat(2))
		if f := s.events(t, 1); f[0].ID != a.ID {
			t.Fatalf("wsA stream got %s; want only wsA's %s", f[0].ID, a.ID)
		}
		ids, _ := n.pollAll(t, "wsA", tokA, "0")
		if d := cmp.Diff([]string{a.ID}, ids); d != "" {
			t.Errorf("wsA poll (-want +got):\n%s", d)
		}
	})
}

func TestTargetUserIsolation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		n := startNode(t, env)
		u1, u2 := token(t, "u1", []string{"ws1"}), token(t, "u2", []string{"ws1"})
		s1, s2 := n.openStream(t, "ws1", u1, ""), n.openStream(t, "ws1", u2, "")
		s1.first(t)
		s2.first(t)
		forU1 := n.publish(t, "ws1", `{"type":"notification.new","targetUserId":"u1","data":{"id":"n1","title":"for u1"}}`)
		everyone := n.publish(t, "ws1", chat(1))
		if d := cmp.Diff([]string{forU1.ID, everyone.ID}, frameIDs(s1.events(t, 2))); d != "" {
			t.Errorf("u1 stream (-want +got):\n%s", d)
		}
		if d := cmp.Diff([]string{everyone.ID}, frameIDs(s2.events(t, 1))); d != "" {
			t.Errorf("u2 stream (-want +got):\n%s", d)
		}
		ids1, _ := n.pollAll(t, "ws1", u1, "0")
		ids2, next2 := n.pollAll(t, "ws1", u2, "0")
		if d := cmp.Diff([]string{forU1.ID, everyone.ID}, ids1); d != "" {
			t.Errorf("u1 poll (-want +got):\n%s", d)
		}
		if d := cmp.Diff([]string{everyone.ID}, ids2); d != "" {
			t.Errorf("u2 poll (-want +got):\n%s", d)
		}
		if next2 != everyone.ID {
			t.Errorf("u2 nextCursor %s; want %s", next2, everyone.ID)
		}
		// u2 resuming before an event hidden from it gets an id-only
		// frame that moves its resume point past it, and never the event.
		hidden := n.publish(t, "ws1", `{"type":"notification.new","targetUserId":"u1","data":{"id":"n2"}}`)
		s := n.openStream(t, "ws1", u2, "", "Last-Event-ID", everyone.ID)
		s.first(t)
		f, ok := s.next(t)
		if !ok || f.Event != "" || f.Data != "" || f.ID != hidden.ID {
			t.Errorf("u2 resuming before a hidden event got %+v; want an id-only frame with id %s", f, hidden.ID)
		}
	})
}

func TestTypeFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		n := startNode(t, env)
		tok := token(t, "u1", []string{"ws1"})
		s := n.openStream(t, "ws1", tok, "types=approval.*,agent.status.changed")
		s.first(t)
		var want []string
		for _, b := range []string{
			chat(1),
			`{"type":"approval.created","data":{"id":"a1"}}`,
			`{"type":"notification.new","data":{"id":"n1"}}`,
			`{"type":"agent.status.changed","data":{"agentId":"g","status":"idle"}}`,
			`{"type":"approval.deleted","data":{"id":"a1"}}`,
		} {
			e := n.publish(t, "ws1", b)
			if strings.HasPrefix(e.Type, "approval.") || e.Type == "agent.status.changed" {
				want = append(want, e.ID)
			}
		}
		if d := cmp.Diff(want, frameIDs(s.events(t, 3))); d != "" {
			t.Errorf("filtered stream (-want +got):\n%s", d)
		}
		p := n.poll(t, "ws1", tok, "cursor=0&types=approval.*,agent.status.changed")
		var polled []string
		for _, e := range p.Events {
			polled = append(polled, e.ID)
		}
		if d := cmp.Diff(want, polled); d != "" {
			t.Errorf("filtered poll (-want +got):\n%s", d)
		}
	})
}
