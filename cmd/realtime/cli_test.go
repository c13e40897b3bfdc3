package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

// cliTail runs `realtime tail` with args until the test ends and returns
// a channel of the lines it prints.
func cliTail(t *testing.T, getenv func(string) string, args ...string) (<-chan string, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	lines := make(chan string, 1000)
	stderr := &syncBuffer{}
	var wg sync.WaitGroup
	wg.Go(func() {
		err := run(ctx, append([]string{"realtime", "tail"}, args...), getenv, nil, pw, stderr)
		pw.CloseWithError(fmt.Errorf("tail returned %v", err))
	})
	wg.Go(func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return lines, stderr
}

// nextLine returns the next line about a durable event (presence and
// typing lines, which tail also prints, are skipped).
func nextLine(t *testing.T, lines <-chan string) string {
	t.Helper()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("tail ended")
			}
			if strings.Contains(l, "presence.") || strings.Contains(l, "typing.") {
				continue
			}
			return l
		case <-time.After(20 * time.Second):
			t.Fatal("no line from tail within 20s")
			return ""
		}
	}
}

func lineID(t *testing.T, line string) string {
	t.Helper()
	var e event
	if err := json.Unmarshal([]byte(line), &e); err != nil || e.ID == "" {
		t.Fatalf("tail line %q is not an event", line)
	}
	return e.ID
}

// tail prints every event once, in order, across a server restart, over
// the stream (r3labs/sse) and over polling.
func TestCLITailResumesAcrossRestarts(t *testing.T) {
	for _, mode := range []string{"sse", "poll"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			env := redisEnv(srv)
			env["REALTIME_ADDR"] = fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
			n := startNode(t, env)
			tok := token(t, "u1", []string{"ws1"})
			getenv := func(k string) string {
				return map[string]string{"REALTIME_URL": n.URL, "REALTIME_TOKEN": tok}[k]
			}
			before := n.publishN(t, "ws1", 2)
			args := []string{"--workspace", "ws1", "--from", before[0], "--format", "json"}
			if mode == "poll" {
				args = append(args, "--poll")
			}
			lines, stderr := cliTail(t, getenv, args...)
			if id := lineID(t, nextLine(t, lines)); id != before[1] {
				t.Fatalf("first line %s; want %s (after --from)", id, before[1])
			}
			live := n.publish(t, "ws1", chat(5)).ID
			if id := lineID(t, nextLine(t, lines)); id != live {
				t.Fatalf("live line %s; want %s", id, live)
			}
			if err := n.stop(); err != nil {
				t.Fatal(err)
			}
			n2 := startNode(t, env)
			var want []string
			for range 3 {
				want = append(want, n2.publish(t, "ws1", chat(6)).ID)
			}
			for _, w := range want {
				if id := lineID(t, nextLine(t, lines)); id != w {
					t.Fatalf("after the restart got %s; want %s\nstderr: %s", id, w, stderr)
				}
			}
		})
	}
}

func TestCLIPublishAndTailText(t *testing.T) {
	n := startNode(t, nil)
	pub := pubToken(t)
	getenv := func(k string) string {
		return map[string]string{"REALTIME_URL": n.URL, "REALTIME_TOKEN": pub, "REALTIME_WORKSPACE": "ws1"}[k]
	}
	lines, _ := cliTail(t, getenv, "--format", "text", "--types", "approval.*")
	// The tail is live once the server has its stream; wait for that.
	waitFor(t, func() bool { return strings.Contains(n.stderr.String(), `"msg":"stream opened"`) })
	var out, errOut strings.Builder
	err := run(t.Context(), []string{"realtime", "publish", "--type", "approval.created", "--data", `{"id":"a1","title":"Ship it"}`, "--idempotency-key", "k1"}, getenv, nil, &out, &errOut)
	if err != nil {
		t.Fatalf("publish: %v %s", err, errOut.String())
	}
	id := lineID(t, out.String())
	line := nextLine(t, lines)
	if !strings.Contains(line, "approval.created") || !strings.Contains(line, id) || !strings.Contains(line, `"title":"Ship it"`) {
		t.Fatalf("text line %q; want the type, id and data", line)
	}
	// A bad publish is an error naming the problem code.
	err = run(t.Context(), []string{"realtime", "publish", "--type", "agent.status.changed", "--data", `{"agentId":"a","status":"zzz"}`}, getenv, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "422 invalid_event") {
		t.Fatalf("bad publish: %v; want a 422 invalid_event error", err)
	}
	// JSON lines from stdin go out in batches, in order; a bad line stops
	// the run, naming it, with the batches before it stored.
	var lines3 strings.Builder
	for i := range 5 {
		fmt.Fprintf(&lines3, `{"type":"approval.created","data":{"id":"f%d","title":"from a file"}}`+"\n\n", i)
	}
	out.Reset()
	err = run(t.Context(), []string{"realtime", "publish", "--file", "-", "--batch", "2"}, getenv, strings.NewReader(lines3.String()), &out, &errOut)
	if err != nil {
		t.Fatalf("publish --file -: %v %s", err, errOut.String())
	}
	stored := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(stored) != 5 {
		t.Fatalf("publish --file printed %d lines; want 5: %s", len(stored), out.String())
	}
	for i, l := range stored {
		if !strings.Contains(l, fmt.Sprintf(`"id":"f%d"`, i)) {
			t.Fatalf("line %d: %s; want event f%d, in order", i, l, i)
		}
		if got := nextLine(t, lines); !strings.Contains(got, fmt.Sprintf(`"id":"f%d"`, i)) {
			t.Fatalf("tail line %q; want f%d", got, i)
		}
	}
	err = run(t.Context(), []string{"realtime", "publish", "--file", "-"}, getenv,
		strings.NewReader(`{"type":"approval.created","data":{"id":"g1"}}`+"\n"+`{"type":"approval.created","data":{}}`+"\n"), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "lines 1-2") || !strings.Contains(err.Error(), "422") {
		t.Fatalf("publish --file with a bad event: %v; want a 422 naming lines 1-2", err)
	}
	// A bad token is a permanent error for tail, not a retry loop.
	bad := func(k string) string {
		return map[string]string{"REALTIME_URL": n.URL, "REALTIME_TOKEN": "nope", "REALTIME_WORKSPACE": "ws1"}[k]
	}
	for _, extra := range [][]string{nil, {"--poll"}} {
		err = run(t.Context(), append([]string{"realtime", "tail"}, extra...), bad, nil, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("tail %v with a bad token: %v; want a 401 error", extra, err)
		}
	}
}
