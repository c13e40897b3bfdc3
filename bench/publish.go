package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// publishLoad: Conns keep-alive connections publish as fast as they are
// answered for Duration, round-robin over Workspaces, each event an
// approval.created of about Size bytes shaped as the referee harness's
// (../shared/pubload) so that the figures compare; Batch events a request
// go to the batch route. No subscribers. Each connection is a Poller (this
// package's own HTTP/1.1 client), so the client's share of the cores is
// small and the same as bench/floor's.
func (r *runner) publishLoad(ctx context.Context) (Result, error) {
	cfg := r.cfg
	base := cfg.URLs[0]
	dial := func() (poster, error) { return DialPoller(ctx, base, cfg.PubToken) }
	if cfg.NetHTTP {
		tr := &http.Transport{MaxIdleConnsPerHost: cfg.Conns, MaxConnsPerHost: cfg.Conns, DisableCompression: true}
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		defer tr.CloseIdleConnections()
		dial = func() (poster, error) {
			return &netPoster{ctx: ctx, client: client, base: base, auth: "Bearer " + cfg.PubToken}, nil
		}
	}
	conns := make([]poster, cfg.Conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		c, err := dial()
		if err != nil {
			return Result{}, err
		}
		conns[i] = c
	}
	pad := strings.Repeat("x", max(0, cfg.Size-50)) // 150 for 200, as pubload's
	route := "/events"
	if cfg.Batch > 1 {
		route = "/events/batch"
	}
	r.logf("publishing over %d connections to %d workspaces for %s, %d event(s) a request", cfg.Conns, cfg.Workspaces, cfg.Duration, cfg.Batch)
	type tally struct {
		requests, events int
		errs             map[string]int
		lat              []time.Duration
	}
	tallies := make([]tally, len(conns))
	p := r.proc()
	cpu0, _ := p.sample()
	redis0 := redisCalls(cfg.RedisAddr)
	start := time.Now()
	end := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			t := &tallies[i]
			t.errs = map[string]int{}
			t.lat = make([]time.Duration, 0, 1<<14)
			var body []byte
			for ctx.Err() == nil {
				now := time.Now()
				if !now.Before(end) {
					break
				}
				k := r.seq.Add(int64(cfg.Batch)) - int64(cfg.Batch) + 1
				ws := r.ws(int(k % int64(cfg.Workspaces)))
				body = body[:0]
				if cfg.Batch > 1 {
					body = append(body, `{"events":[`...)
				}
				for j := range cfg.Batch {
					if j > 0 {
						body = append(body, ',')
					}
					body = appendEvent(body, k+int64(j), pad)
				}
				if cfg.Batch > 1 {
					body = append(body, "]}"...)
				}
				status, answer, err := conns[i].Post("/v1/workspaces/"+ws+route, body)
				switch {
				case err != nil:
					t.errs["transport"]++
				case status != 201:
					t.errs[strconv.Itoa(status)]++
				case cfg.Batch > 1 && bytes.Count(answer, []byte(`"workspaceId":`)) != cfg.Batch:
					t.errs["201 without every envelope"]++
				default:
					t.requests++
					t.events += cfg.Batch
					t.lat = append(t.lat, time.Since(now))
				}
				if err != nil || conns[i].Closed() {
					// A connection the server closed, or that failed: a new one.
					conns[i].Close()
					c, err := dial()
					if err != nil {
						conns[i] = nil
						return
					}
					conns[i] = c
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	cpu1, _ := p.sample()
	res := Result{Connections: cfg.Conns, Batch: cfg.Batch, Seconds: round3(took.Seconds()), ErrorsByStatus: map[string]int{}}
	var lat []time.Duration
	for _, t := range tallies {
		res.Requests += t.requests
		res.Events += t.events
		for k, v := range t.errs {
			res.ErrorsByStatus[k] += v
			res.Errors += v
		}
		lat = append(lat, t.lat...)
	}
	if len(res.ErrorsByStatus) == 0 {
		res.ErrorsByStatus = nil
	}
	res.Published, res.PublishErrors = res.Events, res.Errors
	res.RequestsPerSec = math.Round(float64(res.Requests) / took.Seconds())
	res.EventsPerSec = math.Round(float64(res.Events) / took.Seconds())
	res.Latency = percentiles(lat)
	if p.pids != nil {
		res.ServerCPUSeconds = round3(cpu1 - cpu0)
		if res.Events > 0 {
			res.CPUPerEventMicros = round3((cpu1 - cpu0) / float64(res.Events) * 1e6)
			res.CPUPerRequestMicros = round3((cpu1 - cpu0) / float64(res.Requests) * 1e6)
		}
	}
	if cfg.RedisAddr != "" && res.Events > 0 {
		res.RedisCommands = redisCalls(cfg.RedisAddr) - redis0
		res.RedisCommandsPerEvent = float64(res.RedisCommands) / float64(res.Events)
	}
	return res, nil
}

// poster is one publisher's connection.
type poster interface {
	Post(path string, body []byte) (status int, answer []byte, err error)
	Closed() bool
	Close() error
}

// netPoster posts with net/http's client, whose transport keeps the
// connections alive.
type netPoster struct {
	ctx        context.Context
	client     *http.Client
	base, auth string
	answer     []byte
}

func (p *netPoster) Post(path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(p.ctx, http.MethodPost, p.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", p.auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b := bytes.NewBuffer(p.answer[:0])
	_, err = b.ReadFrom(resp.Body)
	p.answer = b.Bytes()
	return resp.StatusCode, p.answer, err
}

func (p *netPoster) Closed() bool { return false }
func (p *netPoster) Close() error { return nil }

// appendEvent appends one publish body:
// {"type":"approval.created","data":{"id":"a<k>","sl_seq":<k>,"pad":"x…"}},
// pubload's, byte for byte.
func appendEvent(b []byte, k int64, pad string) []byte {
	b = append(b, `{"type":"approval.created","data":{"id":"a`...)
	b = strconv.AppendInt(b, k, 10)
	b = append(b, `","sl_seq":`...)
	b = strconv.AppendInt(b, k, 10)
	b = append(b, `,"pad":"`...)
	b = append(b, pad...)
	return append(b, `"}}`...)
}

func round3(x float64) float64 { return math.Round(x*1e3) / 1e3 }

func reportPublish(w io.Writer, r Result) {
	fmt.Fprintf(w, "== realtime bench %s  mode=publish  connections=%d workspaces=%d batch=%d\n", r.Label, r.Connections, r.Workspaces, r.Batch)
	fmt.Fprintf(w, "publish: %d requests (%.0f/s), %d events (%.0f/s) in %.2fs\n", r.Requests, r.RequestsPerSec, r.Events, r.EventsPerSec, r.Seconds)
	keys := make([]string, 0, len(r.ErrorsByStatus))
	for k := range r.ErrorsByStatus {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []string
	for _, k := range keys {
		errs = append(errs, fmt.Sprintf("%s: %d", k, r.ErrorsByStatus[k]))
	}
	fmt.Fprintf(w, "errors: %d [%s]\n", r.Errors, strings.Join(errs, ", "))
	l := r.Latency
	fmt.Fprintf(w, "request latency ms: p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f (n=%d)\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
	if r.ServerCPUSeconds > 0 {
		fmt.Fprintf(w, "server: CPU %.3fs = %.1f µs per event (%.1f µs per request)\n", r.ServerCPUSeconds, r.CPUPerEventMicros, r.CPUPerRequestMicros)
	}
	if r.RedisCommands > 0 {
		fmt.Fprintf(w, "redis: %d commands (%.2f per event)\n", r.RedisCommands, r.RedisCommandsPerEvent)
	}
	b, _ := json.Marshal(r)
	fmt.Fprintf(w, "%s\n", b)
}
