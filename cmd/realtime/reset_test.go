package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

// expectReset reads the frames after the retry: hint of a stream resumed
// from a lost cursor: a sync.reset whose id and data name the head.
func expectReset(t *testing.T, s *sseStream, head string) {
	t.Helper()
	s.first(t)
	f, ok := s.next(t)
	if !ok || f.Event != "sync.reset" || f.ID != head {
		t.Fatalf("after a lost cursor got %+v; want event sync.reset with id %s", f, head)
	}
	var data struct{ Reason, Head string }
	if err := json.Unmarshal([]byte(f.Data), &data); err != nil || data.Reason != "cursor_expired" || data.Head != head {
		t.Fatalf("sync.reset data %q; want reason cursor_expired and head %s", f.Data, head)
	}
}

// checkLost asserts that both readers report cursor as lost, with head as
// where to continue, and that the stream then continues live.
func checkLost(t *testing.T, n *node, ws, cursor string) {
	t.Helper()
	tok := token(t, "u1", []string{ws})
	p := n.poll(t, ws, tok, "cursor="+cursor)
	if !p.Reset || len(p.Events) != 0 || p.NextCursor == cursor {
		t.Fatalf("poll from lost cursor %s = %+v; want reset with a new nextCursor", cursor, p)
	}
	head := p.NextCursor
	s := n.openStream(t, ws, tok, "", "Last-Event-ID", cursor)
	expectReset(t, s, head)
	live := n.publish(t, ws, chat(1000))
	if f := s.events(t, 1); f[0].ID != live.ID {
		t.Fatalf("after the reset got %s; want live %s", f[0].ID, live.ID)
	}
	// The head the client was given continues without a gap.
	after := n.poll(t, ws, tok, "cursor="+head)
	if after.Reset || len(after.Events) != 1 || after.Events[0].ID != live.ID {
		t.Fatalf("poll from the reset head %s = %+v; want exactly %s", head, after, live.ID)
	}
}

func TestResetOnTrimmedCursor(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		env["REALTIME_RETENTION"] = "10"
		n := startNode(t, env)
		tok := token(t, "u1", []string{"ws1"})
		ids := n.publishN(t, "ws1", 300)
		kept, _ := n.pollAll(t, "ws1", tok, "0")
		if len(kept) < 10 || len(kept) >= 300 || kept[len(kept)-1] != ids[299] {
			t.Fatalf("retention kept %d events ending %s", len(kept), kept[len(kept)-1])
		}
		firstKept := len(ids) - len(kept)
		if ids[firstKept] != kept[0] {
			t.Fatalf("oldest kept %s; want %s", kept[0], ids[firstKept])
		}
		// The last trimmed event's id lost nothing: no reset.
		lastTrimmed := ids[firstKept-1]
		got, _ := n.pollAll(t, "ws1", tok, lastTrimmed)
		if len(got) != len(kept) {
			t.Fatalf("poll from the last trimmed id returned %d events; want %d", len(got), len(kept))
		}
		s := n.openStream(t, "ws1", tok, "lastEventId="+lastTrimmed)
		s.first(t)
		if f := s.events(t, 1); f[0].ID != kept[0] {
			t.Fatalf("stream from the last trimmed id starts at %s; want %s", f[0].ID, kept[0])
		}
		s.close()
		// One earlier lost an event.
		p := n.poll(t, "ws1", tok, "cursor="+ids[firstKept-2])
		if !p.Reset || p.NextCursor != ids[299] {
			t.Fatalf("poll from a trimmed cursor = %+v; want reset at %s", p, ids[299])
		}
		checkLost(t, n, "ws1", ids[0])
	})
}

func TestResetAfterEmbeddedLogRestart(t *testing.T) {
	n := startNode(t, nil)
	ids := n.publishN(t, "ws1", 3)
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, nil)
	checkLost(t, n2, "ws1", ids[2])
}

func TestResetAfterRedisFlush(t *testing.T) {
	srv := redistest.Start(t)
	n := startNode(t, redisEnv(srv))
	ids := n.publishN(t, "ws1", 3)
	srv.FlushAll()
	// The workspace is quiet: the cursor must still be recognised as lost.
	checkLost(t, n, "ws1", ids[2])
}

func TestResetAfterRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	n := startNode(t, redisEnv(srv))
	tok := token(t, "u1", []string{"ws1"})
	ids := n.publishN(t, "ws1", 3)
	// A stream open across the restart is told to reset too.
	open := n.openStream(t, "ws1", tok, "", "Last-Event-ID", ids[2])
	open.first(t)
	srv.Restart()
	waitReady(t, n)
	checkLost(t, n, "ws1", ids[2])
	// The stream that stayed open across the restart is told to reset as
	// soon as the node's notification feed is back, without reconnecting.
	for {
		f, ok := open.next(t)
		if !ok {
			t.Fatal("the open stream ended instead of resetting")
		}
		if f.Event == "sync.reset" {
			break
		}
		if f.Event == "chat.message" {
			t.Fatalf("event %s delivered across the restart without a reset", f.ID)
		}
	}
}

// waitReady polls /readyz until it answers 200.
func waitReady(t *testing.T, n *node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		resp, _ := do(t, "GET", n.URL+"/readyz", "", "")
		if resp.StatusCode == 200 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node not ready: %d", resp.StatusCode)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func TestTwoNodesOneRedis(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	a, b := startNode(t, env), startNode(t, env)
	tok := token(t, "u1", []string{"ws1"})
	sb := b.openStream(t, "ws1", tok, "")
	sb.first(t)
	ids := a.publishN(t, "ws1", 5)
	got := frameIDs(sb.events(t, 5))
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("node B streamed %v; want what node A published %v", got, ids)
	}
	// A client moves from B to A mid-way: it resumes with B's id on A.
	sa := a.openStream(t, "ws1", tok, "", "Last-Event-ID", got[2])
	sa.first(t)
	more := b.publish(t, "ws1", chat(9)).ID
	if d := strings.Join(frameIDs(sa.events(t, 3)), ","); d != strings.Join([]string{ids[3], ids[4], more}, ",") {
		t.Fatalf("resumed on A: %s; want %s,%s,%s", d, ids[3], ids[4], more)
	}
	// And polls agree across nodes.
	pa, _ := a.pollAll(t, "ws1", tok, "0")
	pb, _ := b.pollAll(t, "ws1", tok, "0")
	if strings.Join(pa, ",") != strings.Join(pb, ",") || len(pa) != 6 {
		t.Fatalf("node polls differ: A %v, B %v", pa, pb)
	}
}

func TestServiceRestartKeepsRedisHistory(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	a := startNode(t, env)
	ids := a.publishN(t, "ws1", 3)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	b := startNode(t, env)
	tok := token(t, "u1", []string{"ws1"})
	s := b.openStream(t, "ws1", tok, "", "Last-Event-ID", ids[0])
	s.first(t)
	f := s.events(t, 2)
	if f[0].ID != ids[1] || f[1].ID != ids[2] {
		t.Fatalf("after a service restart resumed %v; want %v", frameIDs(f), ids[1:])
	}
	if p := b.poll(t, "ws1", tok, "cursor="+ids[0]); p.Reset || len(p.Events) != 2 {
		t.Fatalf("poll after a service restart = %+v; want the 2 later events, no reset", p)
	}
	if next := b.publish(t, "ws1", chat(4)).ID; !strings.HasPrefix(next, strings.Split(ids[0], "-")[0]+"-") {
		t.Fatalf("id after restart %s is not in the same epoch as %s", next, ids[0])
	}
}

// Keys are hash-tagged by workspace, so each workspace lives in one Redis
// Cluster slot and every script touches a single slot.
func TestRedisKeysAreHashTagged(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	n := startNode(t, env)
	n.publish(t, "team-7", chat(1))
	keys, err := srv.Client().Keys(t.Context(), env["REALTIME_REDIS_PREFIX"]+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, k := range keys {
		if !strings.HasPrefix(k, env["REALTIME_REDIS_PREFIX"]+":{team-7}:") {
			t.Errorf("key %q is not in the workspace's hash slot", k)
		}
		have[k] = true
	}
	for _, k := range []string{":{team-7}:s", ":{team-7}:m"} {
		if !have[env["REALTIME_REDIS_PREFIX"]+k] {
			t.Errorf("keys %v lack %s", keys, k)
		}
	}
}

// nextID reads frames until one carries id, failing on a sync.reset or on
// any event in between (the readers below must see nothing of what passes).
func nextID(t *testing.T, s *sseStream, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // heartbeats are 200ms apart
	for time.Now().Before(deadline) {
		f, ok := s.next(t)
		if !ok {
			t.Fatalf("stream ended before %s", id)
		}
		if f.Event != "" && f.Event != "heartbeat" {
			t.Fatalf("got %+v while waiting for the position %s; want nothing visible", f, id)
		}
		if f.ID == id {
			if f.Event != "" || f.Data != "" {
				t.Fatalf("position frame %+v; want id-only", f)
			}
			return
		}
	}
	t.Fatalf("no frame moved the position to %s within 10s", id)
}

// Readers that the log's events are hidden from, by type or because they
// target someone else, keep their resume point moving while those events
// pass: with retention far below what passed, a dropped stream resumes
// without sync.reset and without a gap, and so does a long poll's cursor.
func TestHiddenEventsNeverReset(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		env["REALTIME_RETENTION"] = "5"
		env["REALTIME_HEARTBEAT"] = "200ms"
		n := startNode(t, env)
		u1, u2 := token(t, "u1", []string{"ws1"}), token(t, "u2", []string{"ws1"})
		approval := func(i int) string {
			return fmt.Sprintf(`{"type":"approval.created","data":{"id":"a%d","title":"approve %d"}}`, i, i)
		}
		hidden := func(i int) string { // to u2, who filters it out by type; u1 may not see it
			return fmt.Sprintf(`{"type":"notification.new","targetUserId":"u2","data":{"id":"n%d","title":"for u2"}}`, i)
		}
		byType := n.openStream(t, "ws1", u2, "types=approval.*")
		byType.first(t)
		byTarget := n.openStream(t, "ws1", u1, "")
		byTarget.first(t)
		first := n.publish(t, "ws1", approval(0))
		for _, s := range []*sseStream{byType, byTarget} {
			if got := s.events(t, 1); got[0].ID != first.ID {
				t.Fatalf("got %s; want %s", got[0].ID, first.ID)
			}
		}

		// A long poll of u2's, filtered by type, waits while they pass.
		polled := make(chan pollResponse, 1)
		go func() {
			_, body := do(t, "GET", n.URL+"/v1/workspaces/ws1/events?wait=5&types=approval.*&cursor="+first.ID, u2, "")
			var p pollResponse
			json.Unmarshal(body, &p)
			polled <- p
		}()
		waitFor(t, func() bool { return strings.Contains(n.stderr.String(), `"msg":"long poll"`) })
		var last string
		for i := range 250 { // Redis trims whole nodes of 100 entries (MAXLEN ~)
			last = n.publish(t, "ws1", hidden(i)).ID
		}
		nextID(t, byType, last)
		nextID(t, byTarget, last)
		p := <-polled
		if p.Reset || len(p.Events) != 0 || p.NextCursor != last {
			t.Fatalf("long poll = %+v; want no events and nextCursor %s", p, last)
		}
		if old := n.poll(t, "ws1", u2, "cursor="+first.ID); !old.Reset {
			t.Fatalf("the old cursor %s is not trimmed (%+v): the test proves nothing", first.ID, old)
		}

		// Both drop; an approval follows; both resume from their last id.
		byType.close()
		byTarget.close()
		next := n.publish(t, "ws1", approval(1))
		for _, r := range []struct {
			tok, query string
		}{{u2, "types=approval.*"}, {u1, ""}} {
			s := n.openStream(t, "ws1", r.tok, r.query, "Last-Event-ID", last)
			s.first(t)
			f, ok := s.next(t)
			if !ok || f.Event == "sync.reset" || f.ID != next.ID {
				t.Fatalf("resumed %q from %s: first frame %+v; want %s, no reset", r.query, last, f, next.ID)
			}
			s.close()
		}
		got := n.poll(t, "ws1", u2, "types=approval.*&cursor="+p.NextCursor)
		if got.Reset || len(got.Events) != 1 || got.Events[0].ID != next.ID {
			t.Fatalf("poll from the long poll's cursor = %+v; want exactly %s", got, next.ID)
		}
	})
}

// A filtered stream that is never silent (it asked for presence, and
// presence keeps changing) still has its resume point moved past the
// events it may not see, once a heartbeat interval.
func TestBusyFilteredStreamAdvances(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		env["REALTIME_HEARTBEAT"] = "1s"
		env["REALTIME_PRESENCE_INTERVAL"] = "100ms"
		env["REALTIME_PRESENCE_RATE"] = "0"
		n := startNode(t, env)
		watcher, mover := token(t, "u2", []string{"ws1"}), token(t, "m1", []string{"ws1"})
		s := n.openStream(t, "ws1", watcher, "types=approval.*,presence.*")
		s.first(t)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // presence changes every 150 ms: the stream is never silent for 1s
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(150 * time.Millisecond):
				}
				do(t, "PUT", n.URL+"/v1/workspaces/ws1/presence", mover, `{"status":"`+[]string{"away", "busy"}[i%2]+`"}`)
			}
		}()
		defer func() { close(stop); <-done }()
		var last string
		for i := range 20 {
			last = n.publish(t, "ws1", fmt.Sprintf(`{"type":"chat.message","data":{"chatId":"c","id":"h%d","text":"hidden"}}`, i)).ID
		}
		nextID(t, s, last)
	})
}

// A burst of events hidden from a live filtered stream, more than its
// retention and faster than a heartbeat, still moves its resume point
// (an id-only frame every tenth of the retention), so that dropping right
// after the burst and resuming is not reset: the review's case of a
// chat.* stream and 30 approvals with a retention of 20.
func TestHiddenBurstMovesResumePointBeforeHeartbeat(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		env["REALTIME_RETENTION"] = "20"
		env["REALTIME_HEARTBEAT"] = "10m" // no heartbeat during the test
		n := startNode(t, env)
		u1 := token(t, "u1", []string{"ws1"})
		s := n.openStream(t, "ws1", u1, "types=chat.*")
		s.first(t)
		first := n.publish(t, "ws1", chat(0))
		if got := s.events(t, 1); got[0].ID != first.ID {
			t.Fatalf("got %s; want %s", got[0].ID, first.ID)
		}
		var ids []string
		for i := range 250 { // Redis trims whole nodes of 100 entries (MAXLEN ~)
			ids = append(ids, n.publish(t, "ws1", fmt.Sprintf(`{"type":"approval.created","data":{"id":"a%d","title":"t"}}`, i)).ID)
		}
		// An id-only frame at one of the last two (a tenth of 20) hidden
		// events, long before the heartbeat sweeper's first id-only frame
		// (a quarter of the 10 min interval after the stream opened).
		var pos string
		start := time.Now()
		for pos == "" {
			f, ok := s.next(t)
			switch {
			case !ok:
				t.Fatal("stream ended")
			case f.Event != "":
				t.Fatalf("got %+v; want only id-only frames", f)
			case f.ID == ids[len(ids)-1] || f.ID == ids[len(ids)-2]:
				pos = f.ID
			}
		}
		if d := time.Since(start); d > time.Minute {
			t.Fatalf("the id-only frame at the burst's end came after %v, with the heartbeat's", d)
		}
		s.close()
		if old := n.poll(t, "ws1", u1, "cursor="+first.ID); !old.Reset {
			t.Fatalf("the first cursor %s is not trimmed: the test proves nothing", first.ID)
		}
		next := n.publish(t, "ws1", chat(1))
		r := n.openStream(t, "ws1", u1, "types=chat.*", "Last-Event-ID", pos)
		r.first(t)
		if f, ok := r.next(t); !ok || f.Event == "sync.reset" || f.ID != next.ID {
			t.Fatalf("resumed after the burst: first frame %+v; want %s, no reset", f, next.ID)
		}
		r.close()
	})
}

// Streams that are live when Redis loses a workspace's history without
// dropping the node's notification feed (FLUSHALL) missed nothing: one
// open before, and one opened after the flush (whose resume point the hub
// still knew from the old epoch), both get the new epoch's first event as
// an event, not a sync.reset. A client that comes back with an old cursor
// is still reset (TestResetAfterRedisFlush).
func TestLiveStreamsAcrossAFlushAreNotReset(t *testing.T) {
	srv := redistest.Start(t)
	n := startNode(t, redisEnv(srv))
	tok := token(t, "u1", []string{"ws1"})
	before := n.openStream(t, "ws1", tok, "")
	before.first(t)
	ids := n.publishN(t, "ws1", 3)
	if got := frameIDs(before.events(t, 3)); strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("before the flush got %v; want %v", got, ids)
	}
	srv.FlushAll()
	after := n.openStream(t, "ws1", tok, "")
	after.first(t)
	next := n.publish(t, "ws1", chat(9))
	if strings.Split(next.ID, "-")[0] == strings.Split(ids[0], "-")[0] {
		t.Fatalf("%s after the flush is in the old epoch of %s: the test proves nothing", next.ID, ids[0])
	}
	for name, s := range map[string]*sseStream{"open before the flush": before, "opened after it": after} {
		if f, ok := s.next(t); !ok || f.Event == "sync.reset" || f.ID != next.ID {
			t.Fatalf("stream %s: %+v; want the event %s, no reset", name, f, next.ID)
		}
	}
	checkLost(t, n, "ws1", ids[2])
}

// A workspace nothing was ever published to keeps its epoch only while it
// is read (a day); a stream open on it past that, which reads nothing,
// still gets the first event as an event when it comes, in a new epoch.
func TestStreamOnAnUnusedWorkspaceOutlivesItsEpoch(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	n := startNode(t, env)
	tok := token(t, "u1", []string{"quiet"})
	s := n.openStream(t, "quiet", tok, "")
	s.first(t)
	meta := env["REALTIME_REDIS_PREFIX"] + ":{quiet}:m"
	if err := srv.Client().PExpire(t.Context(), meta, time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return srv.Client().Exists(t.Context(), meta).Val() == 0 })
	first := n.publish(t, "quiet", chat(1))
	if f, ok := s.next(t); !ok || f.Event == "sync.reset" || f.ID != first.ID {
		t.Fatalf("stream on the unused workspace: %+v; want the event %s, no reset", f, first.ID)
	}
}
