package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appmw "github.com/realtime-dev/realtime/middleware"
)

func TestGracefulShutdownTellsStreamsToComeBack(t *testing.T) {
	n := startNode(t, nil)
	tok := token(t, "u1", []string{"ws1"})
	s := n.openStream(t, "ws1", tok, "")
	s.first(t)
	// A long poll waiting at shutdown is answered, not cut.
	head := n.poll(t, "ws1", tok, "").NextCursor
	polled := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest("GET", n.URL+"/v1/workspaces/ws1/events?wait=30&cursor="+head, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := clientFor(req.URL.String()).Do(req)
		if err != nil {
			t.Errorf("long poll during shutdown: %v", err)
			polled <- nil
			return
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		polled <- resp
	}()
	// Let the poll reach the server before stopping it.
	waitFor(t, func() bool { return strings.Contains(n.stderr.String(), `"msg":"long poll"`) })
	if err := n.stop(); err != nil {
		t.Fatalf("run returned %v; want nil", err)
	}
	f, ok := s.next(t)
	if !ok || f.Retry == "" || f.Event != "" || f.Data != "" {
		t.Fatalf("stream at shutdown got %+v (ok=%v); want a retry: hint", f, ok)
	}
	if f, ok := s.next(t); ok {
		t.Fatalf("stream sent %+v after the shutdown hint; want the end", f)
	}
	if resp := <-polled; resp != nil && resp.StatusCode != 200 {
		t.Fatalf("long poll at shutdown: %d; want 200", resp.StatusCode)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLongPollWakesOnPublish(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		n := startNode(t, env)
		tok := token(t, "u1", []string{"ws1"})
		head := n.poll(t, "ws1", tok, "").NextCursor
		var got pollResponse
		var wg sync.WaitGroup
		wg.Go(func() { got = n.poll(t, "ws1", tok, "wait=30&cursor="+head) })
		waitFor(t, func() bool { return strings.Count(n.stderr.String(), `"msg":"long poll"`) == 1 })
		e := n.publish(t, "ws1", chat(1))
		wg.Wait()
		if len(got.Events) != 1 || got.Events[0].ID != e.ID || got.NextCursor != e.ID {
			t.Fatalf("long poll = %+v; want exactly %s", got, e.ID)
		}
		// A filtered-out event does not end the wait early with nothing,
		// and the poll still returns the next matching one.
		wg.Go(func() { got = n.poll(t, "ws1", tok, "wait=30&types=approval.*&cursor="+e.ID) })
		waitFor(t, func() bool { return strings.Count(n.stderr.String(), `"msg":"long poll"`) == 2 })
		n.publish(t, "ws1", chat(2))
		a := n.publish(t, "ws1", `{"type":"approval.created","data":{"id":"a1"}}`)
		wg.Wait()
		if len(got.Events) != 1 || got.Events[0].ID != a.ID {
			t.Fatalf("filtered long poll = %+v; want exactly %s", got, a.ID)
		}
	})
}

// A client that stops reading is disconnected rather than allowed to hold
// the node's memory or slow others, and resumes losslessly from the log.
func TestSlowClientDroppedThenResumesLosslessly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		env["REALTIME_QUEUE"] = "8"
		env["REALTIME_WRITE_TIMEOUT"] = "500ms"
		n := startNode(t, env)
		tok := token(t, "u1", []string{"ws1"})
		head := n.poll(t, "ws1", tok, "").NextCursor
		slow := openStalledStream(t, n, "ws1", tok, head)
		fast := n.openStream(t, "ws1", tok, "")
		fast.first(t)
		// Pad events so the socket buffers fill while slow reads nothing.
		pad := strings.Repeat("p", 16<<10)
		const total = 600
		var ids, fastGot []string
		var wg sync.WaitGroup
		wg.Go(func() { fastGot = frameIDs(fast.events(t, total)) })
		for i := range total {
			ids = append(ids, n.publish(t, "ws1", fmt.Sprintf(`{"type":"chat.message","data":{"chatId":"c","id":"m%d","text":"%s"}}`, i, pad)).ID)
		}
		wg.Wait()
		if strings.Join(fastGot, ",") != strings.Join(ids, ",") {
			t.Fatalf("the reading client missed events while another was stalled")
		}
		// Now read what the stalled one was sent before it was cut.
		got := slow.drain(t)
		if len(got) >= total {
			t.Fatalf("the stalled client was never disconnected (got all %d events)", len(got))
		}
		waitFor(t, func() bool {
			log := n.stderr.String()
			return strings.Contains(log, "subscriber too slow, dropped") || strings.Contains(log, "stream write failed")
		})
		// Resume it: every event exactly once, in order.
		cursor := head
		if len(got) > 0 {
			cursor = got[len(got)-1]
		}
		s := n.openStream(t, "ws1", tok, "", "Last-Event-ID", cursor)
		s.first(t)
		got = append(got, frameIDs(s.events(t, total-len(got)))...)
		if strings.Join(got, ",") != strings.Join(ids, ",") {
			t.Fatalf("after resuming, the stalled client has %d events, not exactly the %d published, in order", len(got), total)
		}
	})
}

// stalledStream is a stream whose client reads nothing until drain.
type stalledStream struct {
	conn net.Conn
	req  *http.Request
}

// openStalledStream opens a stream on a socket with a tiny receive buffer
// and does not read from it.
func openStalledStream(t *testing.T, n *node, ws, tok, cursor string) *stalledStream {
	t.Helper()
	d := net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.DialContext(t.Context(), "tcp", strings.TrimPrefix(n.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req, _ := http.NewRequest("GET", n.URL+"/v1/workspaces/"+ws+"/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Last-Event-ID", cursor)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	return &stalledStream{conn: conn, req: req}
}

// drain reads the whole response and returns the ids of its events.
func (s *stalledStream) drain(t *testing.T) []string {
	t.Helper()
	s.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(s.conn), s.req)
	if err != nil {
		t.Fatalf("read stalled response: %v", err)
	}
	st := &sseStream{resp: resp, rd: bufio.NewReader(resp.Body), cancel: func() {}, frames: make(chan frame, 1<<16), errc: make(chan error, 1)}
	st.readLoop()
	var ids []string
	for f := range st.frames {
		if f.Event == "chat.message" {
			ids = append(ids, f.ID)
		}
	}
	return ids
}

func TestDevModeAndTokenCommand(t *testing.T) {
	// Refuses to start without a key, unless --dev.
	err := run(t.Context(), []string{"realtime", "serve"}, func(k string) string {
		return map[string]string{"REALTIME_ADDR": "127.0.0.1:0"}[k]
	}, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "REALTIME_JWT_SECRET") {
		t.Fatalf("serve without a key: %v; want a refusal naming REALTIME_JWT_SECRET", err)
	}
	// --dev prints a curl line whose token works.
	_, base, tok, stop := startDev(t, map[string]string{"REALTIME_ADDR": "127.0.0.1:0"})
	resp, body := do(t, "POST", base+"/v1/workspaces/demo/events", tok, chat(1))
	if resp.StatusCode != 201 {
		t.Fatalf("publish with the dev token: %d %s", resp.StatusCode, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("dev serve returned %v", err)
	}

	// realtime token mints what the service accepts.
	var stdout bytes.Buffer
	getenv := func(k string) string { return map[string]string{"REALTIME_JWT_SECRET": testSecret}[k] }
	if err := run(t.Context(), []string{"realtime", "token", "--sub", "u9", "--workspace", "ws1", "--scope", "events:publish"}, getenv, nil, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	v, err := appmw.NewVerifier(appmw.AuthConfig{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(strings.TrimSpace(stdout.String()))
	if err != nil || p.UserID != "u9" || !p.CanRead("ws1") || p.CanRead("ws2") || !p.Has(appmw.ScopePublish) {
		t.Fatalf("minted token = %+v, %v", p, err)
	}
	if err := run(t.Context(), []string{"realtime", "token", "--sub", "u9"}, getenv, nil, io.Discard, io.Discard); err == nil {
		t.Fatal("token without --workspace succeeded")
	}
}

func TestConfigProblemsReportedTogether(t *testing.T) {
	env := map[string]string{"REALTIME_JWT_SECRET": "short", "REALTIME_HEARTBEAT": "soon", "REALTIME_QUEUE": "0", "REALTIME_MAX_WAIT": "1m"}
	_, err := parseConfig("t", nil, func(k string) string { return env[k] }, io.Discard)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"at least 32 bytes", "REALTIME_HEARTBEAT", "queue must be at least 1", "max wait"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("config error %q does not mention %q", err, want)
		}
	}
	// Flags win over the environment.
	c, err := parseConfig("t", []string{"--addr", ":9999", "--heartbeat", "5s"}, func(k string) string {
		return map[string]string{"REALTIME_ADDR": ":1", "REALTIME_JWT_SECRET": testSecret}[k]
	}, io.Discard)
	if err != nil || c.Addr != ":9999" || c.Heartbeat != 5*time.Second {
		t.Fatalf("flags over env: %+v, %v", c, err)
	}
}

// -h is help, not a failure: every command answers it with its flags and
// succeeds, and serve's names the variable that has no flag. Help prints
// no secret from the environment (flag defaults are printed).
func TestHelpSucceeds(t *testing.T) {
	secrets := map[string]string{
		"REALTIME_TOKEN": "tok-secret-1", "REALTIME_PUB_TOKEN": "tok-secret-2", "REALTIME_JWT_SECRET": testSecret,
		"REALTIME_REDIS_URL": "redis://:hunter2-secret@127.0.0.1:1/0",
	}
	for _, cmd := range []string{"serve", "token", "tail", "publish", "bench"} {
		t.Run(cmd, func(t *testing.T) {
			var out, errOut strings.Builder
			err := run(t.Context(), []string{"realtime", cmd, "-h"}, func(k string) string { return secrets[k] }, strings.NewReader(""), &out, &errOut)
			if err != nil {
				t.Fatalf("realtime %s -h: %v\n%s", cmd, err, errOut.String())
			}
			help := out.String() + errOut.String()
			if !strings.Contains(help, "-") {
				t.Fatalf("realtime %s -h printed no flags: %q", cmd, help)
			}
			for k, v := range secrets {
				if strings.Contains(help, v) {
					t.Fatalf("realtime %s -h prints %s's value:\n%s", cmd, k, help)
				}
			}
		})
	}
	var errOut strings.Builder
	run(t.Context(), []string{"realtime", "serve", "--help"}, func(string) string { return "" }, strings.NewReader(""), io.Discard, &errOut)
	if !strings.Contains(errOut.String(), "REALTIME_JWT_SECRET") {
		t.Fatalf("serve --help does not mention REALTIME_JWT_SECRET:\n%s", errOut.String())
	}
}

// startDev runs `realtime serve --dev` with env until it has printed its
// curl line, and returns what it printed, the base URL it listens on and
// the token it printed; stop ends it and returns what run returned.
func startDev(t *testing.T, env map[string]string) (out, base, token string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"realtime", "serve", "--dev"}, func(k string) string { return env[k] }, nil, pw, io.Discard)
		pw.Close()
	}()
	var printed bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(printed.String(), "curl -N") {
		k, err := pr.Read(buf)
		if err != nil {
			cancel()
			t.Fatalf("dev output ended: %v\n%s", err, printed.String())
		}
		printed.Write(buf[:k])
	}
	go io.Copy(io.Discard, pr)
	var addr string
	for _, line := range strings.Split(printed.String(), "\n") {
		if a, ok := strings.CutPrefix(line, "listening on "); ok {
			addr = a
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "export TOKEN="); ok {
			token = v
		}
	}
	if addr == "" || token == "" {
		cancel()
		t.Fatalf("dev output lacks the address or token:\n%s", printed.String())
	}
	return printed.String(), "http://" + addr, token, func() error {
		cancel()
		return <-done
	}
}
