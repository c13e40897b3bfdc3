// Package bench is the load tool behind `realtime bench`: it opens many SSE
// subscribers (or long polls) against a running service, publishes through
// its API, and reports what every subscriber received: missing deliveries,
// end-to-end latency percentiles, connect time and, given the server's pid,
// its RSS per connection and CPU per million deliveries (from /proc). It
// reproduces the scenarios of the referee harness (../shared/sseload), so
// figures compare, plus a resume storm and a long-poll fan-out. It talks to
// the service only over HTTP and imports nothing of this module; it is not
// a public API.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one run. Zero values are the defaults noted.
type Config struct {
	// URLs are the nodes' base URLs; subscribers are spread over them and
	// the publisher uses the first.
	URLs []string
	// TokenFor returns subscriber i's token (covering its workspace): one
	// user per connection, as real workspaces are and as the referee
	// harness measures peers. When nil, every subscriber uses Token, one
	// shared user, which hides whatever the server does per user
	// (presence, targeting): a comparison, not a figure on its own.
	// Token also reads heads. PubToken publishes.
	TokenFor        func(i int) string
	Token, PubToken string
	// Mode is steady, burst, resume, longpoll or publish (steady).
	Mode string
	// Subscribers (1000) over Workspaces (10), named Prefix+index ("ws").
	Subscribers, Workspaces int
	Prefix                  string
	// Rate events a second for Duration, in steady mode (200, 20s).
	Rate     float64
	Duration time.Duration
	// Size pads each event's data to about this many bytes (200).
	Size int
	// PubConns publish concurrently (4); ConnectConcurrency subscribers
	// connect at once (200).
	PubConns, ConnectConcurrency int
	// Settle is the pause between connecting and publishing (2s).
	Settle time.Duration
	// Bursts events, BurstGap apart, in burst mode (5, 2s); all
	// subscribers watch one workspace.
	Bursts   int
	BurstGap time.Duration
	// Behind is how many events each workspace gets while a resume storm's
	// clients are away (100).
	Behind int
	// PID, when set, is the server process to read CPU and RSS from
	// (several, comma-separated, are summed).
	PID string
	// RedisAddr, when set, is read with INFO commandstats to count the
	// Redis commands the scenario cost.
	RedisAddr string
	// Label is copied into the result.
	Label string
	// HTTP2 opens the streams over HTTP/2: cleartext with prior knowledge
	// for an http:// URL (the service's h2c), by ALPN for https://. Many
	// streams then share a connection, as a browser's tabs on one origin
	// do; publishes and head reads stay on HTTP/1.
	HTTP2 bool
	// Conns keep-alive connections publish as fast as they are answered
	// in publish mode (16), for Duration (10s there) over Workspaces (100
	// there); Batch events a request (1: POST .../events; more: POST
	// .../events/batch).
	Conns, Batch int
	// NetHTTP publishes with net/http's client (keep-alive, one
	// connection per publisher, as ../shared/pubload does) instead of this
	// package's own HTTP/1.1 client: the same load at a higher client
	// cost, to check figures against pubload's.
	NetHTTP bool
}

func (c *Config) defaults() {
	set := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	if c.Mode == "publish" {
		set(&c.Workspaces, 100)
		if c.Duration <= 0 {
			c.Duration = 10 * time.Second
		}
	}
	set(&c.Conns, 16)
	set(&c.Batch, 1)
	set(&c.Subscribers, 1000)
	set(&c.Workspaces, 10)
	set(&c.Size, 200)
	set(&c.PubConns, 4)
	set(&c.ConnectConcurrency, 200)
	set(&c.Bursts, 5)
	set(&c.Behind, 100)
	if c.Mode == "" {
		c.Mode = "steady"
	}
	if c.Prefix == "" {
		c.Prefix = "ws"
	}
	if c.Rate <= 0 {
		c.Rate = 200
	}
	if c.Duration <= 0 {
		c.Duration = 20 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 2 * time.Second
	}
	if c.BurstGap <= 0 {
		c.BurstGap = 2 * time.Second
	}
}

// Percentiles summarises a latency distribution in milliseconds.
type Percentiles struct {
	Count               int
	P50, P90, P99, P999 float64
	Max, Mean           float64
}

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	ms := func(x time.Duration) float64 { return math.Round(float64(x)/1e3) / 1e3 }
	at := func(q float64) float64 { return ms(d[min(len(d)-1, int(q*float64(len(d))))]) }
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return Percentiles{Count: len(d), P50: at(.50), P90: at(.90), P99: at(.99), P999: at(.999), Max: ms(d[len(d)-1]), Mean: ms(sum / time.Duration(len(d)))}
}

// Result is what a run measured.
type Result struct {
	Label, Mode                string
	Subscribers, Workspaces    int
	Ready, ConnectFailed       int
	ConnectSeconds             float64
	Connect                    Percentiles
	Published, PublishErrors   int
	Expected, Received         int
	Missing, Duplicates        int
	Latency                    Percentiles
	LastSubscriberMs           []float64 `json:",omitempty"` // burst, longpoll: per round, when the last one had it
	RSSBeforeKiB, RSSAfterKiB  int64     `json:",omitempty"`
	RSSPerConnKiB              float64   `json:",omitempty"`
	ServerCPUSeconds           float64   `json:",omitempty"`
	CPUPerMillionDeliveries    float64   `json:",omitempty"`
	RedisCommands              int64     `json:",omitempty"`
	RedisCommandsPerEvent      float64   `json:",omitempty"`
	RedisCommandsPerSubscriber float64   `json:",omitempty"`
	// publish mode: requests and events answered 201 (with every
	// envelope of a batch), per second over Seconds; the rest by status
	// ("transport" when no answer came); Latency is the requests'; server
	// CPU per event and per request.
	Connections, Batch  int            `json:",omitempty"`
	Seconds             float64        `json:",omitempty"`
	Requests, Events    int            `json:",omitempty"`
	RequestsPerSec      float64        `json:",omitempty"`
	EventsPerSec        float64        `json:",omitempty"`
	Errors              int            `json:",omitempty"`
	ErrorsByStatus      map[string]int `json:",omitempty"`
	CPUPerEventMicros   float64        `json:",omitempty"`
	CPUPerRequestMicros float64        `json:",omitempty"`
}

// Run runs one scenario and prints a report to out.
func Run(ctx context.Context, cfg Config, out io.Writer) (Result, error) {
	cfg.defaults()
	if len(cfg.URLs) == 0 {
		return Result{}, errors.New("bench: no URL")
	}
	r := &runner{cfg: cfg, out: out, client: newClient(cfg.Subscribers)}
	defer r.client.CloseIdleConnections()
	r.streams = r.client
	if cfg.HTTP2 {
		r.streams = newClient(cfg.Subscribers)
		tr := r.streams.Transport.(*http.Transport)
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
		tr.Protocols.SetHTTP2(true)
		defer r.streams.CloseIdleConnections()
	}
	var res Result
	var err error
	switch cfg.Mode {
	case "steady":
		res, err = r.steady(ctx)
	case "burst":
		res, err = r.burst(ctx)
	case "resume":
		res, err = r.resume(ctx)
	case "longpoll":
		res, err = r.longpoll(ctx)
	case "publish":
		res, err = r.publishLoad(ctx)
	default:
		return Result{}, fmt.Errorf("bench: unknown mode %q (steady, burst, resume, longpoll, publish)", cfg.Mode)
	}
	res.Label, res.Mode, res.Subscribers, res.Workspaces = cfg.Label, cfg.Mode, cfg.Subscribers, cfg.Workspaces
	if cfg.Mode == "publish" {
		res.Subscribers = 0
	}
	report(out, res)
	return res, err
}

type runner struct {
	cfg     Config
	out     io.Writer
	client  *http.Client
	streams *http.Client // the subscribers' (HTTP/2 with Config.HTTP2)
	seq     atomic.Int64
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		// Every simulated client keeps its connection between polls, as a
		// real one does: closing thousands at once would bill the server
		// for teardown that a live population never asks of it.
		MaxIdleConns: conns + 64, MaxIdleConnsPerHost: conns + 64, MaxConnsPerHost: 0, DisableCompression: true,
		ResponseHeaderTimeout: 30 * time.Second,
	}}
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.out, "[%s] "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func (r *runner) ws(i int) string { return r.cfg.Prefix + strconv.Itoa(i) }

// token is subscriber i's token.
func (r *runner) token(i int) string {
	if r.cfg.TokenFor != nil {
		return r.cfg.TokenFor(i)
	}
	return r.cfg.Token
}

// sub is one SSE subscriber.
type sub struct {
	ws      string
	node    string
	token   string
	mu      sync.Mutex
	seen    map[int64]bool
	lat     []time.Duration
	dups    int
	lastID  string
	ready   time.Duration
	resp    *http.Response
	cancel  context.CancelFunc
	done    chan struct{}
	gotSeq  chan int64 // burst mode: each delivery's seq
	dropped bool
}

// connect opens the subscriber's stream; it returns once the stream is
// live (the ready event arrived), and reads it in the background until
// close.
func (r *runner) connect(ctx context.Context, s *sub, lastID string) error {
	start := time.Now()
	cctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, s.node+"/v1/workspaces/"+s.ws+"/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := r.streams.Do(req)
	if err != nil {
		cancel()
		return err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return fmt.Errorf("stream %s: %s", s.ws, resp.Status)
	}
	s.resp, s.cancel, s.done = resp, cancel, make(chan struct{})
	ready := make(chan struct{})
	// Reads until the stream ends or close cancels it.
	go func() {
		defer close(s.done)
		r.read(s, bufio.NewReaderSize(resp.Body, 16<<10), ready)
	}()
	select {
	case <-ready:
		s.ready = time.Since(start)
		return nil
	case <-s.done:
		return fmt.Errorf("stream %s ended before it was ready", s.ws)
	case <-time.After(30 * time.Second):
		s.close()
		return fmt.Errorf("stream %s: no ready event in 30s", s.ws)
	}
}

func (s *sub) close() {
	if s.cancel != nil {
		s.cancel()
		s.resp.Body.Close()
		<-s.done
	}
}

var (
	seqKey = []byte(`"bench_seq":`)
	tsKey  = []byte(`"bench_ts":`)
)

// numberAfter reads the integer that follows key in b.
func numberAfter(b, key []byte) (int64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(string(b[:j]), 10, 64)
	return n, err == nil
}

// read parses frames: id, event, data lines; blank line dispatches.
func (r *runner) read(s *sub, rd *bufio.Reader, ready chan struct{}) {
	var id, event string
	var data []byte
	readyOnce := sync.OnceFunc(func() { close(ready) })
	for {
		line, err := rd.ReadSlice('\n')
		if err != nil {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) {
				s.mu.Lock()
				s.dropped = true
				s.mu.Unlock()
			}
			return
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		switch {
		case len(line) == 0:
			if event == "ready" {
				readyOnce()
			}
			if len(data) > 0 && event != "ready" && event != "heartbeat" {
				if seq, ok := numberAfter(data, seqKey); ok {
					now := time.Now()
					ts, _ := numberAfter(data, tsKey)
					s.mu.Lock()
					if s.seen[seq] {
						s.dups++
					} else {
						s.seen[seq] = true
						s.lat = append(s.lat, now.Sub(time.Unix(0, ts)))
					}
					s.mu.Unlock()
					if s.gotSeq != nil {
						select {
						case s.gotSeq <- seq:
						default:
						}
					}
				}
			}
			if id != "" {
				s.mu.Lock()
				s.lastID = id
				s.mu.Unlock()
			}
			id, event, data = "", "", data[:0]
		case bytes.HasPrefix(line, []byte("id: ")):
			id = string(line[4:])
		case bytes.HasPrefix(line, []byte("event: ")):
			event = string(line[7:])
		case bytes.HasPrefix(line, []byte("data: ")):
			data = append(data, line[6:]...)
		}
	}
}

// connectAll opens every subscriber with bounded concurrency.
func (r *runner) connectAll(ctx context.Context, subs []*sub, lastIDs []string) (ready int, took time.Duration, lat []time.Duration, errs int) {
	start := time.Now()
	sem := make(chan struct{}, r.cfg.ConnectConcurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i, s := range subs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			last := ""
			if lastIDs != nil {
				last = lastIDs[i]
			}
			// Like EventSource: a stream that was refused or ended before
			// it was ready (a node shedding load) is tried again after a
			// while, a few times.
			var err error
			for attempt := range 5 {
				if err = r.connect(ctx, s, last); err == nil || ctx.Err() != nil {
					break
				}
				time.Sleep(time.Duration(500+attempt*500+int(time.Now().UnixNano()%1000)) * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			ready++
			lat = append(lat, s.ready)
		})
	}
	wg.Wait()
	if firstErr != nil {
		r.logf("connect errors: %d, first: %v", errs, firstErr)
	}
	return ready, time.Since(start), lat, errs
}

func (r *runner) newSubs(workspaces int) []*sub {
	subs := make([]*sub, r.cfg.Subscribers)
	for i := range subs {
		subs[i] = &sub{ws: r.ws(i % workspaces), node: r.cfg.URLs[i%len(r.cfg.URLs)], token: r.token(i), seen: map[int64]bool{}}
	}
	return subs
}

// publish posts one event to ws; it returns its seq.
func (r *runner) publish(ctx context.Context, ws string) (int64, error) {
	seq := r.seq.Add(1)
	pad := strings.Repeat("x", max(0, r.cfg.Size-120))
	body := fmt.Sprintf(`{"type":"approval.created","data":{"id":"b-%d","bench_seq":%d,"bench_ts":%d,"pad":%q}}`, seq, seq, time.Now().UnixNano(), pad)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.URLs[0]+"/v1/workspaces/"+ws+"/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.cfg.PubToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return seq, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return seq, fmt.Errorf("publish: %s", resp.Status)
	}
	return seq, nil
}

// proc reads a process's CPU seconds and RSS.
type proc struct{ pids []string }

func (p proc) sample() (cpu float64, rssKiB int64) {
	for _, pid := range p.pids {
		if b, err := os.ReadFile("/proc/" + pid + "/stat"); err == nil {
			f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
			if len(f) > 13 {
				u, _ := strconv.ParseFloat(f[11], 64)
				s, _ := strconv.ParseFloat(f[12], 64)
				cpu += (u + s) / 100 // USER_HZ is 100 on Linux
			}
		}
		if b, err := os.ReadFile("/proc/" + pid + "/status"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
					n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
					rssKiB += n
				}
			}
		}
	}
	return cpu, rssKiB
}

func (r *runner) proc() proc {
	if r.cfg.PID == "" {
		return proc{}
	}
	return proc{pids: strings.Split(r.cfg.PID, ",")}
}

// redisCalls returns the total command count of a Redis server.
func redisCalls(addr string) int64 {
	if addr == "" {
		return 0
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
	rd := bufio.NewReader(c)
	head, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(head[1:]))
	body := make([]byte, n)
	if _, err := io.ReadFull(rd, body); err != nil {
		return 0
	}
	var total int64
	for _, line := range strings.Split(string(body), "\r\n") {
		// cmdstat_xadd:calls=12,usec=...
		if _, rest, ok := strings.Cut(line, ":calls="); ok && strings.HasPrefix(line, "cmdstat_") && !strings.HasPrefix(line, "cmdstat_info:") {
			v, _, _ := strings.Cut(rest, ",")
			x, _ := strconv.ParseInt(v, 10, 64)
			total += x
		}
	}
	return total
}

// tally adds up what subscribers received against what was published to
// their workspaces, and how many events were published.
func tally(subs []*sub, published map[string][]int64) (res Result) {
	var lat []time.Duration
	for _, s := range subs {
		s.mu.Lock()
		for _, seq := range published[s.ws] {
			res.Expected++
			if s.seen[seq] {
				res.Received++
			} else {
				res.Missing++
			}
		}
		res.Duplicates += s.dups
		lat = append(lat, s.lat...)
		s.mu.Unlock()
	}
	for _, seqs := range published {
		res.Published += len(seqs)
	}
	res.Latency = percentiles(lat)
	return res
}

func (r *runner) steady(ctx context.Context) (Result, error) {
	p := r.proc()
	_, rss0 := p.sample()
	subs := r.newSubs(r.cfg.Workspaces)
	r.logf("connecting %d subscribers over %d workspaces", len(subs), r.cfg.Workspaces)
	ready, took, clat, errs := r.connectAll(ctx, subs, nil)
	defer func() {
		for _, s := range subs {
			s.close()
		}
	}()
	select {
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-time.After(r.cfg.Settle):
	}
	cpu1, rss1 := p.sample()
	redis0 := redisCalls(r.cfg.RedisAddr)
	total := int(r.cfg.Rate * r.cfg.Duration.Seconds())
	r.logf("publishing %d events at %.0f/s", total, r.cfg.Rate)
	published, pubErrs := r.publishPaced(ctx, total)
	r.drain(subs, published)
	cpu2, _ := p.sample()
	res := tally(subs, published)
	res.Ready, res.ConnectFailed, res.ConnectSeconds, res.Connect = ready, errs, took.Seconds(), percentiles(clat)
	res.PublishErrors = pubErrs
	if p.pids != nil {
		res.RSSBeforeKiB, res.RSSAfterKiB = rss0, rss1
		if ready > 0 {
			res.RSSPerConnKiB = float64(rss1-rss0) / float64(ready)
		}
		res.ServerCPUSeconds = cpu2 - cpu1
		if res.Received > 0 {
			res.CPUPerMillionDeliveries = res.ServerCPUSeconds / float64(res.Received) * 1e6
		}
	}
	if r.cfg.RedisAddr != "" && res.Published > 0 {
		res.RedisCommands = redisCalls(r.cfg.RedisAddr) - redis0
		res.RedisCommandsPerEvent = float64(res.RedisCommands) / float64(res.Published)
	}
	return res, nil
}

// publishPaced publishes total events round-robin over the workspaces at
// the configured rate, PubConns at a time.
func (r *runner) publishPaced(ctx context.Context, total int) (map[string][]int64, int) {
	published := map[string][]int64{}
	var mu sync.Mutex
	errs := 0
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range r.cfg.PubConns {
		wg.Go(func() {
			for i := range jobs {
				ws := r.ws(i % r.cfg.Workspaces)
				seq, err := r.publish(ctx, ws)
				mu.Lock()
				if err != nil {
					errs++
				} else {
					published[ws] = append(published[ws], seq)
				}
				mu.Unlock()
			}
		})
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	for i := range total {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return published, errs
}

// drain waits until every subscriber has every event of its workspace, or
// 10s pass.
func (r *runner) drain(subs []*sub, published map[string][]int64) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if res := tally(subs, published); res.Missing == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// burst: every subscriber on one workspace; one event per round; how long
// until the last subscriber has it.
func (r *runner) burst(ctx context.Context) (Result, error) {
	p := r.proc()
	_, rss0 := p.sample()
	subs := r.newSubs(1)
	for _, s := range subs {
		s.gotSeq = make(chan int64, r.cfg.Bursts+1)
	}
	r.logf("connecting %d subscribers to one workspace", len(subs))
	ready, took, clat, errs := r.connectAll(ctx, subs, nil)
	defer func() {
		for _, s := range subs {
			s.close()
		}
	}()
	time.Sleep(r.cfg.Settle)
	cpu1, rss1 := p.sample()
	published := map[string][]int64{}
	var lasts []float64
	for b := range r.cfg.Bursts {
		start := time.Now()
		seq, err := r.publish(ctx, subs[0].ws)
		if err != nil {
			return Result{}, err
		}
		published[subs[0].ws] = append(published[subs[0].ws], seq)
		var last time.Duration
		for _, s := range subs {
			if s.resp == nil {
				continue
			}
			for {
				select {
				case got := <-s.gotSeq:
					if got != seq {
						continue
					}
				case <-time.After(15 * time.Second):
				}
				break
			}
		}
		for _, s := range subs {
			s.mu.Lock()
			if n := len(s.lat); n > 0 && s.seen[seq] {
				last = max(last, s.lat[n-1])
			}
			s.mu.Unlock()
		}
		lasts = append(lasts, math.Round(float64(last)/1e3)/1e3)
		r.logf("burst %d: last of %d subscribers after %.1f ms (round trip %.1f ms)", b+1, ready, float64(last)/1e6, float64(time.Since(start))/1e6)
		time.Sleep(r.cfg.BurstGap)
	}
	cpu2, _ := p.sample()
	res := tally(subs, published)
	res.Ready, res.ConnectFailed, res.ConnectSeconds, res.Connect = ready, errs, took.Seconds(), percentiles(clat)
	res.LastSubscriberMs = lasts
	if p.pids != nil && ready > 0 {
		res.RSSBeforeKiB, res.RSSAfterKiB, res.RSSPerConnKiB = rss0, rss1, float64(rss1-rss0)/float64(ready)
		res.ServerCPUSeconds = cpu2 - cpu1
		if res.Received > 0 {
			res.CPUPerMillionDeliveries = res.ServerCPUSeconds / float64(res.Received) * 1e6
		}
	}
	return res, nil
}

// resume: subscribers connect, leave, miss Behind events per workspace,
// and all come back at once with their Last-Event-ID.
func (r *runner) resume(ctx context.Context) (Result, error) {
	subs := r.newSubs(r.cfg.Workspaces)
	r.logf("connecting %d subscribers over %d workspaces", len(subs), r.cfg.Workspaces)
	ready, _, _, errs := r.connectAll(ctx, subs, nil)
	if errs > 0 {
		return Result{Ready: ready, ConnectFailed: errs}, fmt.Errorf("%d subscribers failed to connect", errs)
	}
	lastIDs := make([]string, len(subs))
	for i, s := range subs {
		s.close()
		s.mu.Lock()
		lastIDs[i] = s.lastID
		s.seen = map[int64]bool{}
		s.lat = nil
		s.mu.Unlock()
	}
	total := r.cfg.Behind * r.cfg.Workspaces
	r.logf("publishing %d events (%d per workspace) while they are away", total, r.cfg.Behind)
	saved := r.cfg.Rate
	r.cfg.Rate = 5000
	published, pubErrs := r.publishPaced(ctx, total)
	r.cfg.Rate = saved
	p := r.proc()
	cpu1, _ := p.sample()
	redis0 := redisCalls(r.cfg.RedisAddr)
	r.logf("resume storm: %d subscribers reconnect at once", len(subs))
	r.cfg.ConnectConcurrency = len(subs)
	start := time.Now()
	again, _, clat, errs2 := r.connectAll(ctx, subs, lastIDs)
	r.drain(subs, published)
	took := time.Since(start)
	cpu2, _ := p.sample()
	defer func() {
		for _, s := range subs {
			s.close()
		}
	}()
	res := tally(subs, published)
	res.Ready, res.ConnectFailed, res.ConnectSeconds, res.Connect = again, errs2, took.Seconds(), percentiles(clat)
	res.PublishErrors = pubErrs
	if p.pids != nil {
		res.ServerCPUSeconds = cpu2 - cpu1
	}
	if r.cfg.RedisAddr != "" && again > 0 {
		res.RedisCommands = redisCalls(r.cfg.RedisAddr) - redis0
		res.RedisCommandsPerSubscriber = float64(res.RedisCommands) / float64(again)
	}
	return res, nil
}

// longpoll: every client waits on one workspace; one event answers them.
func (r *runner) longpoll(ctx context.Context) (Result, error) {
	ws := r.ws(0)
	head, err := r.head(ctx, ws)
	if err != nil {
		return Result{}, err
	}
	n := r.cfg.Subscribers
	r.logf("%d long polls waiting on %s", n, ws)
	type answer struct {
		at  time.Time
		got bool
		err error
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.cfg.ConnectConcurrency)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			c, err := DialPoller(ctx, r.cfg.URLs[i%len(r.cfg.URLs)], r.token(i))
			<-sem
			if err != nil {
				answers[i] = answer{err: err}
				return
			}
			defer c.Close()
			cursor := head
			// Like a real client: an answer without the event (presence or
			// typing woke it, or the wait ran out) is followed by another
			// poll from its nextCursor, on the same connection.
			for range 10 {
				status, b, err := c.Get("/v1/workspaces/" + ws + "/events?wait=30&cursor=" + cursor)
				if err != nil {
					answers[i] = answer{err: err}
					return
				}
				if bytes.Contains(b, seqKey) {
					answers[i] = answer{at: time.Now(), got: true}
					return
				}
				var p struct{ NextCursor string }
				if json.Unmarshal(b, &p) != nil || p.NextCursor == "" {
					answers[i] = answer{err: fmt.Errorf("poll answered %d: %.100s", status, b)}
					return
				}
				cursor = p.NextCursor
			}
		})
	}
	time.Sleep(r.cfg.Settle + time.Duration(n/1000)*time.Second)
	p := r.proc()
	cpu0, _ := p.sample()
	start := time.Now()
	if _, err := r.publish(ctx, ws); err != nil {
		return Result{}, err
	}
	wg.Wait()
	cpu1, _ := p.sample()
	res := Result{Expected: n, ServerCPUSeconds: cpu1 - cpu0}
	if len(p.pids) > 0 {
		res.CPUPerMillionDeliveries = res.ServerCPUSeconds / float64(n) * 1e6
	}
	var last time.Duration
	var lat []time.Duration
	for _, a := range answers {
		switch {
		case a.err != nil:
			res.ConnectFailed++
			res.Missing++
		case a.got:
			res.Received++
			lat = append(lat, a.at.Sub(start))
			last = max(last, a.at.Sub(start))
		default:
			res.Missing++
		}
	}
	res.Ready, res.Published, res.Latency = n-res.ConnectFailed, 1, percentiles(lat)
	res.LastSubscriberMs = []float64{math.Round(float64(last)/1e3) / 1e3}
	return res, nil
}

// Poller is one long-polling client on a connection of its own. It speaks
// HTTP/1.1 itself, as the referee harness's subscribers do: thousands of
// clients share the cores with the server, and net/http's client would
// measure its own cost as much as the server's. bench/floor's clients are
// Pollers too, so that its floor and this tool's figures compare.
type Poller struct {
	conn   net.Conn
	rd     *bufio.Reader
	req    []byte // the request's fixed part, after the path
	hdr    []byte // the same without the blank line that ends it
	body   []byte
	out    []byte // Post's request buffer
	stop   func() bool
	closed bool // the last answer said Connection: close
}

// DialPoller connects to base (an http:// URL); token, when set, is sent
// as a bearer token. The connection closes when ctx ends or on Close.
func DialPoller(ctx context.Context, base, token string) (*Poller, error) {
	host, ok := strings.CutPrefix(base, "http://")
	if !ok {
		return nil, fmt.Errorf("bench: long polling needs an http:// URL, not %q", base)
	}
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	req := " HTTP/1.1\r\nHost: " + host + "\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	return &Poller{conn: conn, rd: bufio.NewReaderSize(conn, 4096), req: []byte(req + "\r\n"), hdr: []byte(req),
		stop: context.AfterFunc(ctx, func() { conn.Close() })}, nil
}

// Close closes the connection.
func (p *Poller) Close() error {
	p.stop()
	return p.conn.Close()
}

// Get sends one GET and reads the answer, which must carry a
// Content-Length (the service's JSON answers do). The body is valid until
// the next call.
func (p *Poller) Get(path string) (status int, body []byte, err error) {
	req := append(append([]byte("GET "), path...), p.req...)
	if _, err := p.conn.Write(req); err != nil {
		return 0, nil, err
	}
	return p.answer()
}

// Post sends one POST of a JSON body and reads the answer, which may be
// chunked. The answer's body is valid until the next call; after an
// answer with Connection: close, Closed reports true and the connection
// is done.
func (p *Poller) Post(path string, body []byte) (status int, answer []byte, err error) {
	b := append(append(append(p.out[:0], "POST "...), path...), p.hdr...)
	b = append(b, "Content-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(append(b, "\r\n\r\n"...), body...)
	p.out = b
	if _, err := p.conn.Write(b); err != nil {
		return 0, nil, err
	}
	return p.answer()
}

// Closed reports whether the server closed the connection after its
// last answer.
func (p *Poller) Closed() bool { return p.closed }

// answer reads one answer: status line, headers, and a body of
// Content-Length bytes or in chunks.
func (p *Poller) answer() (status int, body []byte, err error) {
	p.closed = false
	line, err := p.rd.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if f := bytes.Fields(line); len(f) >= 2 {
		status, _ = strconv.Atoi(string(f[1]))
	}
	if status == 0 {
		return 0, nil, fmt.Errorf("bench: status line %q", line)
	}
	length, chunked := -1, false
	for {
		line, err := p.rd.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		h := bytes.TrimRight(line, "\r\n")
		if len(h) == 0 {
			break
		}
		if k, v, ok := bytes.Cut(h, []byte(":")); ok {
			v = bytes.TrimSpace(v)
			switch {
			case strings.EqualFold(string(k), "Content-Length"):
				length, _ = strconv.Atoi(string(v))
			case strings.EqualFold(string(k), "Transfer-Encoding"):
				chunked = bytes.EqualFold(v, []byte("chunked"))
			case strings.EqualFold(string(k), "Connection"):
				p.closed = bytes.EqualFold(v, []byte("close"))
			}
		}
	}
	if chunked {
		return p.chunks(status)
	}
	if length < 0 {
		return 0, nil, fmt.Errorf("bench: answer %d without Content-Length", status)
	}
	if cap(p.body) < length {
		p.body = make([]byte, length)
	}
	p.body = p.body[:length]
	if _, err := io.ReadFull(p.rd, p.body); err != nil {
		return 0, nil, err
	}
	return status, p.body, nil
}

// chunks reads a chunked body (RFC 9112 section 7.1), trailers ignored.
func (p *Poller) chunks(status int) (int, []byte, error) {
	p.body = p.body[:0]
	for {
		line, err := p.rd.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 32)
		if err != nil || n < 0 {
			return 0, nil, fmt.Errorf("bench: chunk size %q", line)
		}
		if n == 0 {
			for { // trailers, then the blank line
				line, err := p.rd.ReadSlice('\n')
				if err != nil {
					return 0, nil, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return status, p.body, nil
				}
			}
		}
		at := len(p.body)
		p.body = append(p.body, make([]byte, n)...)
		if _, err := io.ReadFull(p.rd, p.body[at:]); err != nil {
			return 0, nil, err
		}
		if _, err := p.rd.Discard(2); err != nil { // the chunk's CRLF
			return 0, nil, err
		}
	}
}

func (r *runner) head(ctx context.Context, ws string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URLs[0]+"/v1/workspaces/"+ws+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	resp, err := r.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var p struct{ NextCursor string }
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return "", err
	}
	return p.NextCursor, nil
}

func report(w io.Writer, r Result) {
	if r.Mode == "publish" {
		reportPublish(w, r)
		return
	}
	fmt.Fprintf(w, "== realtime bench %s  mode=%s  subscribers=%d workspaces=%d\n", r.Label, r.Mode, r.Subscribers, r.Workspaces)
	fmt.Fprintf(w, "connect: %d ready, %d failed in %.3fs (p50 %.2fms p99 %.2fms)\n", r.Ready, r.ConnectFailed, r.ConnectSeconds, r.Connect.P50, r.Connect.P99)
	fmt.Fprintf(w, "deliveries: published %d (errors %d), expected %d, received %d, missing %d, duplicates %d\n",
		r.Published, r.PublishErrors, r.Expected, r.Received, r.Missing, r.Duplicates)
	l := r.Latency
	fmt.Fprintf(w, "latency ms: p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f (n=%d)\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
	if len(r.LastSubscriberMs) > 0 {
		fmt.Fprintf(w, "last subscriber ms per round: %v\n", r.LastSubscriberMs)
	}
	if r.RSSPerConnKiB > 0 || r.ServerCPUSeconds > 0 {
		fmt.Fprintf(w, "server: RSS %d -> %d KiB (%.2f KiB per connection), CPU %.3fs (%.2f CPU-s per 1M deliveries)\n",
			r.RSSBeforeKiB, r.RSSAfterKiB, r.RSSPerConnKiB, r.ServerCPUSeconds, r.CPUPerMillionDeliveries)
	}
	if r.RedisCommands > 0 {
		fmt.Fprintf(w, "redis: %d commands (%.2f per published event, %.2f per resumed subscriber)\n", r.RedisCommands, r.RedisCommandsPerEvent, r.RedisCommandsPerSubscriber)
	}
	b, _ := json.Marshal(r)
	fmt.Fprintf(w, "%s\n", b)
}
