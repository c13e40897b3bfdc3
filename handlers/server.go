package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/realtime-dev/realtime"
	"github.com/realtime-dev/realtime/metrics"
	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

// Config tunes the handlers. Zero values are the defaults noted.
type Config struct {
	// Heartbeat is the silence after which a stream sends a heartbeat (15s).
	Heartbeat time.Duration
	// Retry is the reconnection delay a stream advises; each stream gets it
	// jittered up to +50% so that reconnects spread out (3s).
	Retry time.Duration
	// WriteTimeout bounds each write to a stream; a client that cannot take
	// a frame within it is disconnected (5s).
	WriteTimeout time.Duration
	// MaxWait caps a long poll (poll.MaxWait); keep it below the shutdown
	// timeout.
	MaxWait time.Duration
	// Queue bounds each stream's queue of undelivered events; a stream that
	// falls further behind is closed and resumes from the log (256).
	Queue int
	// MaxBody bounds a publish body (64 KiB).
	MaxBody int64
	// MaxBatchBody bounds a batch publish body (1 MiB: 100 events of
	// about 10 KiB).
	MaxBatchBody int64
	// PublishRate limits publishes per workspace, across nodes; a zero Per
	// means no limit.
	PublishRate stream.Rate
	// MaxStreamsPerUser caps the streams and long polls one user holds open
	// on this node at once (0: no cap).
	MaxStreamsPerUser int
	// PresenceRate limits each user's presence and typing changes per
	// workspace, across nodes; a zero Per means no limit.
	PresenceRate stream.Rate
	// TicketRate limits the stream tickets each user buys, across nodes
	// and workspaces; a zero Per means no limit. Each ticket is kept until
	// it expires, so the rate bounds what one user can make a node (or
	// Redis) hold.
	TicketRate stream.Rate
	// TokenLeeway is the clock skew the token verifier tolerates on exp;
	// a stream ends that long after its token's exp, so that a token
	// accepted within the leeway does not open a stream that closes at
	// once (0).
	TokenLeeway time.Duration
	// MinStreamLifetime is the least a stream must have left to live
	// (its token's exp plus TokenLeeway, from now) to open, and a ticket
	// to be issued: a token about to expire gets 401 token_expiring
	// rather than a stream that closes at once (5s).
	MinStreamLifetime time.Duration
	// TicketTTL is how long a stream ticket may wait to be used (30s).
	TicketTTL time.Duration
	// Tickets keeps stream tickets; nil: the log, when it is a
	// stream.TicketStore (Memory and redisstream.Log are).
	Tickets stream.TicketStore
	// DisableQueryToken refuses the access_token query parameter
	// (REALTIME_ALLOW_QUERY_TOKEN=false) with 401 query_token_disabled.
	DisableQueryToken bool
	// IdempotencyTTL is how long an Idempotency-Key is remembered (24h).
	IdempotencyTTL time.Duration
	// Hijacked, when set, lets HTTP/1 streams take over their connection
	// once set up, which releases the handler's stack and net/http's
	// per-connection buffers (a third of a stream's memory). Shutdown does
	// not wait for hijacked connections: the caller waits on this group
	// after cancelling the streams context.
	Hijacked *sync.WaitGroup
	// DevToken, when set (only under --dev), is embedded in the dashboard
	// so that it signs itself in, for clients on loopback only.
	DevToken string
	// Draining, when it closes, turns readiness to 503 while everything
	// else still serves: the drain delay before streams is cancelled.
	Draining <-chan struct{}
	// BodyTimeout bounds reading a request body, from the moment the
	// request reaches the handlers (0: no bound).
	BodyTimeout time.Duration
	// CORSOrigins are the origins allowed by CORS (exact, or "*" alone
	// for any origin without credentials); empty: no CORS headers.
	CORSOrigins []string
	// Build is the build's version, reported by /healthz and /version.
	Build BuildInfo
	// Metrics records what the handlers do, and is served at /metrics
	// (nil: nothing recorded, an empty page).
	Metrics *metrics.Metrics
}

// BuildInfo says which build is running (GET /version).
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Time      string `json:"time,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goVersion"`
}

func (c Config) withDefaults() Config {
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.Retry <= 0 {
		c.Retry = 3 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 30 * time.Second
	}
	if c.Queue <= 0 {
		c.Queue = stream.DefaultQueue
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = stream.DefaultOnceTTL
	}
	if c.MinStreamLifetime <= 0 {
		c.MinStreamLifetime = 5 * time.Second
	}
	if c.TicketTTL <= 0 {
		c.TicketTTL = 30 * time.Second
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 64 << 10
	}
	if c.MaxBatchBody <= 0 {
		c.MaxBatchBody = 1 << 20
	}
	return c
}

// New returns the service's HTTP handler over log, whose presence is kept
// by presence and whose rate limits (publishing, presence changes) by
// limits. streams is cancelled when the server starts draining: open
// streams then tell their clients to come back soon and end, long polls
// answer at once, and readiness turns 503.
func New(logger *slog.Logger, cfg Config, log stream.Log, presence *stream.PresenceTracker, limits stream.RateLimiter, auth *appmw.Verifier, streams context.Context) http.Handler {
	cfg = cfg.withDefaults()
	r := chi.NewRouter()
	onError := errorWriter(logger)
	r.Use(appmw.RequestLog(logger), appmw.Recover(logger, onError), bodyDeadline(cfg.BodyTimeout), cors(cfg.CORSOrigins))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(logger, w, r, errorf(http.StatusNotFound, "not_found", "no such route"))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(logger, w, r, errorf(http.StatusMethodNotAllowed, "method_not_allowed", "method %s not allowed here", r.Method))
	})
	addRoutes(r, logger, cfg, log, presence, limits, auth, streams, realtime.MustLoadSchemas())
	return r
}
