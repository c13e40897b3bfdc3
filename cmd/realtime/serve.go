package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/realtime-dev/realtime"
	"github.com/realtime-dev/realtime/handlers"
	"github.com/realtime-dev/realtime/metrics"
	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
	"github.com/realtime-dev/realtime/stream/redisstream"
)

// serve runs the service until ctx is done or SIGINT/SIGTERM, then drains:
// readiness turns 503, streams are told to come back soon and closed, long
// polls answer, and in-flight publishes finish.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg, err := parseConfig("realtime serve", args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(appmw.LogHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})))

	secret := []byte(cfg.JWTSecret)
	if cfg.Dev {
		// Never the configured key: the dev page hands its token to whoever
		// loads it, and a node sharing that key would honour it.
		if len(secret) > 0 {
			logger.Warn("dev mode ignores REALTIME_JWT_SECRET and signs with a key of its own; tokens minted with the secret are not accepted")
			fmt.Fprintln(stdout, "dev mode: REALTIME_JWT_SECRET is ignored; tokens are signed with a generated key")
		}
		secret = make([]byte, 32)
		rand.Read(secret)
		secret = []byte(hex.EncodeToString(secret))
	}
	leeway := cfg.JWTLeeway
	pubKeys, err := appmw.LoadPublicKeys(cfg.JWTPublicKeys)
	if err != nil {
		return err
	}
	auth, err := appmw.NewVerifier(appmw.AuthConfig{Secret: secret, PublicKeys: pubKeys, JWKSURL: cfg.JWKSURL, JWKSRefresh: cfg.JWKSRefresh,
		Logger: logger, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Leeway: leeway})
	if err != nil {
		return err
	}
	// Stops the JWKS refresh goroutine, whatever way serve returns.
	defer auth.Close()

	build := buildVersion()
	metered := metrics.New(metrics.Build{Version: build.Version, Revision: build.Revision, GoVersion: build.GoVersion})
	be, err := openLog(ctx, cfg, logger, metered)
	if err != nil {
		return err
	}
	log := be.log
	defer log.Close()
	logger.Info("starting", "version", buildVersion().Version, "config", cfg)
	// Stops before the log closes (defers run last first): its final
	// announcements still reach the log.
	presence := stream.NewPresenceTracker(be.presence, log, stream.PresenceConfig{
		Interval: cfg.PresenceInterval, ConnTTL: 3 * cfg.Heartbeat, Grace: cfg.PresenceGrace,
		StatusTTL: cfg.PresenceTTL, TypingTTL: cfg.TypingTTL, Logger: logger,
	})
	defer presence.Close()
	metered.WatchPresence(presence.Members)

	var devToken string
	if cfg.Dev {
		if devToken, err = issueDevToken(secret, cfg); err != nil {
			return err
		}
	}
	streams, stopStreams := context.WithCancel(context.Background())
	defer stopStreams()
	// Hijacked streams are not tracked by Shutdown; they end when streams
	// is cancelled, and serve waits for them before closing the log.
	var hijacked sync.WaitGroup
	defer waitHijacked(&hijacked, cfg.ShutdownTimeout, logger)
	defer stopStreams()
	tlsCfg, err := tlsConfig(cfg)
	if err != nil {
		return err
	}
	draining := make(chan struct{})
	srv := &http.Server{
		Handler: handlers.New(logger, handlers.Config{
			Draining: draining, BodyTimeout: cfg.ReadTimeout, CORSOrigins: cfg.CORSOrigins, Build: build, Metrics: metered,
			Heartbeat: cfg.Heartbeat, Retry: cfg.Retry, WriteTimeout: cfg.WriteTimeout,
			MaxWait: cfg.MaxWait, Queue: cfg.Queue, DevToken: devToken, IdempotencyTTL: cfg.IdempotencyTTL,
			PublishRate: stream.Rate{Per: cfg.PublishRate, Burst: cfg.PublishBurst}, MaxStreamsPerUser: cfg.MaxStreamsPerUser,
			PresenceRate: stream.Rate{Per: cfg.PresenceRate, Burst: cfg.PresenceBurst},
			TicketRate:   stream.Rate{Per: cfg.TicketRate, Burst: max(1, int(math.Ceil(3*cfg.TicketRate)))}, TokenLeeway: leeway,
			TicketTTL: cfg.TicketTTL, DisableQueryToken: !cfg.AllowQueryToken,
			Hijacked: &hijacked,
		}, log, presence, be.limits, auth, streams),
		ReadHeaderTimeout: cfg.ReadTimeout,
		IdleTimeout:       2 * time.Minute,
		Protocols:         protocols(cfg),
		TLSConfig:         tlsCfg,
		// No WriteTimeout: it would cut every stream. Each stream write
		// carries its own deadline instead.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(stopStreams)

	// The bridge stops with the service, or when serve returns early (a
	// busy port): its own context, cancelled before waiting for it.
	bridgeCtx, stopBridge := context.WithCancel(ctx)
	defer stopBridge()
	bridgeDone, err := startBridge(bridgeCtx, cfg, log, logger, metered)
	if err != nil {
		return err
	}
	defer func() { stopBridge(); <-bridgeDone }()

	if cfg.DebugAddr != "" {
		stopDebug, err := serveDebug(cfg.DebugAddr, logger, metered)
		if err != nil {
			return err
		}
		defer stopDebug()
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	if tlsCfg != nil {
		fmt.Fprintln(stdout, "serving HTTPS (HTTP/2 and HTTP/1.1)")
	}
	if cfg.Dev {
		printDevHelp(stdout, devToken, ln.Addr())
	}
	errc := startServing(srv, ln)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stop() // a second SIGINT or SIGTERM now ends the process at once
	if err, stopped := drainDelay(srv, draining, cfg.DrainDelay, errc, logger); stopped {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}

	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// waitHijacked waits, at most timeout, for hijacked streams to end after
// the streams context was cancelled, so that the log outlives them.
func waitHijacked(wg *sync.WaitGroup, timeout time.Duration, logger *slog.Logger) {
	done := make(chan struct{})
	// Exits when the streams have ended; after a timeout nobody waits for
	// it, and the process is exiting anyway.
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		logger.Warn("hijacked streams still open at shutdown")
	}
}

// startBridge starts the Event Bus bridge when one is configured. It runs
// until ctx is done (SIGTERM); the returned channel closes when it has
// stopped.
func startBridge(ctx context.Context, cfg Config, log stream.Log, logger *slog.Logger, m *metrics.Metrics) (<-chan struct{}, error) {
	done := make(chan struct{})
	if cfg.BusStream == "" {
		close(done)
		return done, nil
	}
	rlog, ok := log.(*redisstream.Log)
	if !ok {
		close(done)
		return nil, errors.New("the Event Bus bridge needs the Redis log")
	}
	host, _ := os.Hostname()
	schemas := realtime.MustLoadSchemas()
	b, err := redisstream.NewBridge(rlog, redisstream.BridgeConfig{
		Stream: cfg.BusStream, Group: cfg.BusGroup, DeadLetter: cfg.BusDeadLetter, Lease: cfg.BusLease,
		Consumer: fmt.Sprintf("%s-%d-%s", host, os.Getpid(), appmw.NewID()[:8]),
		Validate: func(typ string, data json.RawMessage) error {
			if e := schemas.ValidateData(typ, data); e != nil {
				return e
			}
			return nil
		},
		Logger: logger,
	})
	if err != nil {
		close(done)
		return nil, err
	}
	m.WatchBridge(b)
	logger.Info("bridging the event bus", "stream", cfg.BusStream, "group", cfg.BusGroup)
	// Exits when ctx is done; serve waits for done before returning.
	go func() {
		defer close(done)
		b.Run(ctx)
	}()
	return done, nil
}

// serveDebug serves pprof on its own listener (opt-in: it must never share
// the API's address). The returned func stops it.
func serveDebug(addr string, logger *slog.Logger, m *metrics.Metrics) (func(), error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen debug %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// Contention is where thousands of streams or long polls woken at once
	// lose their time; sample it while someone may be looking (1 in 20).
	prevMutex := runtime.SetMutexProfileFraction(20)
	done := make(chan struct{})
	// Serves until the returned func closes it.
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	logger.Info("pprof listening", "addr", ln.Addr().String())
	return func() { srv.Close(); <-done; runtime.SetMutexProfileFraction(prevMutex) }, nil
}

// backend is the chosen log with the presence store and rate limiter that
// live beside it.
type backend struct {
	log      stream.Log
	presence stream.PresenceStore
	limits   stream.RateLimiter
}

// openLog picks the log: Redis Streams when a URL is configured (and not in
// dev mode), else the embedded log.
func openLog(ctx context.Context, cfg Config, logger *slog.Logger, m *metrics.Metrics) (backend, error) {
	if cfg.RedisURL == "" || cfg.Dev {
		if cfg.RedisURL != "" {
			logger.Warn("dev mode ignores REALTIME_REDIS_URL and uses the embedded log")
		}
		logger.Info("event log: embedded (in memory; history is lost on restart)", "retention", cfg.Retention)
		m := stream.NewMemory(stream.MemoryConfig{Retention: cfg.Retention, MaxWorkspaces: cfg.MaxWorkspaces})
		return backend{log: m, presence: m, limits: m}, nil
	}
	connectCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l, err := redisstream.New(connectCtx, redisstream.Config{
		URL: cfg.RedisURL, Cluster: cfg.RedisCluster, Prefix: cfg.RedisPrefix, Retention: cfg.Retention, Logger: logger, MaxWorkspaces: cfg.MaxWorkspaces,
		Hooks: []redis.Hook{m.RedisHook()},
	})
	if err != nil {
		return backend{}, fmt.Errorf("open redis log: %w", err)
	}
	logger.Info("event log: redis streams", "prefix", cfg.RedisPrefix, "retention", cfg.Retention)
	return backend{log: l, presence: l, limits: l}, nil
}

// issueDevToken mints the --dev token: user "dev", every workspace, may
// publish, valid a day.
func issueDevToken(secret []byte, cfg Config) (string, error) {
	return appmw.IssueToken(secret, appmw.TokenSpec{
		Subject: "dev", Workspaces: []string{"*"}, Scopes: []string{appmw.ScopePublish}, TTL: 24 * time.Hour,
		Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience,
	}, time.Now())
}

func printDevHelp(w io.Writer, tok string, addr net.Addr) {
	base := "http://" + displayAddr(addr)
	fmt.Fprintf(w, `
dev mode: embedded log. Open the dashboard (it signs itself in, with a simulate panel):

  %s/

This token is user "dev" on every workspace, valid 24h:

  export TOKEN=%s

  # watch a workspace
  curl -N -H "Authorization: Bearer $TOKEN" %s/v1/workspaces/demo/events/stream

  # publish to it
  curl -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"type":"chat.message","data":{"chatId":"general","id":"m1","text":"hello"}}' \
    %s/v1/workspaces/demo/events

`, base, tok, base, base)
}

// displayAddr turns a wildcard listen address into one a browser or curl
// can use.
func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || tcp.IP.IsUnspecified() {
		if ok {
			return fmt.Sprintf("localhost:%d", tcp.Port)
		}
	}
	return a.String()
}
