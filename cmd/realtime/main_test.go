package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	appmw "github.com/realtime-dev/realtime/middleware"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	if code == 0 && reportViolations() {
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

const testSecret = "test-secret-test-secret-test-secret-0123"

// node is one `realtime serve` started through run, as main would.
type node struct {
	t      *testing.T
	URL    string
	cancel context.CancelFunc
	done   chan error
	stderr *syncBuffer
	once   sync.Once
	err    error // what run returned, once stopped
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startNode runs `realtime serve` with env on a free port and stops it
// (asserting a clean return) when the test ends.
func startNode(t *testing.T, env map[string]string, args ...string) *node {
	t.Helper()
	full := map[string]string{
		"REALTIME_ADDR": "127.0.0.1:0", "REALTIME_JWT_SECRET": testSecret, "REALTIME_LOG_LEVEL": "debug",
		"REALTIME_DRAIN_DELAY": "0",
	}
	for k, v := range env {
		full[k] = v
	}
	getenv := func(k string) string { return full[k] }
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	n := &node{t: t, cancel: cancel, done: make(chan error, 1), stderr: &syncBuffer{}}
	// Exits when the node stops; the pipe is closed then.
	go func() {
		err := run(ctx, append([]string{"realtime", "serve"}, args...), getenv, strings.NewReader(""), pw, n.stderr)
		pw.Close()
		n.done <- err
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
			n.URL = "http://" + addr
			break
		}
	}
	// Drain the rest of stdout so run never blocks writing to it.
	go io.Copy(io.Discard, pr)
	if n.URL == "" {
		err := <-n.done
		t.Fatalf("node did not start: %v\n%s", err, n.stderr)
	}
	t.Cleanup(func() {
		if err := n.stop(); err != nil {
			t.Errorf("run returned %v; want nil\nlog:\n%s", err, n.stderr)
		}
		if t.Failed() {
			t.Logf("node %s log:\n%s", n.URL, n.stderr)
		}
	})
	return n
}

// stop shuts the node down gracefully and returns what run returned.
func (n *node) stop() error {
	n.once.Do(func() {
		n.cancel()
		select {
		case n.err = <-n.done:
		case <-time.After(30 * time.Second):
			n.err = errors.New("run did not return within 30s of cancellation")
		}
	})
	return n.err
}

// clients holds the HTTP client of each node that needs its own (HTTP/2,
// TLS), by base URL; every other node is reached with http.DefaultClient.
var clients sync.Map

// clientFor returns the client for a request to url. Every response it
// gets is checked against openapi.yaml (contract_test.go).
func clientFor(url string) *http.Client {
	c := rawClientFor(url)
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cc := *c
	cc.Transport = contractTransport{base: base, c: theContract()}
	return &cc
}

func rawClientFor(url string) *http.Client {
	var c *http.Client
	clients.Range(func(k, v any) bool {
		if strings.HasPrefix(url, k.(string)+"/") || url == k.(string) {
			c = v.(*http.Client)
			return false
		}
		return true
	})
	if c == nil {
		return http.DefaultClient
	}
	return c
}

// token mints a test token.
func token(t *testing.T, sub string, workspaces []string, scopes ...string) string {
	t.Helper()
	tok, err := appmw.IssueToken([]byte(testSecret), appmw.TokenSpec{Subject: sub, Workspaces: workspaces, Scopes: scopes, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// pubToken may publish to and read every workspace.
func pubToken(t *testing.T) string { return token(t, "svc", []string{"*"}, appmw.ScopePublish) }

// event is the envelope as clients see it.
type event struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	WorkspaceID   string          `json:"workspaceId"`
	TargetUserID  string          `json:"targetUserId"`
	CorrelationID string          `json:"correlationId"`
	Source        string          `json:"source"`
	Timestamp     time.Time       `json:"timestamp"`
	Data          json.RawMessage `json:"data"`
}

type pollResponse struct {
	Events     []event `json:"events"`
	NextCursor string  `json:"nextCursor"`
	HasMore    bool    `json:"hasMore"`
	Reset      bool    `json:"reset"`
}

type problem struct {
	Type   string            `json:"type"`
	Status int               `json:"status"`
	Code   string            `json:"code"`
	Detail string            `json:"detail"`
	Errors map[string]string `json:"errors"`
}

// do sends a request and returns the response with its body read.
func do(t *testing.T, method, url, tok string, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := clientFor(url).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, b
}

// publish posts one event and returns it as stored.
func (n *node) publish(t *testing.T, ws, body string) event {
	t.Helper()
	resp, b := do(t, "POST", n.URL+"/v1/workspaces/"+ws+"/events", pubToken(t), body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publish to %s: %d %s", ws, resp.StatusCode, b)
	}
	var e event
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("publish response %s: %v", b, err)
	}
	return e
}

// chat is a valid chat.message body numbered n.
func chat(n int) string {
	return fmt.Sprintf(`{"type":"chat.message","data":{"chatId":"c1","id":"m%d","text":"message %d"}}`, n, n)
}

// publishN publishes n chat messages and returns their ids.
func (n *node) publishN(t *testing.T, ws string, count int) []string {
	t.Helper()
	ids := make([]string, 0, count)
	for i := range count {
		ids = append(ids, n.publish(t, ws, chat(i)).ID)
	}
	return ids
}

// poll reads one page.
func (n *node) poll(t *testing.T, ws, tok, query string) pollResponse {
	t.Helper()
	resp, b := do(t, "GET", n.URL+"/v1/workspaces/"+ws+"/events?"+query, tok, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("poll %s?%s: %d %s", ws, query, resp.StatusCode, b)
	}
	var p pollResponse
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("poll response %s: %v", b, err)
	}
	if p.Events == nil {
		t.Fatalf("poll response has events: null: %s", b)
	}
	return p
}

// pollAll pages from cursor to the head and returns every id.
func (n *node) pollAll(t *testing.T, ws, tok, cursor string) (ids []string, next string) {
	t.Helper()
	for {
		p := n.poll(t, ws, tok, "limit=7&cursor="+cursor)
		if p.Reset {
			t.Fatalf("poll from %s reset", cursor)
		}
		for _, e := range p.Events {
			ids = append(ids, e.ID)
		}
		cursor = p.NextCursor
		if !p.HasMore {
			return ids, cursor
		}
	}
}

// frame is one SSE frame as our test parser reads it.
type frame struct {
	ID    string
	HasID bool
	Event string
	Data  string
	Retry string
}

// sseStream is an open stream read by a minimal parser of the WHATWG
// grammar (LF line endings, which is all the server writes).
type sseStream struct {
	resp   *http.Response
	rd     *bufio.Reader
	cancel context.CancelFunc
	frames chan frame
	errc   chan error
	// wantEphemeral makes next return presence and typing frames too.
	wantEphemeral bool
	// readDone is closed when readLoop returns; read holds the frames
	// read, checked against openapi.yaml when the test ends (not as they
	// come: a reader slowed by validation would be cut as a slow client).
	readDone chan struct{}
	mu       sync.Mutex
	read     []frame
}

// openStream opens the stream of ws; query and headers are added as given.
func (n *node) openStream(t *testing.T, ws, tok, query string, hdr ...string) *sseStream {
	t.Helper()
	s, resp := n.tryStream(t, ws, tok, query, hdr...)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("stream %s?%s: %d %s", ws, query, resp.StatusCode, b)
	}
	return s
}

func (n *node) tryStream(t *testing.T, ws, tok, query string, hdr ...string) (*sseStream, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, "GET", n.URL+"/v1/workspaces/"+ws+"/events/stream?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := clientFor(req.URL.String()).Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open stream: %v", err)
	}
	s := &sseStream{resp: resp, rd: bufio.NewReader(resp.Body), cancel: cancel, frames: make(chan frame, 1<<16), errc: make(chan error, 1), readDone: make(chan struct{})}
	if resp.StatusCode == http.StatusOK {
		// Reads frames until the body ends or close cancels it.
		go s.readLoop()
	} else {
		close(s.readDone)
	}
	t.Cleanup(func() { s.checkFrames(t) }) // runs after close
	t.Cleanup(s.close)
	return s, resp
}

func (s *sseStream) readLoop() {
	if s.readDone != nil {
		defer close(s.readDone)
	}
	var f frame
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			close(s.frames)
			s.errc <- err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if f != (frame{}) {
				s.keep(f)
				s.frames <- f
			}
			f = frame{}
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			f.ID, f.HasID = value, true
		case "event":
			f.Event = value
		case "data":
			f.Data += value
		case "retry":
			f.Retry = value
		}
	}
}

func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// keep records f for checkFrames; a stream no test cleanup checks (see
// openStalledStream) checks each frame at once.
func (s *sseStream) keep(f frame) {
	if s.readDone == nil {
		if err := theContract().checkFrame(f); err != nil {
			recordViolation(err)
		}
		return
	}
	s.mu.Lock()
	s.read = append(s.read, f)
	s.mu.Unlock()
}

// checkFrames fails the test for each frame read that broke openapi.yaml.
func (s *sseStream) checkFrames(t *testing.T) {
	select {
	case <-s.readDone:
	case <-time.After(10 * time.Second):
		t.Error("stream reader did not stop within 10s of close")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.read {
		if err := theContract().checkFrame(f); err != nil {
			recordViolation(err)
			t.Errorf("openapi.yaml violated: %v", err)
		}
	}
}

// next returns the next frame; ok is false at the end of the stream. A
// generous bound only keeps a broken server from hanging the run.
func (s *sseStream) next(t *testing.T) (frame, bool) {
	t.Helper()
	for {
		select {
		case f, ok := <-s.frames:
			if ok && !s.wantEphemeral && isEphemeral(f) {
				continue // presence and typing, unless the test asked for them
			}
			return f, ok
		case <-time.After(20 * time.Second):
			t.Fatal("no SSE frame within 20s")
			return frame{}, false
		}
	}
}

func isEphemeral(f frame) bool {
	return strings.HasPrefix(f.Event, "presence.") || strings.HasPrefix(f.Event, "typing.")
}

// events reads until it has count data events (skipping heartbeats and
// id-only frames) and returns them.
func (s *sseStream) events(t *testing.T, count int) []frame {
	t.Helper()
	var out []frame
	for len(out) < count {
		f, ok := s.next(t)
		if !ok {
			t.Fatalf("stream ended after %d of %d events", len(out), count)
		}
		if f.Event != "" && f.Event != "heartbeat" && f.Event != "ready" && f.Data != "" {
			out = append(out, f)
		}
	}
	return out
}

// first reads the opening frames: the retry: hint, then the ready event.
func (s *sseStream) first(t *testing.T) {
	t.Helper()
	f, ok := s.next(t)
	if !ok || f.Retry == "" || f.Event != "" || f.Data != "" {
		t.Fatalf("first frame %+v (ok=%v); want a retry: frame", f, ok)
	}
	f, ok = s.next(t)
	if !ok || f.Event != "ready" || f.HasID || !strings.HasPrefix(f.Data, `{"cursor":"`) {
		t.Fatalf("second frame %+v (ok=%v); want the ready event", f, ok)
	}
}

func frameIDs(fs []frame) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}
