package redisstream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/realtime-dev/realtime/stream"
	"github.com/realtime-dev/realtime/stream/redisstream"
	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
	"github.com/realtime-dev/realtime/stream/streamtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var prefixes atomic.Int64

// newLog opens a Log on srv for benchmarks.
func newLog(tb testing.TB, srv *redistest.Server) (*redisstream.Log, error) {
	l, err := redisstream.New(tb.Context(), redisstream.Config{URL: srv.URL(), Prefix: fmt.Sprintf("b%d", prefixes.Add(1))})
	if err == nil {
		tb.Cleanup(func() { l.Close() })
	}
	return l, err
}

// open returns a Log on srv with a key prefix of its own.
func open(t *testing.T, srv *redistest.Server, retention int) *redisstream.Log {
	t.Helper()
	return openPrefix(t, srv, retention, fmt.Sprintf("t%d", prefixes.Add(1)))
}

// openPrefix returns a Log on srv under prefix: another node of the same
// service when the prefix is another Log's.
func openPrefix(t *testing.T, srv *redistest.Server, retention int, prefix string) *redisstream.Log {
	t.Helper()
	l, err := redisstream.New(t.Context(), redisstream.Config{
		URL: srv.URL(), Prefix: prefix, Retention: retention,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	for _, loss := range []struct {
		name string
		lose func(t *testing.T, l stream.Log) stream.Log
	}{
		{"Flushed", func(t *testing.T, l stream.Log) stream.Log {
			srv.FlushAll()
			return l
		}},
		{"Restarted", func(t *testing.T, l stream.Log) stream.Log {
			srv.Restart()
			waitReady(t, l)
			return l
		}},
	} {
		t.Run(loss.name, func(t *testing.T) {
			streamtest.Run(t, streamtest.Harness{
				New:         func(t *testing.T, retention int) stream.Log { return open(t, srv, retention) },
				LoseHistory: loss.lose,
			})
		})
	}
}

// waitReady waits until l answers again after its server restarted.
func waitReady(t *testing.T, l stream.Log) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for l.Ping(t.Context()) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("log not ready after restart: %v", l.Ping(t.Context()))
		}
		select {
		case <-t.Context().Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Events published while the node's notification connection is down are
// still delivered, exactly once and in order, once it is back.
func TestFeedReconnectResyncs(t *testing.T) {
	srv := redistest.Start(t)
	l := open(t, srv, 1000)
	waitReady(t, l)
	pub := open(t, srv, 1000) // another node, same prefix below
	_ = pub
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tail := stream.NewTail(l, "ws1", stream.ID{}, true, stream.TailConfig{})
	defer tail.Close()
	if _, err := tail.Next(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var want []stream.ID
	post := func(n int) {
		for i := range n {
			e, err := l.Append(ctx, streamtest.Ev("ws1", "chat.message", i))
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, e.ID)
		}
	}
	post(3)
	// Drop every pub/sub connection, then publish before the feed is back.
	if err := srv.Client().Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	post(3)
	var got []stream.ID
	for len(got) < len(want) {
		b, err := tail.Next(ctx, nil)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		for _, e := range b.Events {
			got = append(got, e.ID)
		}
	}
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Fatalf("got %v; want %v", got, want)
		}
	}
}

func TestRedisLimiterSharedAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, srv, 100)
	b := openPrefix(t, srv, 100, a.Prefix())
	streamtest.RunLimiter(t, a, b)
}

func TestRedisTicketsSharedAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, srv, 100)
	b := openPrefix(t, srv, 100, a.Prefix())
	streamtest.RunTickets(t, a, b)
}

func TestRedisPresenceSharedAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, srv, 100)
	b := openPrefix(t, srv, 100, a.Prefix())
	streamtest.RunPresence(t, a, b)
}

// The log runs unchanged on a three-master Redis Cluster: every operation
// on a workspace stays in its {workspace} slot.
func TestConformanceOnCluster(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	openCluster := func(t *testing.T, retention int, prefix string) *redisstream.Log {
		l, err := redisstream.New(t.Context(), redisstream.Config{
			URL: cluster.URL(), Cluster: true, Prefix: prefix, Retention: retention,
			Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	streamtest.Run(t, streamtest.Harness{
		New: func(t *testing.T, retention int) stream.Log {
			return openCluster(t, retention, fmt.Sprintf("c%d", prefixes.Add(1)))
		},
		LoseHistory: func(t *testing.T, l stream.Log) stream.Log {
			cluster.FlushAll(t)
			return l
		},
	})
	t.Run("Presence", func(t *testing.T) {
		p := fmt.Sprintf("c%d", prefixes.Add(1))
		streamtest.RunPresence(t, openCluster(t, 100, p), openCluster(t, 100, p))
	})
	t.Run("Tickets", func(t *testing.T) {
		p := fmt.Sprintf("c%d", prefixes.Add(1))
		streamtest.RunTickets(t, openCluster(t, 100, p), openCluster(t, 100, p))
	})
	t.Run("Limiter", func(t *testing.T) {
		p := fmt.Sprintf("c%d", prefixes.Add(1))
		streamtest.RunLimiter(t, openCluster(t, 100, p), openCluster(t, 100, p))
	})
	t.Run("KeysShareASlot", func(t *testing.T) {
		p := fmt.Sprintf("c%d", prefixes.Add(1))
		l := openCluster(t, 100, p)
		for _, ws := range []string{"acme", "globex", "initech"} {
			if _, err := l.Append(t.Context(), streamtest.Ev(ws, "chat.message", 1)); err != nil {
				t.Fatal(err)
			}
		}
		cl := cluster.Client(t)
		slots := map[int64]bool{}
		for _, ws := range []string{"acme", "globex", "initech"} {
			s1, _ := cl.ClusterKeySlot(t.Context(), p+":{"+ws+"}:s").Result()
			s2, _ := cl.ClusterKeySlot(t.Context(), p+":{"+ws+"}:m").Result()
			if s1 != s2 {
				t.Errorf("%s: stream in slot %d, meta in slot %d", ws, s1, s2)
			}
			slots[s1] = true
		}
		t.Logf("3 workspaces over %d slots", len(slots))
	})
}

// Reading workspaces nothing was appended to leaves nothing behind for
// good: their meta hashes expire a day after the last read, and the first
// append makes a workspace's permanent.
func TestReadsOfUnusedWorkspacesExpire(t *testing.T) {
	srv := redistest.Start(t)
	l := open(t, srv, 100)
	rdb := srv.Client()
	defer rdb.Close()
	for i := range 200 {
		ws := fmt.Sprintf("unused%d", i)
		if _, err := l.Read(t.Context(), ws, stream.ID{}, 10); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Head(t.Context(), ws); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := rdb.Keys(t.Context(), l.Prefix()+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if ttl := rdb.PTTL(t.Context(), k).Val(); ttl <= 0 {
			t.Fatalf("%s kept with no expiry after reads alone (PTTL %v)", k, ttl)
		}
	}
	// A cursor from a read stays valid while the workspace is read.
	head, _ := l.Head(t.Context(), "unused0")
	if _, err := l.Read(t.Context(), "unused0", head, 10); err != nil {
		t.Fatalf("reading after the head of an unused workspace: %v", err)
	}
	if _, err := l.Append(t.Context(), streamtest.Ev("unused0", "chat.message", 1)); err != nil {
		t.Fatal(err)
	}
	meta := l.Prefix() + ":{unused0}:m"
	if ttl := rdb.PTTL(t.Context(), meta).Val(); ttl != -1 {
		t.Fatalf("a workspace's meta hash after its first append has PTTL %v; want none (-1)", ttl)
	}
	if p, err := l.Read(t.Context(), "unused0", head, 10); err != nil || len(p.Events) != 1 {
		t.Fatalf("the event after the pre-append head: %v %v", p.Events, err)
	}
}

// A workspace whose stream is gone while its meta hash survives (a key
// evicted or deleted by hand) has lost its history: the next append starts
// a new epoch at seq 1, and a cursor of the old epoch cannot continue,
// whichever script meets the loss first.
func TestAppendAfterLostStreamStartsAnEpoch(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	for _, first := range []string{"append", "read"} {
		t.Run(first, func(t *testing.T) {
			l := open(t, srv, 100)
			ctx := t.Context()
			var old *stream.Event
			for i := range 3 {
				e, err := l.Append(ctx, &stream.Event{WorkspaceID: "ws1", Type: "approval.created", Data: []byte(fmt.Sprintf(`{"i":%d}`, i))})
				if err != nil {
					t.Fatal(err)
				}
				old = e
			}
			if err := rdb.Del(ctx, l.Prefix()+":{ws1}:s").Err(); err != nil {
				t.Fatal(err)
			}
			if first == "read" {
				if head, err := l.Head(ctx, "ws1"); err != nil || head.Epoch == old.ID.Epoch {
					t.Fatalf("head after the stream was lost = %v, %v; want a new epoch", head, err)
				}
			}
			e, err := l.Append(ctx, &stream.Event{WorkspaceID: "ws1", Type: "approval.created", Data: []byte(`{"i":3}`)})
			if err != nil {
				t.Fatal(err)
			}
			if e.ID.Epoch == old.ID.Epoch || e.ID.Seq != 1 {
				t.Fatalf("append after the stream was lost got %v; want seq 1 of an epoch other than %v", e.ID, old.ID)
			}
			if _, err := l.Read(ctx, "ws1", old.ID, 10); !errors.Is(err, stream.ErrCursorExpired) {
				t.Fatalf("read after the old epoch's last id: %v; want ErrCursorExpired", err)
			}
			page, err := l.Read(ctx, "ws1", stream.ID{}, 10)
			if err != nil || len(page.Events) != 1 || page.Events[0].ID != e.ID || page.Head != e.ID {
				t.Fatalf("read after = %+v, %v; want just %v", page, err, e.ID)
			}
			next, err := l.Append(ctx, &stream.Event{WorkspaceID: "ws1", Type: "approval.created", Data: []byte(`{"i":4}`)})
			if err != nil || next.ID != e.ID.Next() {
				t.Fatalf("the append after that got %v, %v; want %v", next.ID, err, e.ID.Next())
			}
		})
	}
}

// A read of large events stops at about a megabyte of bodies (always one
// event at least), not at limit times their size; a Tail reading such
// pages is not fooled into thinking it caught up, and gets every event
// once, in order.
func TestReadBoundsLargePages(t *testing.T) {
	srv := redistest.Start(t)
	l := open(t, srv, 1000)
	data := []byte(`{"pad":"` + strings.Repeat("x", 200<<10) + `"}`)
	var want []stream.ID
	for range 12 {
		e, err := l.Append(t.Context(), &stream.Event{Type: "chat.message", WorkspaceID: "big", Timestamp: time.Now(), Data: data})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, e.ID)
	}
	p, err := l.Read(t.Context(), "big", stream.ID{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.Events); n < 1 || n > 6 || p.Head != want[len(want)-1] {
		t.Fatalf("a page of 200 KiB events holds %d events, head %s; want 1 to 6 (about 1 MiB), head %s", n, p.Head, want[len(want)-1])
	}
	tail := stream.NewTail(l, "big", stream.ID{}, false, stream.TailConfig{})
	defer tail.Close()
	// Bounded: a Tail that took a short page for the head would wait for
	// live events that never come.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var got []stream.ID
	for len(got) < len(want) {
		b, err := tail.Next(ctx, nil)
		if err != nil || b.Reset {
			t.Fatalf("tail: %+v, %v", b, err)
		}
		for _, e := range b.Events {
			got = append(got, e.ID)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tail got %v; want %v", got, want)
	}
}

// A stream whose newest entry went missing (an operator's XDEL) leaves a
// gap before the head that no read fills: a Tail there goes live after an
// empty page instead of reading again and again.
func TestTailPastAMissingNewestEntryGoesLive(t *testing.T) {
	srv := redistest.Start(t)
	l := open(t, srv, 100)
	var ids []stream.ID
	for range 3 {
		e, err := l.Append(t.Context(), &stream.Event{Type: "chat.message", WorkspaceID: "ws1", Timestamp: time.Now(), Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	if err := srv.Client().XDel(t.Context(), l.Prefix()+":{ws1}:s", "3-0").Err(); err != nil {
		t.Fatal(err)
	}
	tail := stream.NewTail(l, "ws1", ids[1], false, stream.TailConfig{})
	defer tail.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for range 3 {
		idle := time.After(100 * time.Millisecond)
		if _, err := tail.Next(ctx, idle); err != nil {
			t.Fatalf("tail past the missing entry: %v; want it live, answering idle", err)
		}
	}
}
