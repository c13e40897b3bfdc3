package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is everything `realtime serve` reads. Each field comes from an
// environment variable, and a flag of the same name mirrors it (the flag
// wins). The README's configuration table lists the same defaults as
// defaultConfig.
type Config struct {
	// Addr is the listen address (REALTIME_ADDR, --addr; ":8080").
	Addr string
	// RedisURL selects the Redis Streams log; empty means the embedded log
	// (REALTIME_REDIS_URL, --redis-url).
	RedisURL string
	// RedisCluster makes RedisURL a Redis Cluster, with seed nodes given as
	// redis://host1:port?addr=host2:port&addr=host3:port
	// (REALTIME_REDIS_CLUSTER, --redis-cluster; false).
	RedisCluster bool
	// RedisPrefix starts every Redis key (REALTIME_REDIS_PREFIX; "rt").
	RedisPrefix string
	// Retention is the events kept per workspace (REALTIME_RETENTION; 10000).
	Retention int
	// JWTSecret is the HS256 key, at least 32 bytes (REALTIME_JWT_SECRET);
	// required unless a JWKS or public keys are configured (or --dev).
	// Never logged.
	JWTSecret string
	// JWKSURL is the identity provider's JSON Web Key Set: RS*, PS*, ES*
	// and EdDSA tokens signed by its keys are accepted (REALTIME_JWKS_URL,
	// --jwks-url).
	JWKSURL string
	// JWKSRefresh is how often the JWKS is fetched again; an unknown kid
	// fetches it at once, at most once a minute (REALTIME_JWKS_REFRESH; 1h).
	JWKSRefresh time.Duration
	// JWTPublicKeys are PEM files of public keys tokens may be signed with
	// (REALTIME_JWT_PUBLIC_KEYS, --jwt-public-keys; comma-separated paths).
	JWTPublicKeys []string
	// JWTLeeway is the clock skew tolerated on exp and nbf; a stream lasts
	// until its token's exp plus it (REALTIME_JWT_LEEWAY; 30s).
	JWTLeeway time.Duration
	// AllowQueryToken accepts a token in the access_token query parameter
	// of GET routes, for curl and older clients (REALTIME_ALLOW_QUERY_TOKEN;
	// true). The bundled client uses stream tickets instead.
	AllowQueryToken bool
	// TicketTTL is how long a stream ticket may wait to be used
	// (REALTIME_TICKET_TTL; 30s, at most 5m).
	TicketTTL time.Duration
	// JWTIssuer, when set, is required as the tokens' iss (REALTIME_JWT_ISSUER).
	JWTIssuer string
	// JWTAudience, when set, is required in the tokens' aud (REALTIME_JWT_AUDIENCE).
	JWTAudience string
	// Heartbeat is the idle time after which a stream sends a heartbeat
	// (REALTIME_HEARTBEAT; 15s).
	Heartbeat time.Duration
	// Retry is the reconnection delay streams advise (REALTIME_RETRY; 3s).
	Retry time.Duration
	// WriteTimeout bounds each write to a stream (REALTIME_WRITE_TIMEOUT; 5s).
	WriteTimeout time.Duration
	// Queue bounds each stream's backlog, in events (REALTIME_QUEUE; 256).
	Queue int
	// MaxWait caps long polls (REALTIME_MAX_WAIT; 30s, at most 30s).
	MaxWait time.Duration
	// PublishRate is the publishes per second allowed per workspace, shared
	// by all nodes; 0 disables the limit (REALTIME_PUBLISH_RATE; 1000).
	PublishRate float64
	// PublishBurst is how many publishes a workspace may make at once
	// (REALTIME_PUBLISH_BURST; twice the rate).
	PublishBurst int
	// MaxStreamsPerUser caps the streams and long polls one user holds on
	// one node; 0: no cap (REALTIME_MAX_STREAMS_PER_USER; 0).
	MaxStreamsPerUser int
	// MaxWorkspaces caps the workspaces one node follows live at once; 0:
	// no cap (REALTIME_MAX_WORKSPACES; 0).
	MaxWorkspaces int
	// PresenceTTL is how long an explicit presence status lasts unless set
	// again (REALTIME_PRESENCE_TTL; 60s).
	PresenceTTL time.Duration
	// PresenceGrace is how long a user stays online after their last stream
	// closes (REALTIME_PRESENCE_GRACE; 5s).
	PresenceGrace time.Duration
	// TypingTTL is how long "typing" lasts unless sent again (REALTIME_TYPING_TTL; 5s).
	TypingTTL time.Duration
	// PresenceInterval is the coalescing window of presence changes: a
	// node announces a workspace's changes at most once per interval, in
	// one presence.changed event (REALTIME_PRESENCE_INTERVAL; 500ms).
	PresenceInterval time.Duration
	// PresenceRate is the presence and typing changes per second allowed
	// to one user in one workspace, shared by all nodes; 0 disables the
	// limit (REALTIME_PRESENCE_RATE; 2).
	PresenceRate float64
	// PresenceBurst is how many such changes a user may make at once
	// (REALTIME_PRESENCE_BURST; 10).
	PresenceBurst int
	// TicketRate is the stream tickets per second one user may buy, shared
	// by all nodes, with a burst of three seconds' worth; 0 disables the
	// limit (REALTIME_TICKET_RATE; 10).
	TicketRate float64
	// IdempotencyTTL is how long a publish's Idempotency-Key is remembered
	// (REALTIME_IDEMPOTENCY_TTL; 24h).
	IdempotencyTTL time.Duration
	// BusStream, when set, bridges that Redis stream of BaseEvents into the
	// workspace logs (REALTIME_BUS_STREAM; needs REALTIME_REDIS_URL).
	BusStream string
	// BusGroup is the consumer group the nodes share (REALTIME_BUS_GROUP; "realtime").
	BusGroup string
	// BusDeadLetter receives entries that cannot be bridged
	// (REALTIME_BUS_DEAD_LETTER; "<stream>:dead").
	BusDeadLetter string
	// BusLease bounds how long the bridge stalls when its node dies
	// (REALTIME_BUS_LEASE; 10s).
	BusLease time.Duration
	// DebugAddr, when set, serves net/http/pprof there, on its own listener
	// so it is never exposed with the API (REALTIME_DEBUG_ADDR; off).
	DebugAddr string
	// ShutdownTimeout bounds the graceful shutdown (REALTIME_SHUTDOWN_TIMEOUT; 15s).
	ShutdownTimeout time.Duration
	// LogLevel is debug, info, warn or error (REALTIME_LOG_LEVEL; info).
	LogLevel slog.Level
	// TLSCert and TLSKey, both set, make the listener TLS (PEM files),
	// with HTTP/2 negotiated by ALPN (REALTIME_TLS_CERT, REALTIME_TLS_KEY).
	TLSCert, TLSKey string
	// H2C accepts cleartext HTTP/2 with prior knowledge beside HTTP/1 on a
	// listener without TLS, for a proxy that speaks it (REALTIME_H2C; true).
	H2C bool
	// DrainDelay is how long, on SIGTERM, readiness answers 503 while the
	// listener still serves, before streams are told to leave: the time a
	// load balancer takes to stop sending new requests (REALTIME_DRAIN_DELAY;
	// 5s, 0 under --dev).
	DrainDelay time.Duration
	// ReadTimeout bounds reading a request's headers, and its body from
	// the moment its handler starts (REALTIME_READ_TIMEOUT; 10s).
	ReadTimeout time.Duration
	// CORSOrigins lists the exact origins (scheme://host[:port]) whose pages
	// may call the API and load the client script, or "*" for any origin
	// without credentials (REALTIME_CORS_ORIGINS; empty: no CORS).
	CORSOrigins []string
	// Dev runs with the embedded log and a key of its own (a configured
	// REALTIME_JWT_SECRET is ignored), on loopback unless an address is
	// given, and prints a ready-to-use token (REALTIME_DEV, --dev; false).
	Dev bool
}

func defaultConfig() Config {
	return Config{
		Addr: ":8080", RedisPrefix: "rt", Retention: 10000,
		JWKSRefresh: time.Hour, JWTLeeway: 30 * time.Second, AllowQueryToken: true, TicketTTL: 30 * time.Second,
		Heartbeat: 15 * time.Second, Retry: 3 * time.Second, WriteTimeout: 5 * time.Second,
		Queue: 256, MaxWait: 30 * time.Second, IdempotencyTTL: 24 * time.Hour, PublishRate: 1000, PresenceTTL: time.Minute, PresenceGrace: 5 * time.Second, TypingTTL: 5 * time.Second,
		PresenceInterval: 500 * time.Millisecond, PresenceRate: 2, PresenceBurst: 10, TicketRate: 10, BusGroup: "realtime", BusLease: 10 * time.Second, ShutdownTimeout: 15 * time.Second, LogLevel: slog.LevelInfo,
		H2C: true, DrainDelay: 5 * time.Second, ReadTimeout: 10 * time.Second,
	}
}

// LogValue keeps the secret out of logs.
func (c Config) LogValue() slog.Value {
	backend := "embedded"
	if c.RedisURL != "" && !c.Dev {
		backend = "redis"
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr), slog.String("log", backend), slog.Bool("redis_cluster", c.RedisCluster), slog.String("redis_prefix", c.RedisPrefix),
		slog.Int("retention", c.Retention), slog.Bool("jwt_secret_set", c.JWTSecret != ""),
		slog.String("jwt_issuer", c.JWTIssuer), slog.String("jwt_audience", c.JWTAudience),
		slog.String("jwks_url", redactedURL(c.JWKSURL)), slog.String("jwks_refresh", c.JWKSRefresh.String()), slog.Any("jwt_public_keys", c.JWTPublicKeys),
		slog.String("jwt_leeway", c.JWTLeeway.String()), slog.Bool("allow_query_token", c.AllowQueryToken), slog.String("ticket_ttl", c.TicketTTL.String()),
		slog.String("heartbeat", c.Heartbeat.String()), slog.String("retry", c.Retry.String()),
		slog.String("write_timeout", c.WriteTimeout.String()), slog.Int("queue", c.Queue),
		slog.String("max_wait", c.MaxWait.String()), slog.String("idempotency_ttl", c.IdempotencyTTL.String()), slog.String("shutdown_timeout", c.ShutdownTimeout.String()),
		slog.Float64("publish_rate", c.PublishRate), slog.Int("publish_burst", c.PublishBurst),
		slog.String("presence_interval", c.PresenceInterval.String()), slog.Float64("presence_rate", c.PresenceRate), slog.Int("presence_burst", c.PresenceBurst), slog.Float64("ticket_rate", c.TicketRate),
		slog.Int("max_streams_per_user", c.MaxStreamsPerUser), slog.Int("max_workspaces", c.MaxWorkspaces),
		slog.String("debug_addr", c.DebugAddr), slog.String("bus_stream", c.BusStream), slog.String("bus_group", c.BusGroup),
		slog.Bool("tls", c.TLSCert != ""), slog.Bool("h2c", c.H2C), slog.String("drain_delay", c.DrainDelay.String()),
		slog.String("read_timeout", c.ReadTimeout.String()), slog.Any("cors_origins", c.CORSOrigins),
		slog.Bool("dev", c.Dev),
	)
}

// redactedURL hides a password in u, if it has one.
func redactedURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable)"
	}
	return p.Redacted()
}

// parseConfig reads the environment, then flags, and reports every problem
// at once.
func parseConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := defaultConfig()
	var problems []string
	env := func(key string) (string, bool) {
		v := getenv(key)
		return v, v != ""
	}
	envDur := func(key string, dst *time.Duration) {
		if v, ok := env(key); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", key, err))
				return
			}
			*dst = d
		}
	}
	envBool := func(key string, dst *bool) {
		if v, ok := env(key); ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: not a boolean: %q", key, v))
				return
			}
			*dst = b
		}
	}
	envInt := func(key string, dst *int) {
		if v, ok := env(key); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: not an integer: %q", key, v))
				return
			}
			*dst = n
		}
	}
	envFloat := func(key string, dst *float64) {
		if v, ok := env(key); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: not a number: %q", key, v))
				return
			}
			*dst = f
		}
	}
	if v, ok := env("REALTIME_ADDR"); ok {
		c.Addr = v
	}
	c.RedisURL = getenv("REALTIME_REDIS_URL")
	envBool("REALTIME_REDIS_CLUSTER", &c.RedisCluster)
	if v, ok := env("REALTIME_REDIS_PREFIX"); ok {
		c.RedisPrefix = v
	}
	envInt("REALTIME_RETENTION", &c.Retention)
	c.JWTSecret = getenv("REALTIME_JWT_SECRET")
	c.JWKSURL = getenv("REALTIME_JWKS_URL")
	envDur("REALTIME_JWKS_REFRESH", &c.JWKSRefresh)
	keys := stringList{}
	keys.Set(getenv("REALTIME_JWT_PUBLIC_KEYS"))
	envDur("REALTIME_JWT_LEEWAY", &c.JWTLeeway)
	envBool("REALTIME_ALLOW_QUERY_TOKEN", &c.AllowQueryToken)
	envDur("REALTIME_TICKET_TTL", &c.TicketTTL)
	c.JWTIssuer = getenv("REALTIME_JWT_ISSUER")
	c.JWTAudience = getenv("REALTIME_JWT_AUDIENCE")
	envDur("REALTIME_HEARTBEAT", &c.Heartbeat)
	envDur("REALTIME_RETRY", &c.Retry)
	envDur("REALTIME_WRITE_TIMEOUT", &c.WriteTimeout)
	envInt("REALTIME_QUEUE", &c.Queue)
	envDur("REALTIME_MAX_WAIT", &c.MaxWait)
	envDur("REALTIME_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	envDur("REALTIME_IDEMPOTENCY_TTL", &c.IdempotencyTTL)
	envFloat("REALTIME_PUBLISH_RATE", &c.PublishRate)
	envInt("REALTIME_PUBLISH_BURST", &c.PublishBurst)
	envDur("REALTIME_PRESENCE_TTL", &c.PresenceTTL)
	envDur("REALTIME_PRESENCE_GRACE", &c.PresenceGrace)
	envDur("REALTIME_TYPING_TTL", &c.TypingTTL)
	envDur("REALTIME_PRESENCE_INTERVAL", &c.PresenceInterval)
	envFloat("REALTIME_PRESENCE_RATE", &c.PresenceRate)
	envInt("REALTIME_PRESENCE_BURST", &c.PresenceBurst)
	envFloat("REALTIME_TICKET_RATE", &c.TicketRate)
	envInt("REALTIME_MAX_STREAMS_PER_USER", &c.MaxStreamsPerUser)
	envInt("REALTIME_MAX_WORKSPACES", &c.MaxWorkspaces)
	c.DebugAddr = getenv("REALTIME_DEBUG_ADDR")
	c.BusStream = getenv("REALTIME_BUS_STREAM")
	if v, ok := env("REALTIME_BUS_GROUP"); ok {
		c.BusGroup = v
	}
	c.BusDeadLetter = getenv("REALTIME_BUS_DEAD_LETTER")
	envDur("REALTIME_BUS_LEASE", &c.BusLease)
	level := strings.ToLower(getenv("REALTIME_LOG_LEVEL"))
	envBool("REALTIME_DEV", &c.Dev)
	c.TLSCert, c.TLSKey = getenv("REALTIME_TLS_CERT"), getenv("REALTIME_TLS_KEY")
	envBool("REALTIME_H2C", &c.H2C)
	envDur("REALTIME_DRAIN_DELAY", &c.DrainDelay)
	envDur("REALTIME_READ_TIMEOUT", &c.ReadTimeout)
	cors := getenv("REALTIME_CORS_ORIGINS")

	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: %s [flags]

Every flag mirrors the environment variable in its help (the flag wins).
Set only in the environment, never by a flag (it would show in ps and
shell history):
  REALTIME_JWT_SECRET   the HS256 key tokens are signed with, at least 32
                        bytes; required unless --dev, --jwks-url or
                        --jwt-public-keys

flags:
`, name)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address (REALTIME_ADDR)")
	// Not the flag's default, which -h prints: a Redis URL may hold a
	// password.
	envRedisURL := c.RedisURL
	fs.StringVar(&c.RedisURL, "redis-url", "", "Redis URL; empty: embedded log (default: REALTIME_REDIS_URL)")
	fs.BoolVar(&c.RedisCluster, "redis-cluster", c.RedisCluster, "the Redis URL names a Redis Cluster (REALTIME_REDIS_CLUSTER)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", c.RedisPrefix, "Redis key prefix (REALTIME_REDIS_PREFIX)")
	fs.IntVar(&c.Retention, "retention", c.Retention, "events kept per workspace (REALTIME_RETENTION)")
	fs.StringVar(&c.JWKSURL, "jwks-url", c.JWKSURL, "JWKS of the identity provider (REALTIME_JWKS_URL)")
	fs.DurationVar(&c.JWKSRefresh, "jwks-refresh", c.JWKSRefresh, "how often the JWKS is fetched again (REALTIME_JWKS_REFRESH)")
	var flagKeys stringList
	fs.Var(&flagKeys, "jwt-public-keys", "PEM files of token public keys, comma-separated (REALTIME_JWT_PUBLIC_KEYS)")
	fs.DurationVar(&c.JWTLeeway, "jwt-leeway", c.JWTLeeway, "clock skew tolerated on exp and nbf (REALTIME_JWT_LEEWAY)")
	fs.BoolVar(&c.AllowQueryToken, "allow-query-token", c.AllowQueryToken, "accept ?access_token= on GET routes (REALTIME_ALLOW_QUERY_TOKEN)")
	fs.DurationVar(&c.TicketTTL, "ticket-ttl", c.TicketTTL, "how long a stream ticket may wait to be used (REALTIME_TICKET_TTL)")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", c.JWTIssuer, "required iss (REALTIME_JWT_ISSUER)")
	fs.StringVar(&c.JWTAudience, "jwt-audience", c.JWTAudience, "required aud (REALTIME_JWT_AUDIENCE)")
	fs.DurationVar(&c.Heartbeat, "heartbeat", c.Heartbeat, "stream heartbeat interval (REALTIME_HEARTBEAT)")
	fs.DurationVar(&c.Retry, "retry", c.Retry, "reconnection delay advised to streams (REALTIME_RETRY)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "bound on each stream write (REALTIME_WRITE_TIMEOUT)")
	fs.IntVar(&c.Queue, "queue", c.Queue, "events a stream may fall behind before it is closed (REALTIME_QUEUE)")
	fs.DurationVar(&c.MaxWait, "max-wait", c.MaxWait, "longest long poll (REALTIME_MAX_WAIT)")
	fs.Float64Var(&c.PublishRate, "publish-rate", c.PublishRate, "publishes per second per workspace, 0: no limit (REALTIME_PUBLISH_RATE)")
	fs.IntVar(&c.PublishBurst, "publish-burst", c.PublishBurst, "publish burst per workspace; 0: twice the rate (REALTIME_PUBLISH_BURST)")
	fs.IntVar(&c.MaxStreamsPerUser, "max-streams-per-user", c.MaxStreamsPerUser, "streams and long polls per user per node, 0: no cap (REALTIME_MAX_STREAMS_PER_USER)")
	fs.IntVar(&c.MaxWorkspaces, "max-workspaces", c.MaxWorkspaces, "workspaces one node follows live, 0: no cap (REALTIME_MAX_WORKSPACES)")
	fs.DurationVar(&c.PresenceTTL, "presence-ttl", c.PresenceTTL, "explicit presence lifetime (REALTIME_PRESENCE_TTL)")
	fs.DurationVar(&c.PresenceGrace, "presence-grace", c.PresenceGrace, "online after the last stream closes (REALTIME_PRESENCE_GRACE)")
	fs.DurationVar(&c.TypingTTL, "typing-ttl", c.TypingTTL, "typing lifetime (REALTIME_TYPING_TTL)")
	fs.DurationVar(&c.PresenceInterval, "presence-interval", c.PresenceInterval, "coalescing window of presence changes (REALTIME_PRESENCE_INTERVAL)")
	fs.Float64Var(&c.PresenceRate, "presence-rate", c.PresenceRate, "presence and typing changes per second per user, 0: no limit (REALTIME_PRESENCE_RATE)")
	fs.IntVar(&c.PresenceBurst, "presence-burst", c.PresenceBurst, "presence and typing burst per user (REALTIME_PRESENCE_BURST)")
	fs.Float64Var(&c.TicketRate, "ticket-rate", c.TicketRate, "stream tickets per second per user, 0: no limit (REALTIME_TICKET_RATE)")
	fs.DurationVar(&c.IdempotencyTTL, "idempotency-ttl", c.IdempotencyTTL, "how long an Idempotency-Key is remembered (REALTIME_IDEMPOTENCY_TTL)")
	fs.StringVar(&c.DebugAddr, "debug-addr", c.DebugAddr, "serve pprof here, e.g. 127.0.0.1:6060 (REALTIME_DEBUG_ADDR)")
	fs.StringVar(&c.BusStream, "bus-stream", c.BusStream, "Event Bus stream to bridge (REALTIME_BUS_STREAM)")
	fs.StringVar(&c.BusGroup, "bus-group", c.BusGroup, "consumer group of the bridge (REALTIME_BUS_GROUP)")
	fs.StringVar(&c.BusDeadLetter, "bus-dead-letter", c.BusDeadLetter, "dead-letter stream (REALTIME_BUS_DEAD_LETTER)")
	fs.DurationVar(&c.BusLease, "bus-lease", c.BusLease, "bridge lease (REALTIME_BUS_LEASE)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "graceful shutdown bound (REALTIME_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&level, "log-level", level, "debug, info, warn or error (REALTIME_LOG_LEVEL)")
	fs.BoolVar(&c.Dev, "dev", c.Dev, "embedded log, a key of its own, loopback unless --addr or REALTIME_ADDR says otherwise, print a dev token (REALTIME_DEV)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "TLS certificate chain, PEM; with --tls-key: HTTPS and HTTP/2 (REALTIME_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "TLS private key file, PEM (REALTIME_TLS_KEY)")
	fs.BoolVar(&c.H2C, "h2c", c.H2C, "accept cleartext HTTP/2 (prior knowledge) without TLS (REALTIME_H2C)")
	fs.DurationVar(&c.DrainDelay, "drain-delay", c.DrainDelay, "on SIGTERM, readiness 503 while still serving this long; 0 under --dev unless set (REALTIME_DRAIN_DELAY)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", c.ReadTimeout, "bound on reading request headers, and a body (REALTIME_READ_TIMEOUT)")
	fs.StringVar(&cors, "cors-origins", cors, "comma-separated origins allowed by CORS, or * (REALTIME_CORS_ORIGINS)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	redisURLSet := false
	fs.Visit(func(f *flag.Flag) { redisURLSet = redisURLSet || f.Name == "redis-url" })
	if !redisURLSet {
		c.RedisURL = envRedisURL
	}
	c.JWTPublicKeys = keys
	if len(flagKeys) > 0 {
		c.JWTPublicKeys = flagKeys
	}
	problems = append(problems, c.finishServing(cors, getenv, fs)...)
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments: %q", fs.Args()))
	}
	if level != "" {
		if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
			problems = append(problems, fmt.Sprintf("log level: %q is not debug, info, warn or error", level))
		}
	}
	switch {
	case c.JWTSecret == "" && !c.Dev && c.JWKSURL == "" && len(c.JWTPublicKeys) == 0:
		problems = append(problems, "a key to verify tokens with is required: REALTIME_JWT_SECRET (HS256), REALTIME_JWKS_URL or REALTIME_JWT_PUBLIC_KEYS (or run with --dev)")
	case c.JWTSecret != "" && len(c.JWTSecret) < minSecret:
		problems = append(problems, "REALTIME_JWT_SECRET must be at least 32 bytes")
	}
	if c.PublishBurst <= 0 {
		c.PublishBurst = max(1, int(2*c.PublishRate))
	}
	if c.PublishRate < 0 || c.MaxStreamsPerUser < 0 || c.MaxWorkspaces < 0 || c.PresenceRate < 0 || c.TicketRate < 0 {
		problems = append(problems, "publish rate, presence rate, ticket rate, max streams per user and max workspaces must not be negative")
	}
	if c.PresenceRate > 0 && c.PresenceBurst < 1 {
		problems = append(problems, "presence burst must be at least 1")
	}
	if c.Retention < 1 {
		problems = append(problems, "retention must be at least 1")
	}
	if c.Queue < 1 {
		problems = append(problems, "queue must be at least 1")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"heartbeat", c.Heartbeat}, {"retry", c.Retry}, {"write timeout", c.WriteTimeout}, {"max wait", c.MaxWait}, {"shutdown timeout", c.ShutdownTimeout}, {"idempotency ttl", c.IdempotencyTTL}, {"bus lease", c.BusLease}, {"jwks refresh", c.JWKSRefresh}, {"ticket ttl", c.TicketTTL},
		{"read timeout", c.ReadTimeout}, {"presence ttl", c.PresenceTTL}, {"presence grace", c.PresenceGrace}, {"typing ttl", c.TypingTTL}, {"presence interval", c.PresenceInterval}} {
		if d.v <= 0 {
			problems = append(problems, d.name+" must be positive")
		}
	}
	if c.BusStream != "" && (c.RedisURL == "" || c.Dev) {
		problems = append(problems, "REALTIME_BUS_STREAM needs REALTIME_REDIS_URL (the bus lives in Redis), and no --dev")
	}
	if c.JWTLeeway < 0 || c.JWTLeeway > 5*time.Minute {
		problems = append(problems, "jwt leeway must be between 0 and 5m")
	}
	if c.TicketTTL > 5*time.Minute {
		problems = append(problems, "ticket ttl must be at most 5m (a ticket is meant to be used at once)")
	}
	if c.MaxWait > 30*time.Second {
		problems = append(problems, "max wait must be at most 30s")
	}
	if len(problems) > 0 {
		return Config{}, errors.New("bad configuration:\n  " + strings.Join(problems, "\n  "))
	}
	return c, nil
}
