// Package metrics is the service's Prometheus instrumentation: every
// metric it exports, named realtime_*, with no label that carries a
// workspace or a user. Every label value is fixed when Metrics is made,
// so recording is an atomic add on a collector found in advance, and the
// delivery path itself is not touched: deliveries are counted by the
// stream package once per fan-out and read here at scrape time.
//
// A nil *Metrics records nothing, so code that is handed none (tests)
// calls it the same way. It is not a public API.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/realtime-dev/realtime/stream"
)

// Build names the running build (realtime_build_info's labels).
type Build struct {
	Version, Revision, GoVersion string
}

// Publish outcomes: the label values of realtime_publish_duration_seconds.
const (
	PublishCreated     = "created"      // 201, appended
	PublishReplayed    = "replayed"     // 201, an Idempotency-Key repeat
	PublishRejected    = "rejected"     // 4xx: bad input, not allowed
	PublishRateLimited = "rate_limited" // 429
	PublishUnavailable = "unavailable"  // 503: the log
	PublishError       = "error"        // any other 5xx
)

var publishOutcomes = []string{PublishCreated, PublishReplayed, PublishRejected, PublishRateLimited, PublishUnavailable, PublishError}

// Rate limits: the label values of realtime_rate_limited_total.
const (
	LimitPublish  = "publish"
	LimitPresence = "presence"
	LimitTicket   = "ticket"
)

// Reset kinds: where a sync.reset was sent.
const (
	ResetStream = "stream"
	ResetPoll   = "poll"
)

// Metrics holds every collector, registered on its own registry.
type Metrics struct {
	reg *prometheus.Registry

	streamsHTTP1, streamsHTTP2 prometheus.Gauge
	longPolls                  prometheus.Gauge
	slowClosed                 prometheus.Counter
	resets                     map[string]prometheus.Counter
	publish                    map[string]prometheus.Observer
	rateLimited                map[string]prometheus.Counter
	redisErrors                prometheus.Counter
	redisDuration              prometheus.Observer
}

// New makes the collectors and registers them, with the Go runtime's and
// the process's.
func New(b Build) *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{reg: reg, resets: map[string]prometheus.Counter{}, publish: map[string]prometheus.Observer{}, rateLimited: map[string]prometheus.Counter{}}

	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "realtime_build_info", Help: "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	})
	info.Set(1)
	f(info)

	streams := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "realtime_streams_open", Help: "Event streams open on this node, by HTTP version.",
	}, []string{"transport"})
	m.streamsHTTP1, m.streamsHTTP2 = streams.WithLabelValues("http1"), streams.WithLabelValues("http2")
	f(streams)
	m.longPolls = prometheus.NewGauge(prometheus.GaugeOpts{Name: "realtime_long_polls_waiting", Help: "Long polls waiting on this node."})
	f(m.longPolls)

	for _, path := range []string{"direct", "queued"} {
		f(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "realtime_deliveries_total", ConstLabels: prometheus.Labels{"path": path},
			Help: "Events handed to open streams and long polls: written straight to the connection by the fan-out (direct), or queued for the stream's goroutine (queued).",
		}, func() float64 {
			d, q := stream.Deliveries()
			if path == "direct" {
				return float64(d)
			}
			return float64(q)
		}))
	}
	m.slowClosed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "realtime_slow_consumer_closes_total", Help: "Streams closed because they fell a whole queue behind (they resume from the log).",
	})
	f(m.slowClosed)
	resets := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "realtime_resets_total", Help: "sync.reset sent: a resume point was lost (trimmed, or the log lost its history).",
	}, []string{"via"})
	for _, k := range []string{ResetStream, ResetPoll} {
		m.resets[k] = resets.WithLabelValues(k)
	}
	f(resets)

	pub := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "realtime_publish_duration_seconds", Help: "Publish requests by outcome, and how long they took (the _count is the requests).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"outcome"})
	for _, o := range publishOutcomes {
		m.publish[o] = pub.WithLabelValues(o)
	}
	f(pub)
	limited := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "realtime_rate_limited_total", Help: "Requests refused with 429 rate_limited, by limit.",
	}, []string{"limit"})
	for _, k := range []string{LimitPublish, LimitPresence, LimitTicket} {
		m.rateLimited[k] = limited.WithLabelValues(k)
	}
	f(limited)

	m.redisErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "realtime_redis_errors_total", Help: "Redis commands and pipelines that failed (not counting nil replies and cancelled callers).",
	})
	f(m.redisErrors)
	redisDur := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "realtime_redis_command_duration_seconds", Help: "How long Redis commands and pipelines took, blocking reads included.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
	})
	m.redisDuration = redisDur
	f(redisDur)
	return m
}

// Handler serves the metrics (text format, or OpenMetrics when asked).
// A nil m serves an empty page.
func (m *Metrics) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	if m != nil {
		reg = m.reg
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// StreamOpened counts an open stream until the returned func is called.
func (m *Metrics) StreamOpened(http2 bool) (closed func()) {
	if m == nil {
		return func() {}
	}
	g := m.streamsHTTP1
	if http2 {
		g = m.streamsHTTP2
	}
	g.Inc()
	return g.Dec
}

// LongPollWaiting counts a waiting long poll until the returned func is
// called.
func (m *Metrics) LongPollWaiting() (done func()) {
	if m == nil {
		return func() {}
	}
	m.longPolls.Inc()
	return m.longPolls.Dec
}

// SlowConsumerClosed counts a stream closed for falling behind.
func (m *Metrics) SlowConsumerClosed() {
	if m != nil {
		m.slowClosed.Inc()
	}
}

// ResetSent counts a sync.reset sent via a stream or a poll.
func (m *Metrics) ResetSent(via string) {
	if m != nil {
		m.resets[via].Inc()
	}
}

// Published records a publish request's outcome and duration.
func (m *Metrics) Published(outcome string, d time.Duration) {
	if m != nil {
		m.publish[outcome].Observe(d.Seconds())
	}
}

// RateLimited counts a request refused by a rate limit.
func (m *Metrics) RateLimited(limit string) {
	if m != nil {
		m.rateLimited[limit].Inc()
	}
}

// WatchPresence exports members(), the users present through streams on
// this node (one per user and workspace).
func (m *Metrics) WatchPresence(members func() int) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "realtime_presence_members", Help: "Users present in a workspace through a stream on this node (one per user and workspace).",
	}, func() float64 { return float64(members()) }))
}

// Bridge is what the Event Bus bridge tells about itself.
type Bridge interface {
	// Counts returns the entries bridged and dead-lettered by this node,
	// and the age, when it was bridged, of the last entry it bridged.
	Counts() (bridged, deadLettered uint64, lag time.Duration)
	// Backlog asks Redis for the group's entries delivered but not
	// acknowledged (pending) and not yet delivered (-1: unknown).
	Backlog(ctx context.Context) (pending, undelivered int64, err error)
}

// WatchBridge exports b's counters, and its backlog asked of Redis at
// each scrape (within a second).
func (m *Metrics) WatchBridge(b Bridge) {
	if m != nil {
		m.reg.MustRegister(&bridgeCollector{b: b})
	}
}

var (
	descBridged = prometheus.NewDesc("realtime_bridge_entries_bridged_total", "Event Bus entries this node appended to workspace logs.", nil, nil)
	descDead    = prometheus.NewDesc("realtime_bridge_entries_dead_lettered_total", "Event Bus entries this node sent to the dead-letter stream.", nil, nil)
	descLag     = prometheus.NewDesc("realtime_bridge_lag_seconds", "Age of the last entry this node bridged when it bridged it (its id's time to its append).", nil, nil)
	descPending = prometheus.NewDesc("realtime_bridge_entries_pending", "Entries the consumer group was given and has not acknowledged.", nil, nil)
	descBehind  = prometheus.NewDesc("realtime_bridge_entries_undelivered", "Entries in the Event Bus the consumer group has not read yet.", nil, nil)
)

type bridgeCollector struct{ b Bridge }

func (c *bridgeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBridged, descDead, descLag, descPending, descBehind} {
		ch <- d
	}
}

func (c *bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	bridged, dead, lag := c.b.Counts()
	ch <- prometheus.MustNewConstMetric(descBridged, prometheus.CounterValue, float64(bridged))
	ch <- prometheus.MustNewConstMetric(descDead, prometheus.CounterValue, float64(dead))
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, lag.Seconds())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	pending, behind, err := c.b.Backlog(ctx)
	if err != nil {
		return // the counters above are still worth having
	}
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(pending))
	if behind >= 0 {
		ch <- prometheus.MustNewConstMetric(descBehind, prometheus.GaugeValue, float64(behind))
	}
}

// RedisHook times every Redis command and pipeline and counts failures.
// A nil m returns nil.
func (m *Metrics) RedisHook() redis.Hook {
	if m == nil {
		return nil
	}
	return redisHook{m}
}

type redisHook struct{ m *Metrics }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		h.observe(ctx, start, err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.observe(ctx, start, err)
		return err
	}
}

func (h redisHook) observe(ctx context.Context, start time.Time, err error) {
	h.m.redisDuration.Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, redis.Nil) && ctx.Err() == nil {
		h.m.redisErrors.Inc()
	}
}
