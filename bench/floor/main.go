// Command floor measures what this machine charges a server that does
// nothing but the unavoidable, so that realtime's figures can be read
// against it:
//
//   - write: a bare process writes one SSE-sized frame per event to each
//     subscriber of the event's workspace, straight from one loop (no
//     goroutine per connection, no parsing, no log), to readers in another
//     process; it reports its own CPU per delivered frame. This is the
//     write(2) of loopback TCP plus waking the reader, the floor under
//     "server CPU-s per 1M deliveries".
//   - longpoll: a bare net/http server holds n requests and answers them all
//     at once with a fixed body; clients in another process report when the
//     last answer arrived. This is the floor under "one event answers 5,000
//     long polls within X ms".
//   - publish: a bare net/http handler reads each request's body and
//     answers 201 with a fixed envelope-sized JSON body (a batch's: one
//     envelope per event), loaded from another process by the same client
//     as `realtime bench --mode publish`, which reports its answers/s,
//     request latency and this server's CPU per event. This is the floor
//     under publishes/s. With -redis, the handler first appends the body
//     to its workspace's Redis Stream (XADD, MAXLEN ~ 10000) and PUBLISHes
//     it (-notify), the requests that arrive together sharing one pipelined
//     round trip, and answers once Redis has replied; the CPU counted is
//     this process's and Redis's. That is the floor under a durable publish
//     on Redis: what net/http, go-redis and Redis charge for the least a
//     log-backed publish must do, with nothing of realtime's.
//
// With -listen ADDR, publish mode serves its handler on ADDR until
// interrupted instead of loading it, for another client (../shared/pubload,
// with the pids it prints).
//
// Usage (the shapes of scenario (b) and of the long-poll case):
//
//	go run ./bench/floor -mode write -n 10000 -w 100 -rate 100 -duration 20s
//	go run ./bench/floor -mode longpoll -n 5000
//	go run ./bench/floor -mode publish -c 16 -w 100 -duration 10s   # -batch 50 for batches
//	go run ./bench/floor -mode publish -redis redis://127.0.0.1:6379/0
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/realtime-dev/realtime/bench"
	"github.com/redis/go-redis/v9"
)

func main() {
	mode := flag.String("mode", "write", "write, longpoll or publish")
	n := flag.Int("n", 10000, "subscribers (write) or long polls (longpoll)")
	w := flag.Int("w", 100, "workspaces (write)")
	rate := flag.Int("rate", 100, "events per second over all workspaces (write)")
	duration := flag.Duration("duration", 20*time.Second, "publishing time (write; publish: 10s unless given)")
	size := flag.Int("size", 450, "frame or body size in bytes, about what realtime sends for sseload's 200-byte payload (publish: the event's, 200 unless given)")
	conns := flag.Int("c", 16, "keep-alive connections publishing as fast as they are answered (publish)")
	batch := flag.Int("batch", 1, "events a request (publish)")
	netHTTP := flag.Bool("net-http-client", false, "publish with net/http's client, as ../shared/pubload does (publish)")
	redisURL := flag.String("redis", "", "append each event to a Redis Stream at this URL before answering (publish)")
	notify := flag.Bool("notify", true, "with -redis, also PUBLISH each event, as a log that notifies other nodes must (publish)")
	listen := flag.String("listen", "", "serve the handler on this address until interrupted, for another client (publish)")
	pid := flag.String("pid", "", "internal: the server's pids, for the child's CPU figure")
	role := flag.String("role", "", "internal: the child process's part")
	addr := flag.String("addr", "", "internal: the parent's listener")
	flag.Parse()
	if *mode == "publish" || *role == "publishers" {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["duration"] {
			*duration = 10 * time.Second
		}
		if !set["size"] {
			*size = 200
		}
	}
	var err error
	switch {
	case *role == "publishers":
		err = publishers(*addr, *pid, *conns, *w, *batch, *size, *duration, *netHTTP)
	case *mode == "publish":
		err = publishFloor(pubFloor{conns: *conns, w: *w, batch: *batch, size: *size, duration: *duration,
			netHTTP: *netHTTP, redisURL: *redisURL, notify: *notify, listen: *listen})
	case *role == "readers":
		err = readers(*addr, *n)
	case *role == "pollers":
		err = pollers(*addr, *n)
	case *mode == "write":
		err = writeFloor(*n, *w, *rate, *duration, *size)
	case *mode == "longpoll":
		err = longpollFloor(*n, *size)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// cpuSeconds is this process's user and system time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// child starts this program again in role, connected to ln.
func child(ctx context.Context, role string, ln net.Listener, n int) (*exec.Cmd, io.ReadCloser, error) {
	cmd := exec.CommandContext(ctx, os.Args[0], "-role", role, "-addr", ln.Addr().String(), "-n", strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	return cmd, out, cmd.Start()
}

func writeFloor(n, w, rate int, duration time.Duration, size int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd, _, err := child(ctx, "readers", ln, n)
	if err != nil {
		return err
	}
	defer cmd.Wait()
	conns := make([]net.Conn, 0, n)
	for len(conns) < n {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	frame := []byte("id: 1795657302783000-1\nevent: approval.created\ndata: " + strings.Repeat("x", max(size-60, 1)) + "\n\n")
	time.Sleep(time.Second)
	events := int(duration.Seconds() * float64(rate))
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	cpu0, start := cpuSeconds(), time.Now()
	writes := 0
	for e := range events {
		<-tick.C
		for k := e % w; k < n; k += w { // the subscribers of workspace e%w
			if _, err := conns[k].Write(frame); err != nil {
				return err
			}
			writes++
		}
	}
	cpu := cpuSeconds() - cpu0
	fmt.Printf("floor write: %d subscribers over %d workspaces, %d events in %.1fs, %d frames of %d bytes\n",
		n, w, events, time.Since(start).Seconds(), writes, len(frame))
	fmt.Printf("floor write: writer CPU %.3fs => %.2f CPU-s per 1M deliveries (%.2f us per frame)\n",
		cpu, cpu/float64(writes)*1e6, cpu/float64(writes)*1e6)
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// readers opens n connections to addr and reads them until they close.
func readers(addr string, n int) error {
	var wg sync.WaitGroup
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		wg.Go(func() {
			io.Copy(io.Discard, c)
			c.Close()
		})
	}
	wg.Wait()
	return nil
}

func longpollFloor(n, size int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	release := make(chan struct{})
	var waiting sync.WaitGroup
	waiting.Add(n)
	body := []byte(`{"events":[{"id":"1795657302783000-1","data":"` + strings.Repeat("x", max(size-60, 1)) + `"}],"nextCursor":"1795657302783000-1"}` + "\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		waiting.Done()
		<-release
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd, out, err := child(ctx, "pollers", ln, n)
	if err != nil {
		return err
	}
	waiting.Wait()
	time.Sleep(time.Second)
	cpu0, start := cpuSeconds(), time.Now()
	close(release)
	line, err := bufio.NewReader(out).ReadString('\n')
	cpu := cpuSeconds() - cpu0
	if err != nil {
		return fmt.Errorf("pollers: %w", err)
	}
	last, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return fmt.Errorf("pollers said %q", line)
	}
	cmd.Wait()
	fmt.Printf("floor longpoll: %d requests held by a bare net/http server, answered at once with %d bytes\n", n, len(body))
	fmt.Printf("floor longpoll: last answer read %.1f ms after the release; server CPU %.3fs (%.1f us per answer)\n",
		float64(time.Unix(0, last).Sub(start).Microseconds())/1e3, cpu, cpu/float64(n)*1e6)
	return nil
}

// pollers holds n long polls on n connections with the same client as
// `realtime bench --mode longpoll`, waits for every answer and prints when
// the last one was read (Unix nanoseconds: the parent shares the clock).
func pollers(addr string, n int) error {
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last int64
	var errs []error
	for range n {
		p, err := bench.DialPoller(ctx, "http://"+addr, "")
		if err != nil {
			return err
		}
		wg.Go(func() {
			defer p.Close()
			_, _, err := p.Get("/poll")
			now := time.Now().UnixNano()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			last = max(last, now)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Println(last)
	return nil
}

// floorEnvelope is about what realtime answers a publish of the 200-byte
// event (pubload's floor answers the same).
var floorEnvelope = `{"id":"hoooooooooo-1","type":"approval.created","workspaceId":"ws1","correlationId":"0123456789abcdef0123456789abcdef","timestamp":"2026-12-01T18:00:00.000000000Z","data":{"id":"a1","sl_seq":1,"pad":"` + strings.Repeat("x", 150) + `"}}`

// pubFloor is publish mode's configuration.
type pubFloor struct {
	conns, w, batch, size int
	duration              time.Duration
	netHTTP               bool
	redisURL              string // append to Redis first, when set
	notify                bool   // and PUBLISH
	listen                string // serve there, with no client of ours
}

// publishFloor serves a bare handler answering 201 and loads it from a
// child process with `realtime bench --mode publish`'s client; the child
// prints the report, with this process's CPU (and Redis's) as the
// server's.
func publishFloor(cfg pubFloor) error {
	body := []byte(floorEnvelope + "\n")
	if cfg.batch > 1 {
		body = []byte(`{"events":[` + strings.TrimSuffix(strings.Repeat(floorEnvelope+",", cfg.batch), ",") + "]}\n")
	}
	pids := strconv.Itoa(os.Getpid())
	var app *appender
	if cfg.redisURL != "" {
		var err error
		if app, err = newAppender(cfg.redisURL, cfg.notify); err != nil {
			return err
		}
		defer app.close()
		pids += "," + app.pid
	}
	addr := cfg.listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if app != nil {
			b, err := io.ReadAll(r.Body)
			if err == nil {
				err = app.append(workspaceOf(r.URL.Path), b)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		} else {
			io.Copy(io.Discard, r.Body)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
	})}
	served := make(chan error, 1)
	// Serve returns when the deferred Shutdown closes the listener.
	go func() { served <- srv.Serve(ln) }()
	// Shutdown waits for the handlers, so none appends after app.close.
	defer srv.Shutdown(context.Background())
	if cfg.listen != "" {
		fmt.Printf("floor publish: serving on %s; server pids %s (pubload -pid %s)\n", ln.Addr(), pids, pids)
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(stop)
		select {
		case <-stop:
			return nil
		case err := <-served:
			return err
		}
	}
	cmd := exec.Command(os.Args[0], "-role", "publishers", "-addr", ln.Addr().String(), "-pid", pids, "-c", strconv.Itoa(cfg.conns),
		"-w", strconv.Itoa(cfg.w), "-batch", strconv.Itoa(cfg.batch), "-size", strconv.Itoa(cfg.size), "-duration", cfg.duration.String(),
		"-net-http-client="+strconv.FormatBool(cfg.netHTTP))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// workspaceOf returns the {workspaceID} of a publish path, or "ws".
func workspaceOf(path string) string {
	_, rest, ok := strings.Cut(path, "/workspaces/")
	if ws, _, _ := strings.Cut(rest, "/"); ok && ws != "" {
		return ws
	}
	return "ws"
}

// appender appends bodies to Redis Streams for the Redis floor. The
// appends queued while a round trip is in flight go together in the next
// one, one pipeline of XADDs (and PUBLISHes), as realtime's group commit
// sends its scripts; each caller is answered once Redis replied.
type appender struct {
	rdb    *redis.Client
	notify bool
	pid    string // Redis's
	reqs   chan *appendReq
	done   chan struct{}
}

type appendReq struct {
	ws   string
	body []byte
	err  chan error
}

func newAppender(url string, notify bool) (*appender, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opt)
	info, err := rdb.Info(context.Background(), "server").Result()
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", url, err)
	}
	// Redis's CPU is read from /proc: it must be a local redis-server.
	_, pid, _ := strings.Cut(info, "process_id:")
	pid, _, _ = strings.Cut(pid, "\r")
	pid = strings.TrimSpace(pid)
	if comm, err := os.ReadFile("/proc/" + pid + "/comm"); err != nil || strings.TrimSpace(string(comm)) != "redis-server" {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s is not a local redis-server (process_id %q), so its CPU cannot be counted", url, pid)
	}
	a := &appender{rdb: rdb, notify: notify, pid: pid, reqs: make(chan *appendReq, 1024), done: make(chan struct{})}
	// run returns when close closes reqs; close waits for it.
	go a.run()
	return a, nil
}

func (a *appender) append(ws string, body []byte) error {
	r := &appendReq{ws: ws, body: body, err: make(chan error, 1)}
	a.reqs <- r
	return <-r.err
}

// run sends every queued append in one pipeline, until close.
func (a *appender) run() {
	defer close(a.done)
	ctx := context.Background()
	batch := make([]*appendReq, 0, 256)
	adds := make([]*redis.StringCmd, 0, cap(batch))
	for first := range a.reqs {
		batch = append(batch[:0], first)
	more:
		for len(batch) < cap(batch) {
			select {
			case r, ok := <-a.reqs:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		pipe := a.rdb.Pipeline()
		adds = adds[:0]
		for _, r := range batch {
			adds = append(adds, pipe.XAdd(ctx, &redis.XAddArgs{Stream: "floor:{" + r.ws + "}:s", MaxLen: 10000, Approx: true, Values: []any{"b", r.body}}))
			if a.notify {
				pipe.Publish(ctx, "floor:events", r.body)
			}
		}
		// Each command's error is read from it: a request is answered
		// by whether its own XADD was stored.
		_, _ = pipe.Exec(ctx)
		for i, r := range batch {
			r.err <- adds[i].Err()
		}
	}
}

// close stops run once the server has stopped sending appends.
func (a *appender) close() {
	close(a.reqs)
	<-a.done
	a.rdb.Close()
}

// publishers runs `realtime bench --mode publish` against the parent's
// handler, measuring the CPU of pid (the parent, and Redis with -redis).
func publishers(addr, pid string, conns, w, batch, size int, duration time.Duration, netHTTP bool) error {
	res, err := bench.Run(context.Background(), bench.Config{
		Mode: "publish", Label: "floor", URLs: []string{"http://" + addr}, PubToken: "floor",
		Conns: conns, Workspaces: w, Batch: batch, Size: size, Duration: duration, PID: pid,
		NetHTTP: netHTTP,
	}, os.Stdout)
	if err == nil && res.Events == 0 {
		err = fmt.Errorf("no answer was a 201: %v", res.ErrorsByStatus)
	}
	return err
}
