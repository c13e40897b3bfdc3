package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appmw "github.com/realtime-dev/realtime/middleware"
)

// On SIGTERM the process turns /readyz to 503 at once, and for the drain
// delay still accepts connections and serves them (a new stream, a
// publish that reaches an open stream); then it tells the streams to come
// back and exits 0.
func TestDrainDelayReadinessFirst(t *testing.T) {
	p := startProcess(t, map[string]string{"REALTIME_DRAIN_DELAY": "5s"})
	n := &node{URL: p.URL}
	tok := token(t, "u1", []string{"ws1"})
	s := n.openStream(t, "ws1", tok, "")
	s.first(t)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		resp, _ := do(t, "GET", n.URL+"/readyz", "", "")
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	// Readiness says 503, and the node still answers on new connections.
	if resp, body := do(t, "GET", n.URL+"/healthz", "", ""); resp.StatusCode != 200 {
		t.Fatalf("healthz during the drain delay: %d %s", resp.StatusCode, body)
	}
	late := n.openStream(t, "ws1", tok, "")
	late.first(t)
	e := n.publish(t, "ws1", chat(1))
	for _, st := range []*sseStream{s, late} {
		if got := st.events(t, 1); got[0].ID != e.ID {
			t.Fatalf("stream during the drain delay got %v; want %s", frameIDs(got), e.ID)
		}
	}
	// Then the streams are told to come back, and the process exits 0.
	for _, st := range []*sseStream{s, late} {
		f, ok := st.next(t)
		if !ok || f.Retry == "" {
			t.Fatalf("stream at the end of the drain got %+v (ok=%v); want a retry: hint", f, ok)
		}
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr)
		}
		p.exited <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}
	if log := p.stderr.String(); !strings.Contains(log, `"msg":"draining: readiness is 503, still serving"`) {
		t.Fatalf("log lacks the drain:\n%s", log)
	}
}

// Five clients that trickle their bodies get their answer (a 401 here)
// once the body read timeout passes, and their connections closed, instead
// of being held for as long as they keep trickling.
func TestTricklingBodiesAreCut(t *testing.T) {
	n := startNode(t, map[string]string{"REALTIME_READ_TIMEOUT": "1s"})
	addr := strings.TrimPrefix(n.URL, "http://")
	type result struct {
		status string
		err    error
	}
	results := make(chan result, 5)
	for range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /v1/workspaces/ws1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
		// Sends a byte every 100 ms (100000 bytes would take hours) until
		// the server closes the connection.
		go func() {
			for {
				time.Sleep(100 * time.Millisecond)
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}()
		// Reads the answer, and then the end of the connection.
		go func() {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			rd := bufio.NewReader(c)
			status, err := rd.ReadString('\n')
			if err == nil {
				_, err = io.Copy(io.Discard, rd)
			}
			results <- result{status, err}
		}()
	}
	for range 5 {
		r := <-results
		if !strings.HasPrefix(r.status, "HTTP/1.1 401") || r.err != nil {
			t.Fatalf("trickling POST: %q, then %v; want a 401 and the connection closed", r.status, r.err)
		}
	}
}

// procCPU returns the user and system CPU time process pid has used.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime+stime) * (time.Second / 100) // USER_HZ
}

// A client that sends data on its stream's connection is cut once it has
// sent more than a stream may (64 KiB): 20 MiB sent cost the server little
// (the figure is logged), and the write fails instead of the server
// reading it all.
func TestDataSentOnAStreamIsCapped(t *testing.T) {
	p := startProcess(t, nil)
	tok := token(t, "u1", []string{"ws1"})
	c, err := net.Dial("tcp", strings.TrimPrefix(p.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/workspaces/ws1/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", tok)
	rd := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if strings.HasPrefix(line, "event: ready") {
			break
		}
	}
	before := procCPU(t, p.cmd.Process.Pid)
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	sent, werr := 0, error(nil)
	c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	for sent < 20<<20 && werr == nil {
		var k int
		k, werr = c.Write(chunk)
		sent += k
	}
	// The server closes the stream; what it wrote last ends.
	io.Copy(io.Discard, rd)
	cost := procCPU(t, p.cmd.Process.Pid) - before
	t.Logf("client wrote %d bytes before the server cut it (%v); server CPU meanwhile: %v", sent, werr, cost)
	if werr == nil {
		t.Fatalf("the client sent all of %d bytes on its stream; want the server to cut it", sent)
	}
}

// Dev mode does not sign with a configured secret (a token made with it is
// refused, its own works), and listens on loopback unless told otherwise.
func TestDevModeIgnoresTheSecret(t *testing.T) {
	out, base, tok, stop := startDev(t, map[string]string{"REALTIME_ADDR": "127.0.0.1:0", "REALTIME_JWT_SECRET": testSecret})
	if !strings.Contains(out, "REALTIME_JWT_SECRET is ignored") {
		t.Fatalf("dev output:\n%s", out)
	}
	if resp, body := do(t, "POST", base+"/v1/workspaces/demo/events", pubToken(t), chat(1)); resp.StatusCode != 401 {
		t.Fatalf("dev mode accepted a token signed with REALTIME_JWT_SECRET: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, "POST", base+"/v1/workspaces/demo/events", tok, chat(1)); resp.StatusCode != 201 {
		t.Fatalf("the dev token: %d %s", resp.StatusCode, body)
	}
	v, _ := appmw.NewVerifier(appmw.AuthConfig{Secret: []byte(testSecret)})
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("the dev token verifies with REALTIME_JWT_SECRET")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--dev"}, nil, "127.0.0.1:8080"},
		{[]string{"--dev", "--addr", ":9000"}, nil, ":9000"},
		{[]string{"--dev"}, map[string]string{"REALTIME_ADDR": "0.0.0.0:8080"}, "0.0.0.0:8080"},
		{nil, map[string]string{"REALTIME_JWT_SECRET": testSecret}, ":8080"},
	} {
		cfg, err := parseConfig("t", c.args, func(k string) string { return c.env[k] }, io.Discard)
		if err != nil || cfg.Addr != c.want {
			t.Errorf("%v %v: addr %q, %v; want %q", c.args, c.env, cfg.Addr, err, c.want)
		}
	}
}

// realtime token refuses a key serve would refuse.
func TestTokenRefusesAShortKey(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"realtime", "token", "--sub", "alice", "--workspace", "acme"},
		func(k string) string { return map[string]string{"REALTIME_JWT_SECRET": "abc"}[k] }, nil, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "at least 32 bytes") || out.Len() > 0 {
		t.Fatalf("token with a 3-byte key: %v, printed %q; want a refusal", err, out.String())
	}
}

// With an allowed origin, a page on it may load the client script, poll,
// stream and publish, and its preflights are answered; another origin gets
// no CORS headers and a 403 preflight. Without REALTIME_CORS_ORIGINS,
// nothing changes (an OPTIONS is a 405).
func TestCORS(t *testing.T) {
	const app, evil = "https://app.example", "https://evil.example"
	n := startNode(t, map[string]string{"REALTIME_CORS_ORIGINS": app + ", http://localhost:3000"})
	tok := pubToken(t)

	pre := func(origin, path, method string) *http.Response {
		resp, _ := do(t, "OPTIONS", n.URL+path, "", "", "Origin", origin, "Access-Control-Request-Method", method,
			"Access-Control-Request-Headers", "authorization,content-type,last-event-id,idempotency-key")
		return resp
	}
	for _, c := range []struct{ path, method string }{
		{"/v1/workspaces/ws1/events", "POST"}, {"/v1/workspaces/ws1/events/stream", "GET"}, {"/v1/workspaces/ws1/presence", "PUT"},
	} {
		resp := pre(app, c.path, c.method)
		h := resp.Header
		if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != app || h.Get("Access-Control-Allow-Credentials") != "true" ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), c.method) || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Last-Event-ID") ||
			!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Errorf("preflight %s %s from %s: %d %v", c.method, c.path, app, resp.StatusCode, h)
		}
		if resp := pre(evil, c.path, c.method); resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %s: %d %v; want 403 without CORS headers", evil, resp.StatusCode, resp.Header)
		}
	}
	allowed := func(what string, resp *http.Response, want bool) {
		t.Helper()
		got := resp.Header.Get("Access-Control-Allow-Origin") == app
		if got != want || (want && !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-ID")) {
			t.Errorf("%s: allowed %v, headers %v; want allowed %v", what, got, resp.Header, want)
		}
	}
	for _, origin := range []string{app, evil} {
		want := origin == app
		resp, _ := do(t, "GET", n.URL+"/client/realtime.js", "", "", "Origin", origin)
		allowed("client script from "+origin, resp, want)
		resp, _ = do(t, "POST", n.URL+"/v1/workspaces/ws1/events", tok, chat(1), "Origin", origin)
		allowed("publish from "+origin, resp, want)
		resp, _ = do(t, "GET", n.URL+"/v1/workspaces/ws1/events?cursor=0", tok, "", "Origin", origin)
		allowed("poll from "+origin, resp, want)
		s := n.openStream(t, "ws1", tok, "", "Origin", origin)
		allowed("stream from "+origin, s.resp, want)
		s.close()
	}

	plain := startNode(t, nil)
	if resp, _ := do(t, "OPTIONS", plain.URL+"/v1/workspaces/ws1/events", "", "", "Origin", app, "Access-Control-Request-Method", "POST"); resp.StatusCode != 405 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight without CORS configured: %d %v; want 405 without CORS headers", resp.StatusCode, resp.Header)
	}
	if _, err := parseConfig("t", nil, func(k string) string {
		return map[string]string{"REALTIME_JWT_SECRET": testSecret, "REALTIME_CORS_ORIGINS": "*, https://a.example"}[k]
	}, io.Discard); err == nil {
		t.Fatal(`"*" with an origin accepted`)
	}
}

// scrape reads /metrics into name{labels} → value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, body := do(t, "GET", base+"/metrics", "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// /metrics after a scripted workload shows what happened: streams open by
// transport, a waiting long poll, deliveries, publishes by outcome, the
// rate-limited one, a reset, presence, and (on Redis) Redis commands.
func TestMetricsAfterAWorkload(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env map[string]string) {
		env["REALTIME_RETENTION"] = "1"
		env["REALTIME_PUBLISH_RATE"] = "0.01"
		env["REALTIME_PUBLISH_BURST"] = "3"
		n := startNode(t, env)
		tok := token(t, "u1", []string{"*"})
		m0 := scrape(t, n.URL)

		a, b := n.openStream(t, "ws1", tok, ""), n.openStream(t, "ws1", tok, "")
		a.first(t)
		b.first(t)
		ids := n.publishN(t, "ws1", 3)
		a.events(t, 3)
		b.events(t, 3)
		if resp, body := do(t, "POST", n.URL+"/v1/workspaces/ws1/events", pubToken(t), chat(9)); resp.StatusCode != 429 {
			t.Fatalf("fourth publish: %d %s; want 429", resp.StatusCode, body)
		}
		head := n.poll(t, "ws2", tok, "").NextCursor
		polled := make(chan struct{})
		go func() {
			defer close(polled)
			n.poll(t, "ws2", tok, "wait=30&cursor="+head)
		}()
		waitFor(t, func() bool { return strings.Contains(n.stderr.String(), `"msg":"long poll"`) })
		_, onRedis := env["REALTIME_REDIS_URL"]
		streams, resets := 2.0, 0.0
		if !onRedis { // Redis trims approximately: only the embedded log has surely lost ids[1]
			r := n.openStream(t, "ws1", tok, "", "Last-Event-ID", ids[0])
			r.first(t)
			if f, ok := r.next(t); !ok || f.Event != "sync.reset" {
				t.Fatalf("resume from a trimmed cursor: %+v; want sync.reset", f)
			}
			streams, resets = 3, 1
		}

		m := scrape(t, n.URL)
		delta := func(k string) float64 { return m[k] - m0[k] }
		for k, want := range map[string]float64{
			`realtime_streams_open{transport="http1"}`:                        streams,
			`realtime_long_polls_waiting`:                                     1,
			`realtime_publish_duration_seconds_count{outcome="created"}`:      3,
			`realtime_publish_duration_seconds_count{outcome="rate_limited"}`: 1,
			`realtime_rate_limited_total{limit="publish"}`:                    1,
			`realtime_resets_total{via="stream"}`:                             resets,
			`realtime_slow_consumer_closes_total`:                             0,
		} {
			if got := delta(k); got != want {
				t.Errorf("%s went up by %v; want %v", k, got, want)
			}
		}
		if d := delta(`realtime_deliveries_total{path="direct"}`) + delta(`realtime_deliveries_total{path="queued"}`); d != 6 {
			t.Errorf("deliveries went up by %v; want 6 (3 events to 2 streams)", d)
		}
		if m[`realtime_presence_members`] < 1 {
			t.Errorf("presence members %v; want u1", m[`realtime_presence_members`])
		}
		info := fmt.Sprintf(`realtime_build_info{goversion="%s",revision="%s",version="%s"}`, buildVersion().GoVersion, buildVersion().Revision, buildVersion().Version)
		if m[info] != 1 {
			t.Errorf("no %s in the metrics", info)
		}
		if onRedis && delta(`realtime_redis_command_duration_seconds_count`) < 4 {
			t.Errorf("redis commands counted: %v; want the appends and reads", delta(`realtime_redis_command_duration_seconds_count`))
		}
		for k := range m {
			if strings.Contains(k, "ws1") || strings.Contains(k, "u1") {
				t.Errorf("a metric carries a workspace or user: %s", k)
			}
		}
		n.publish(t, "ws2", chat(1)) // ends the long poll
		<-polled
	})
}

// A stream's request line is written when it ends, with the bytes it
// sent and how long it lived, not when its handler hands it over.
func TestStreamRequestLogHasItsRealBytesAndDuration(t *testing.T) {
	n := startNode(t, nil)
	tok := token(t, "u1", []string{"ws1"})
	opened := time.Now()
	s := n.openStream(t, "ws1", tok, "")
	s.first(t)
	n.publishN(t, "ws1", 2)
	s.events(t, 2)
	s.close()
	held := time.Since(opened)
	var line struct {
		Route    string
		Bytes    int64
		Duration time.Duration
	}
	waitFor(t, func() bool {
		for _, l := range strings.Split(n.stderr.String(), "\n") {
			if strings.Contains(l, `"msg":"request"`) && strings.Contains(l, `"route":"/v1/workspaces/{workspaceID}/events/stream"`) {
				return json.Unmarshal([]byte(l), &line) == nil
			}
		}
		return false
	})
	// Two chat events alone are over 400 bytes; the line is written after
	// the client left, so the stream lived at least as long as the test
	// held it minus the request's own setup.
	if line.Bytes < 400 || line.Duration < held/2 {
		t.Fatalf("stream request line: %d bytes, %v; the client held it %v and read two events", line.Bytes, line.Duration, held)
	}
}
