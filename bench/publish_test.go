package bench_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/realtime-dev/realtime/bench"
)

// counter counts the 201 answers a handler gives to POSTs, per workspace.
// publishedEvent is what the tests read of an event the publish load
// sent: in a batch body, or read back from the log.
type publishedEvent struct {
	Type string
	Data struct {
		ID    string
		SlSeq int64 `json:"sl_seq"`
		Pad   string
	}
}

type counter struct {
	mu      sync.Mutex
	created map[string]int
}

func (c *counter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&statusWriter{ResponseWriter: w, c: c, r: r}, r)
	})
}

func (c *counter) total() (n, workspaces int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range c.created {
		n += v
	}
	return n, len(c.created)
}

// statusWriter counts at WriteHeader, before the answer leaves: once the
// client has read it, it is counted.
type statusWriter struct {
	http.ResponseWriter
	c *counter
	r *http.Request
}

func (s *statusWriter) WriteHeader(code int) {
	if code == http.StatusCreated && s.r.Method == http.MethodPost {
		s.c.mu.Lock()
		s.c.created[strings.Split(strings.TrimPrefix(s.r.URL.Path, "/v1/workspaces/"), "/")[0]]++
		s.c.mu.Unlock()
	}
	s.ResponseWriter.WriteHeader(code)
}

// sane checks what every successful publish run reports: counts that add
// up, ordered latency percentiles over every request, and server CPU per
// event and per request consistent with the CPU seconds.
func sane(t *testing.T, res bench.Result, out string, batch int) {
	t.Helper()
	if res.Mode != "publish" || res.Requests == 0 || res.Events != res.Requests*batch || res.Batch != batch ||
		res.Published != res.Events || res.Seconds <= 0 || res.RequestsPerSec <= 0 || res.EventsPerSec <= 0 {
		t.Fatalf("counts: %+v\n%s", res, out)
	}
	if l := res.Latency; l.Count != res.Requests || !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
		t.Fatalf("latency: %+v\n%s", l, out)
	}
	// This process is the server (and the client): its CPU is counted.
	if res.ServerCPUSeconds <= 0 || res.CPUPerEventMicros <= 0 {
		t.Fatalf("cpu: %+v\n%s", res, out)
	}
	if want := res.ServerCPUSeconds / float64(res.Events) * 1e6; res.CPUPerEventMicros < want*0.99-0.001 || res.CPUPerEventMicros > want*1.01+0.001 {
		t.Fatalf("CPU per event %.3f µs, want %.3f from %.3fs over %d events", res.CPUPerEventMicros, want, res.ServerCPUSeconds, res.Events)
	}
	if want := res.CPUPerEventMicros * float64(batch); res.CPUPerRequestMicros < want*0.99-0.001 || res.CPUPerRequestMicros > want*1.01+0.001 {
		t.Fatalf("CPU per request %.3f µs, want %.3f", res.CPUPerRequestMicros, want)
	}
	for _, re := range []string{
		`(?m)^== realtime bench .* mode=publish  connections=\d+ workspaces=\d+ batch=` + strconv.Itoa(batch) + `$`,
		`(?m)^publish: \d+ requests \(\d+/s\), \d+ events \(\d+/s\) in [\d.]+s$`,
		`(?m)^request latency ms: p50 [\d.]+ p90 [\d.]+ p99 [\d.]+ p99.9 [\d.]+ max [\d.]+ \(n=\d+\)$`,
		`(?m)^server: CPU [\d.]+s = [\d.]+ µs per event \([\d.]+ µs per request\)$`,
		`(?m)^\{"Label".*"CPUPerEventMicros":`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("report lacks %s:\n%s", re, out)
		}
	}
}

// Single publishes against the service's handlers over real HTTP: every
// 201 the server gave is counted, over every workspace, and the stored
// events have pubload's shape; with either client.
func TestPublishSingle(t *testing.T) {
	for _, netHTTP := range []bool{false, true} {
		t.Run("net/http="+strconv.FormatBool(netHTTP), func(t *testing.T) { testPublishSingle(t, netHTTP) })
	}
}

func testPublishSingle(t *testing.T, netHTTP bool) {
	c := &counter{created: map[string]int{}}
	url := serverWith(t, c.wrap)
	sub, pub := tokens(t)
	var out strings.Builder
	res, err := bench.Run(t.Context(), bench.Config{Mode: "publish", URLs: []string{url}, PubToken: pub, Prefix: "single",
		Conns: 4, Workspaces: 5, Duration: 300 * time.Millisecond, PID: strconv.Itoa(os.Getpid()), NetHTTP: netHTTP}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	sane(t, res, out.String(), 1)
	if n, ws := c.total(); n != res.Requests || ws != 5 || res.Errors != 0 || res.ErrorsByStatus != nil {
		t.Fatalf("server answered %d publishes 201 over %d workspaces; the tool says %+v", n, ws, res)
	}
	// The stored event: an approval.created with pubload's data.
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/workspaces/single0/events?cursor=0&limit=1", nil)
	req.Header.Set("Authorization", "Bearer "+sub)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct{ Events []publishedEvent }
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || len(page.Events) != 1 {
		t.Fatalf("read back: %v %+v", err, page)
	}
	e := page.Events[0]
	if e.Type != "approval.created" || e.Data.ID != fmt.Sprintf("a%d", e.Data.SlSeq) || e.Data.SlSeq%5 != 0 || e.Data.Pad != strings.Repeat("x", 150) {
		t.Fatalf("stored event %+v", e)
	}
	fmt.Fprint(t.Output(), out.String())
}

// Errors are counted by status, and a run where nothing succeeded says so.
func TestPublishErrorsByStatus(t *testing.T) {
	url := server(t)
	sub, _ := tokens(t) // no events:publish scope: every publish is a 403
	var out strings.Builder
	res, err := bench.Run(t.Context(), bench.Config{Mode: "publish", URLs: []string{url}, PubToken: sub,
		Conns: 2, Workspaces: 3, Duration: 100 * time.Millisecond}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Events != 0 || res.Errors == 0 || res.ErrorsByStatus["403"] != res.Errors || len(res.ErrorsByStatus) != 1 {
		t.Fatalf("%+v\n%s", res, out.String())
	}
	if !regexp.MustCompile(`(?m)^errors: \d+ \[403: \d+\]$`).MatchString(out.String()) {
		t.Fatalf("report:\n%s", out.String())
	}
}

// Batches against a fake of POST /v1/workspaces/{ws}/events/batch that
// misbehaves as the real route does not: each request carries Batch events of
// pubload's shape in one workspace, with ids consecutive; the answers are
// chunked (longer than net/http buffers), some close the connection (the
// tool dials again), and some lack an envelope (counted as errors, not
// events); with either client.
func TestPublishBatchFake(t *testing.T) {
	for _, netHTTP := range []bool{false, true} {
		t.Run("net/http="+strconv.FormatBool(netHTTP), func(t *testing.T) { testPublishBatchFake(t, netHTTP) })
	}
}

func testPublishBatchFake(t *testing.T, netHTTP bool) {
	const batch = 20
	var (
		mu                    sync.Mutex
		requests, events, bad int
		short                 int
		problems              []string
	)
	envelope := `{"id":"1-1","type":"approval.created","workspaceId":"ws","correlationId":"c","timestamp":"t","data":{"pad":"` + strings.Repeat("y", 200) + `"}}`
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/workspaces/{ws}/events/batch", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Events []publishedEvent }
		err := json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		defer mu.Unlock()
		requests++
		n := requests
		if r.Header.Get("Authorization") != "Bearer pub" || r.Header.Get("Content-Type") != "application/json" || err != nil || len(body.Events) != batch {
			bad++
			problems = append(problems, fmt.Sprintf("%v %d", err, len(body.Events)))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		first := body.Events[0].Data.SlSeq
		if r.PathValue("ws") != "b"+strconv.FormatInt(first%3, 10) {
			problems = append(problems, "workspace "+r.PathValue("ws")+" for "+strconv.FormatInt(first, 10))
		}
		for i, e := range body.Events {
			if e.Type != "approval.created" || e.Data.SlSeq != first+int64(i) || e.Data.ID != fmt.Sprintf("a%d", e.Data.SlSeq) || len(e.Data.Pad) != 150 {
				problems = append(problems, fmt.Sprintf("event %d: %+v", i, e))
			}
		}
		k := batch
		if n%5 == 0 {
			k-- // one envelope short
			short++
		} else {
			events += batch
		}
		if n%7 == 0 {
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"events":[` + strings.TrimSuffix(strings.Repeat(envelope+",", k), ",") + "]}\n"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	var out strings.Builder
	res, err := bench.Run(t.Context(), bench.Config{Mode: "publish", URLs: []string{srv.URL}, PubToken: "pub", Prefix: "b",
		Conns: 3, Workspaces: 3, Batch: batch, Duration: 300 * time.Millisecond, PID: strconv.Itoa(os.Getpid()), NetHTTP: netHTTP}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	sane(t, res, out.String(), batch)
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 || bad > 0 {
		t.Fatalf("%d bad requests: %v", bad, problems[:min(5, len(problems))])
	}
	if requests < 7 || res.Events != events || res.Errors != short || res.ErrorsByStatus["201 without every envelope"] != short || res.ErrorsByStatus["transport"] != 0 {
		t.Fatalf("server: %d requests, %d events, %d short; tool: %+v\n%s", requests, events, short, res, out.String())
	}
	fmt.Fprint(t.Output(), out.String())
}

// Batches against the service's batch route over real HTTP: every event
// the tool counts is stored, each batch's events contiguous and in order.
func TestPublishBatch(t *testing.T) {
	const batch, workspaces = 10, 3
	c := &counter{created: map[string]int{}}
	url := serverWith(t, c.wrap)
	sub, pub := tokens(t)
	var out strings.Builder
	res, err := bench.Run(t.Context(), bench.Config{Mode: "publish", URLs: []string{url}, PubToken: pub, Prefix: "batch",
		Conns: 3, Workspaces: workspaces, Batch: batch, Duration: 300 * time.Millisecond, PID: strconv.Itoa(os.Getpid())}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	sane(t, res, out.String(), batch)
	if n, ws := c.total(); n != res.Requests || ws != workspaces || res.Errors != 0 {
		t.Fatalf("server answered %d batches 201 over %d workspaces; the tool says %+v\n%s", n, ws, res, out.String())
	}
	stored := 0
	for w := range workspaces {
		var seqs []int64
		cursor := "0"
		for {
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v1/workspaces/batch%d/events?cursor=%s&limit=1000", url, w, cursor), nil)
			req.Header.Set("Authorization", "Bearer "+sub)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var page struct {
				Events     []publishedEvent
				NextCursor string
			}
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Events) == 0 {
				break
			}
			for _, e := range page.Events {
				seqs = append(seqs, e.Data.SlSeq)
			}
			cursor = page.NextCursor
		}
		if len(seqs)%batch != 0 {
			t.Fatalf("batch%d holds %d events, not whole batches of %d", w, len(seqs), batch)
		}
		for i := 0; i < len(seqs); i += batch {
			for j := 1; j < batch; j++ {
				if seqs[i+j] != seqs[i]+int64(j) {
					t.Fatalf("batch%d: a batch stored as %v", w, seqs[i:i+batch])
				}
			}
			if seqs[i]%batch != 1 || seqs[i]%workspaces != int64(w) {
				t.Fatalf("batch%d: a batch starting at %d", w, seqs[i])
			}
		}
		stored += len(seqs)
	}
	if stored != res.Events {
		t.Fatalf("%d events stored; the tool counted %d", stored, res.Events)
	}
	fmt.Fprint(t.Output(), out.String())
}
