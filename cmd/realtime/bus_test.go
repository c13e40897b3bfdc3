package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

// Many events through two bridging processes, the one bridging killed
// (SIGKILL) mid-way: every event lands in its workspace log exactly once and
// in per-workspace order, and bad events land in the dead-letter stream.
func TestBusBridgeAcrossProcessesWithAKill(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	env["REALTIME_BUS_STREAM"] = "platform-events"
	env["REALTIME_BUS_LEASE"] = "2s"
	a, b := startProcess(t, env), startProcess(t, env)
	rdb := srv.Client()
	leaseKey := env["REALTIME_REDIS_PREFIX"] + ":bridge:{platform-events}:lease"

	// Wait for the group and the leader.
	var holder string
	waitFor(t, func() bool {
		holder, _ = rdb.Get(t.Context(), leaseKey).Result()
		return holder != ""
	})
	leader, other := a, b
	if !strings.Contains(holder, "-"+strconv.Itoa(a.cmd.Process.Pid)+"-") {
		leader, other = b, a
	}

	const total, tenants = 1500, 5
	add := func(i int, typ, tenant, data string) {
		be, _ := json.Marshal(map[string]any{
			"id": fmt.Sprintf("up-%d", i), "type": typ, "source": "orders", "timestamp": time.Now().UTC().Format(time.RFC3339Nano),
			"correlationId": fmt.Sprintf("corr-%d", i), "tenantId": tenant, "userId": "u1", "version": 1, "data": json.RawMessage(data),
		})
		if err := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: "platform-events", Values: map[string]any{"event": string(be)}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	o := &node{URL: other.URL}
	tok := token(t, "reader", []string{"*"})
	for i := range total {
		add(i, "chat.message", fmt.Sprintf("tenant%d", i%tenants), fmt.Sprintf(`{"chatId":"c","id":"m%d","text":"%d"}`, i, i))
		if i == total/3 {
			add(-1, "invoice.paid", "tenant0", `{"id":"x"}`)
			add(-2, "agent.status.changed", "tenant0", `{"agentId":"a","status":"napping"}`)
		}
		if i == total/2 {
			// Kill the bridging process once it is into the stream; the
			// rest is published while it is gone.
			waitFor(t, func() bool {
				return len(o.poll(t, "tenant0", tok, "cursor=0&limit=1000").Events) >= 50
			})
			if err := leader.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-leader.exited
			leader.exited <- nil
		}
	}

	for w := range tenants {
		ws := fmt.Sprintf("tenant%d", w)
		var texts []string
		deadline := time.Now().Add(60 * time.Second)
		for len(texts) < total/tenants && time.Now().Before(deadline) {
			texts = texts[:0]
			p := o.poll(t, ws, tok, "cursor=0&limit=1000")
			for _, e := range p.Events {
				var d struct{ Text string }
				json.Unmarshal(e.Data, &d)
				texts = append(texts, d.Text)
			}
			if len(texts) < total/tenants {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if len(texts) != total/tenants {
			t.Fatalf("%s holds %d events; want %d", ws, len(texts), total/tenants)
		}
		for k, txt := range texts {
			if want := strconv.Itoa(k*tenants + w); txt != want {
				t.Fatalf("%s event %d is upstream #%s; want #%s (exactly once, in order)", ws, k, txt, want)
			}
		}
	}
	dead, err := rdb.XRange(t.Context(), "platform-events:dead", "-", "+").Result()
	if err != nil || len(dead) != 2 {
		t.Fatalf("dead-letter stream: %d entries, %v; want 2", len(dead), err)
	}
	if r, _ := dead[0].Values["reason"].(string); !strings.Contains(r, "unmapped event type") {
		t.Errorf("first dead letter reason %q", r)
	}
	if r, _ := dead[1].Values["reason"].(string); !strings.Contains(r, "schema") {
		t.Errorf("second dead letter reason %q", r)
	}
	if !strings.Contains(other.stderr.String(), "bridge lease taken") {
		t.Errorf("the surviving process never took over:\n%s", other.stderr)
	}
}

// Redis is flushed, then restarted without persistence, while entries keep
// being added to the bus, with real service processes bridging: every
// entry added after each loss is in its workspace log once, in bus order,
// and nothing is left pending.
func TestBusBridgeSurvivesRedisLosingData(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	env["REALTIME_BUS_STREAM"] = "platform-events"
	env["REALTIME_BUS_LEASE"] = "2s"
	p := startProcess(t, env)
	rdb := srv.Client()
	waitFor(t, func() bool {
		groups, err := rdb.XInfoGroups(t.Context(), "platform-events").Result()
		return err == nil && len(groups) > 0
	})
	o := &node{URL: p.URL}
	tok := token(t, "reader", []string{"*"})
	add := func(c *redis.Client, i int) {
		be, _ := json.Marshal(map[string]any{
			"id": fmt.Sprintf("loss-%d", i), "type": "chat.message", "tenantId": "acme", "timestamp": time.Now().UTC().Format(time.RFC3339Nano),
			"correlationId": fmt.Sprintf("corr-%d", i), "data": json.RawMessage(fmt.Sprintf(`{"chatId":"c","id":"m%d","text":"%d"}`, i, i)),
		})
		// The producer retries while Redis is coming back.
		for {
			err := c.XAdd(t.Context(), &redis.XAddArgs{Stream: "platform-events", Values: map[string]any{"event": string(be)}}).Err()
			if err == nil {
				return
			}
			if t.Context().Err() != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// texts reads acme's log until it holds want, in order.
	expect := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		var got []string
		for time.Now().Before(deadline) {
			got = got[:0]
			resp, body := do(t, "GET", o.URL+"/v1/workspaces/acme/events?cursor=0&limit=1000", tok, "")
			if resp.StatusCode == 200 {
				var pr pollResponse
				json.Unmarshal(body, &pr)
				for _, e := range pr.Events {
					var d struct{ Text string }
					json.Unmarshal(e.Data, &d)
					got = append(got, d.Text)
				}
				if strings.Join(got, ",") == strings.Join(want, ",") {
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("acme holds %v; want %v (each once, in bus order)", got, want)
	}
	seq := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, strconv.Itoa(i))
		}
		return out
	}
	for i := range 20 {
		add(rdb, i)
	}
	expect(seq(0, 20))

	srv.FlushAll()
	for i := 20; i < 40; i++ {
		add(rdb, i)
	}
	expect(seq(20, 40))

	srv.Restart()
	rdb2 := srv.Client()
	defer rdb2.Close()
	for i := 40; i < 60; i++ {
		add(rdb2, i)
	}
	expect(seq(40, 60))
	waitFor(t, func() bool {
		pe, err := rdb2.XPending(t.Context(), "platform-events", "realtime").Result()
		return err == nil && pe.Count == 0
	})
	if !strings.Contains(p.stderr.String(), "consumer group lost") {
		t.Errorf("the bridge did not say what happened:\n%s", p.stderr.String())
	}
}

// A busy port fails fast with an error, even with the bridge running: the
// bridge is stopped before serve waits for it.
func TestBusyPortWithABusFailsFast(t *testing.T) {
	srv := redistest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env := redisEnv(srv)
	env["REALTIME_BUS_STREAM"] = "platform-events"
	env["REALTIME_ADDR"] = ln.Addr().String()
	env["REALTIME_JWT_SECRET"] = testSecret
	errc := make(chan error, 1)
	go func() {
		errc <- run(t.Context(), []string{"realtime", "serve"}, func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
	}()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "listen") {
			t.Fatalf("run on a busy port: %v; want a listen error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run on a busy port with a bus configured did not return")
	}
}
