package redisstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/realtime-dev/realtime"
	"github.com/realtime-dev/realtime/stream"
	"github.com/realtime-dev/realtime/stream/redisstream"
	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

var schemas = realtime.MustLoadSchemas()

func validate(typ string, data json.RawMessage) error {
	if e := schemas.ValidateData(typ, data); e != nil {
		return e
	}
	return nil
}

// runBridge runs a bridge on l until the test ends.
func runBridge(t *testing.T, l *redisstream.Log, bus, consumer string) context.CancelFunc {
	t.Helper()
	b, err := redisstream.NewBridge(l, redisstream.BridgeConfig{
		Stream: bus, Consumer: consumer, Validate: validate, Lease: time.Second,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(ctx) })
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

func baseEvent(id, typ, tenant, user, data string) map[string]any {
	b, _ := json.Marshal(map[string]any{
		"id": id, "type": typ, "source": "billing", "timestamp": "2026-11-26T01:02:03Z", "correlationId": "corr-" + id,
		"tenantId": tenant, "userId": user, "version": 1, "data": json.RawMessage(data),
	})
	return map[string]any{"event": string(b)}
}

// waitLog waits until ws holds n events and returns them.
func waitLog(t *testing.T, l stream.Log, ws string, n int) []*stream.Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, err := l.Read(t.Context(), ws, stream.ID{}, 10000)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Events) >= n || time.Now().After(deadline) {
			return p.Events
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBridgeMapsAndDeadLetters(t *testing.T) {
	srv := redistest.Start(t)
	l := open(t, srv, 1000)
	rdb := srv.Client()
	bus := "bus-" + strings.ReplaceAll(t.Name(), "/", "-")
	runBridge(t, l, bus, "node-a")
	// The group is created at "$": wait for it before publishing.
	waitGroup(t, rdb, bus)

	add := func(v map[string]any) string {
		id, err := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: bus, Values: v}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	add(baseEvent("u1", "approval.created", "acme", "bob", `{"id":"a1","title":"Deploy"}`))
	add(baseEvent("u2", "notification.new", "acme", "alice", `{"id":"n1"}`))
	add(map[string]any{ // one field per member
		"id": "u3", "type": "agent.status.changed", "tenantId": "acme", "source": "agents",
		"correlationId": "c-3", "data": `{"agentId":"g1","status":"running"}`,
	})
	bad := map[string]string{
		add(baseEvent("u4", "billing.invoice.paid", "acme", "", `{"id":"i1"}`)):                  "unmapped event type",
		add(baseEvent("u5", "agent.status.changed", "acme", "", `{"agentId":"g1"}`)):             "schema",
		add(baseEvent("u6", "chat.reaction", "acme", "", `{"id":"r1"}`)):                         "schema: unknown_event_type",
		add(baseEvent("u7", "chat.message", "no{pe}", "", `{"chatId":"c","id":"m","text":"t"}`)): "not a valid workspace id",
		add(map[string]any{"event": "not json"}):                                                 "malformed entry",
	}
	add(baseEvent("u8", "chat.message", "globex", "", `{"chatId":"c","id":"m1","text":"hi"}`))

	acme := waitLog(t, l, "acme", 3)
	if len(acme) != 3 {
		t.Fatalf("acme holds %d events; want 3", len(acme))
	}
	if got := []string{acme[0].Type, acme[1].Type, acme[2].Type}; strings.Join(got, ",") != "approval.created,notification.new,agent.status.changed" {
		t.Fatalf("acme types %v; want bus order", got)
	}
	if acme[1].TargetUserID != "alice" || acme[0].TargetUserID != "" {
		t.Errorf("targetUserId: notification %q, approval %q; want alice for the notification only", acme[1].TargetUserID, acme[0].TargetUserID)
	}
	if acme[0].CorrelationID != "corr-u1" || acme[0].Source != "billing" || acme[2].CorrelationID != "c-3" || acme[2].Source != "agents" {
		t.Errorf("correlationId/source not kept: %+v %+v", acme[0], acme[2])
	}
	if !acme[0].Timestamp.Equal(time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC)) {
		t.Errorf("timestamp %v; want the upstream one", acme[0].Timestamp)
	}
	if g := waitLog(t, l, "globex", 1); len(g) != 1 {
		t.Fatalf("globex holds %d events; want 1", len(g))
	}
	// Every bad entry is in the dead-letter stream, with its reason.
	deadline := time.Now().Add(10 * time.Second)
	var dead []redis.XMessage
	for len(dead) < len(bad) && time.Now().Before(deadline) {
		dead, _ = rdb.XRange(t.Context(), bus+":dead", "-", "+").Result()
		time.Sleep(20 * time.Millisecond)
	}
	if len(dead) != len(bad) {
		t.Fatalf("dead-letter stream holds %d entries; want %d", len(dead), len(bad))
	}
	for _, d := range dead {
		entry, _ := d.Values["entry"].(string)
		reason, _ := d.Values["reason"].(string)
		if want, ok := bad[entry]; !ok || !strings.Contains(reason, want) {
			t.Errorf("dead letter for %s: reason %q; want one containing %q", entry, reason, bad[entry])
		}
	}
	// Nothing is left pending.
	waitPendingZero(t, rdb, bus)
}

func waitGroup(t *testing.T, rdb *redis.Client, bus string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		groups, err := rdb.XInfoGroups(t.Context(), bus).Result()
		if err == nil && len(groups) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no consumer group on %s: %v", bus, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitPendingZero(t *testing.T, rdb *redis.Client, bus string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := rdb.XPending(t.Context(), bus, "realtime").Result()
		if err == nil && p.Count == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("entries still pending: %+v %v", p, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An upstream event that reaches the bus twice (its producer retried, or
// the bridge crashed between append and ack) appears once.
func TestBridgeDropsRepeats(t *testing.T) {
	srv := redistest.Start(t)
	l := open(t, srv, 1000)
	rdb := srv.Client()
	bus := "bus-repeats"
	runBridge(t, l, bus, "node-a")
	waitGroup(t, rdb, bus)
	// As if a crashed bridge had appended u1 without acknowledging it.
	if _, _, err := l.AppendOnce(t.Context(), &stream.Event{Type: "chat.message", WorkspaceID: "acme", CorrelationID: "x", Data: json.RawMessage(`{"chatId":"c","id":"m0","text":"t"}`)}, stream.Once{Key: "bus:u1"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"u1", "u2", "u2", "u3"} {
		rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: bus, Values: baseEvent(id, "chat.message", "acme", "", `{"chatId":"c","id":"`+id+`","text":"t"}`)})
	}
	waitPendingZero(t, rdb, bus)
	got := waitLog(t, l, "acme", 3)
	var corr []string
	for _, e := range got {
		corr = append(corr, e.CorrelationID)
	}
	if strings.Join(corr, ",") != "x,corr-u2,corr-u3" {
		t.Fatalf("acme holds %v; want each upstream event once", corr)
	}
}

// Two bridging nodes: one holds the lease and bridges; when it dies with
// entries pending, the other takes over, claims them, and every event is
// in its workspace log once, in order.
func TestBridgeFailover(t *testing.T) {
	srv := redistest.Start(t)
	la := open(t, srv, 100000)
	lb := openPrefix(t, srv, 100000, la.Prefix())
	rdb := srv.Client()
	bus := "bus-failover"
	stopA := runBridge(t, la, bus, "node-a")
	waitGroup(t, rdb, bus)
	const total, tenants = 600, 4
	for i := range total {
		ws := fmt.Sprintf("t%d", i%tenants)
		rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: bus, Values: baseEvent(fmt.Sprintf("e%d", i), "chat.message", ws, "", fmt.Sprintf(`{"chatId":"c","id":"m%d","text":"%d"}`, i, i))})
	}
	waitLog(t, la, "t0", 20)
	// Node A stops bridging abruptly: no release of the lease, entries left
	// pending (the in-process stand-in for a crash is to stop its bridge
	// and then take the lease away from it only by expiry).
	rdb.Set(t.Context(), la.BridgeLeaseKey(bus), "node-a-dead", time.Second)
	stopA()
	runBridge(t, lb, bus, "node-b")
	for w := range tenants {
		ws := fmt.Sprintf("t%d", w)
		got := waitLog(t, lb, ws, total/tenants)
		if len(got) != total/tenants {
			t.Fatalf("%s holds %d events; want %d", ws, len(got), total/tenants)
		}
		for k, e := range got {
			var d struct{ Text string }
			json.Unmarshal(e.Data, &d)
			if want := fmt.Sprint(k*tenants + w); d.Text != want {
				t.Fatalf("%s event %d is upstream #%s; want #%s (exactly once, in order)", ws, k, d.Text, want)
			}
		}
	}
	waitPendingZero(t, rdb, bus)
}

// Redis loses the bus, its group and the logs (FLUSHALL, then a restart
// without persistence) while the bridge runs and entries keep coming: the
// bridge notices, recreates its group, and every entry added after each
// loss is in its workspace log once, in bus order.
func TestBridgeRecoversAfterRedisLosesData(t *testing.T) {
	srv := redistest.Start(t)
	l := open(t, srv, 1000)
	rdb := srv.Client()
	bus := "bus-loss"
	runBridge(t, l, bus, "node-a")
	waitGroup(t, rdb, bus)
	msg := func(n int) map[string]any {
		return baseEvent(fmt.Sprintf("m%d", n), "chat.message", "acme", "", fmt.Sprintf(`{"chatId":"c","id":"m%d","text":"t"}`, n))
	}
	add := func(c *redis.Client, n int) {
		t.Helper()
		if err := c.XAdd(t.Context(), &redis.XAddArgs{Stream: bus, Values: msg(n)}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for n := range 3 {
		add(rdb, n)
	}
	waitLog(t, l, "acme", 3)

	srv.FlushAll() // the log, the bus and its group are gone
	for n := 3; n < 6; n++ {
		add(rdb, n)
	}
	check := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			p, err := l.Read(t.Context(), "acme", stream.ID{}, 100)
			var got []string
			for _, e := range p.Events {
				got = append(got, e.CorrelationID)
			}
			if err == nil && strings.Join(got, ",") == strings.Join(want, ",") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("acme holds %v (%v); want %v", got, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	check([]string{"corr-m3", "corr-m4", "corr-m5"})

	srv.Restart() // without persistence: everything is gone again
	rdb2 := srv.Client()
	defer rdb2.Close()
	for n := 6; n < 9; n++ {
		add(rdb2, n)
	}
	check([]string{"corr-m6", "corr-m7", "corr-m8"})
}

// An entry the log can never take (a timestamp past year 9999 in UTC) and
// one too big for a script's arguments are dead-lettered, each with its
// reason, and the valid entry behind them is bridged: nothing stops the bus.
func TestBridgePoisonEntriesMoveOn(t *testing.T) {
	srv := redistest.Start(t)
	l := open(t, srv, 1000)
	rdb := srv.Client()
	bus := "bus-poison"
	runBridge(t, l, bus, "node-a")
	waitGroup(t, rdb, bus)
	b, _ := json.Marshal(map[string]any{"id": "p1", "type": "chat.message", "tenantId": "acme", "timestamp": "9999-12-31T23:59:59-01:00",
		"data": json.RawMessage(`{"chatId":"c","id":"p1","text":"t"}`)})
	poison := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: bus, Values: map[string]any{"event": string(b)}}).Val()
	wide := map[string]any{"id": "w1", "tenantId": "acme", "type": "billing.paid", "data": `{}`}
	for i := range 5000 {
		wide[fmt.Sprintf("f%d", i)] = "x"
	}
	wideID := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: bus, Values: wide}).Val()
	rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: bus, Values: baseEvent("ok1", "chat.message", "acme", "", `{"chatId":"c","id":"ok1","text":"t"}`)})
	if got := waitLog(t, l, "acme", 1); len(got) != 1 || got[0].CorrelationID != "corr-ok1" {
		t.Fatalf("acme holds %v; want just the valid entry", got)
	}
	waitPendingZero(t, rdb, bus)
	dead, err := rdb.XRange(t.Context(), bus+":dead", "-", "+").Result()
	if err != nil || len(dead) != 2 {
		t.Fatalf("dead letters: %d, %v; want 2", len(dead), err)
	}
	reasons := map[string]string{}
	for _, d := range dead {
		entry, _ := d.Values["entry"].(string)
		reasons[entry], _ = d.Values["reason"].(string)
	}
	if !strings.Contains(reasons[poison], "outside years") {
		t.Errorf("poison entry's reason %q", reasons[poison])
	}
	if !strings.Contains(reasons[wideID], "unmapped") {
		t.Errorf("wide entry's reason %q", reasons[wideID])
	}
	for _, d := range dead {
		if e, _ := d.Values["entry"].(string); e == wideID {
			if f, _ := d.Values["fields"].(string); !strings.Contains(f, `"f4999":"x"`) {
				t.Errorf("the wide entry's dead letter lacks its fields")
			}
		}
	}
}
