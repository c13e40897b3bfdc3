package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

// The service runs unchanged on a local three-master Redis Cluster: two
// nodes share it, and streaming, resume, polling, idempotency, presence and
// the bus bridge all work across them.
func TestServiceOnRedisCluster(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	env := map[string]string{
		"REALTIME_REDIS_URL": cluster.URL(), "REALTIME_REDIS_CLUSTER": "true",
		"REALTIME_REDIS_PREFIX": fmt.Sprintf("cl%d", prefixes.Add(1)),
	}
	a, b := startNode(t, env), startNode(t, env)
	tok := token(t, "u1", []string{"*"})
	for _, ws := range []string{"acme", "globex", "initech", "umbrella"} {
		s := b.openStream(t, ws, tok, "")
		s.first(t)
		ids := a.publishN(t, ws, 3)
		if got := frameIDs(s.events(t, 3)); strings.Join(got, ",") != strings.Join(ids, ",") {
			t.Fatalf("%s: node B streamed %v; want %v", ws, got, ids)
		}
		r := a.openStream(t, ws, tok, "", "Last-Event-ID", ids[0])
		r.first(t)
		if got := frameIDs(r.events(t, 2)); strings.Join(got, ",") != strings.Join(ids[1:], ",") {
			t.Fatalf("%s: resume on A got %v", ws, got)
		}
		if polled, _ := b.pollAll(t, ws, tok, "0"); len(polled) != 3 {
			t.Fatalf("%s: poll got %v", ws, polled)
		}
		s.close()
		r.close()
	}
	resp, first := do(t, "POST", a.URL+"/v1/workspaces/acme/events", pubToken(t), chat(9), "Idempotency-Key", "k")
	resp2, again := do(t, "POST", b.URL+"/v1/workspaces/acme/events", pubToken(t), chat(9), "Idempotency-Key", "k")
	if resp.StatusCode != 201 || resp2.Header.Get("Idempotent-Replayed") != "true" || string(first) != string(again) {
		t.Fatalf("idempotent publish across nodes on the cluster: %d %s / %d %s", resp.StatusCode, first, resp2.StatusCode, again)
	}
	do(t, "PUT", a.URL+"/v1/workspaces/acme/presence", tok, `{"status":"busy"}`)
	if got := b.presence(t, "acme", tok); got != "u1=busy" {
		t.Fatalf("presence on the cluster = %s", got)
	}
}
