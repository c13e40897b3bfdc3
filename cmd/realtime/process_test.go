package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"
	"gopkg.in/cenkalti/backoff.v1"

	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/realtime once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "realtime-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "realtime")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("build realtime: %v", buildErr)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// process is a `realtime serve` OS process.
type process struct {
	cmd    *exec.Cmd
	URL    string
	stderr *syncBuffer
	exited chan error
}

func startProcess(t *testing.T, env map[string]string) *process {
	t.Helper()
	cmd := exec.Command(binary(t), "serve")
	cmd.Env = append(os.Environ(), "REALTIME_ADDR=127.0.0.1:0", "REALTIME_JWT_SECRET="+testSecret, "REALTIME_DRAIN_DELAY=0")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &process{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
			p.URL = "http://" + addr
			break
		}
	}
	// Reaps the process; exits with it.
	go func() { p.exited <- cmd.Wait() }()
	if p.URL == "" {
		t.Fatalf("process did not start: %v\n%s", <-p.exited, p.stderr)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// Two real processes on one Redis are one service, each process ends
// gracefully on SIGTERM, and an independent SSE parser (r3labs/sse) reads
// what the stream writes.
func TestTwoProcessesOneRedisAndSIGTERM(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	a, b := startProcess(t, env), startProcess(t, env)
	tok := token(t, "u1", []string{"ws1"})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	client := sse.NewClient(b.URL + "/v1/workspaces/ws1/events/stream")
	client.Headers["Authorization"] = "Bearer " + tok
	client.ReconnectStrategy = &backoff.StopBackOff{} // this test wants to see the end, not a reconnect
	got := make(chan *sse.Event, 100)
	subscribed := make(chan error, 1)
	// Returns when the stream ends (SIGTERM below) or ctx is cancelled.
	go func() {
		subscribed <- client.SubscribeRawWithContext(ctx, func(e *sse.Event) { got <- e })
	}()
	// The first thing the stream sends is its resume point; then it is live.
	first := <-got
	if len(first.ID) == 0 {
		t.Fatalf("first event %+v has no id", first)
	}
	na := &node{URL: a.URL}
	want := na.publishN(t, "ws1", 3)
	var ids []string
	for len(ids) < 3 {
		select {
		case e := <-got:
			if string(e.Event) == "chat.message" {
				ids = append(ids, string(e.ID))
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("process B streamed %v of %v published on A", ids, want)
		}
	}
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Fatalf("process B streamed %v; want %v", ids, want)
	}

	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-b.exited:
		if err != nil {
			t.Fatalf("process B exited with %v after SIGTERM; want 0\n%s", err, b.stderr)
		}
		b.exited <- nil // for the cleanup
	case <-time.After(20 * time.Second):
		t.Fatal("process B did not exit within 20s of SIGTERM")
	}
	select {
	case err := <-subscribed:
		if err != nil {
			t.Fatalf("stream ended with %v; want a clean end", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end when its process shut down")
	}
	if log := b.stderr.String(); !strings.Contains(log, `"msg":"shutting down"`) || !strings.Contains(log, `"msg":"stopped"`) {
		t.Fatalf("process B log lacks the shutdown:\n%s", log)
	}
	// A keeps serving, with B's ids.
	if p := na.poll(t, "ws1", tok, "cursor="+ids[0]); len(p.Events) != 2 || p.Reset {
		t.Fatalf("process A after B stopped: %+v", p)
	}
}
