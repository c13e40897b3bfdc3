package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/realtime-dev/realtime/bench"
	appmw "github.com/realtime-dev/realtime/middleware"
)

// benchCmd runs a load scenario against a running service.
func benchCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var (
		cfg     bench.Config
		urls    string
		jsonOut string
	)
	fs := flag.NewFlagSet("realtime bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := getenv("REALTIME_URL")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	fs.StringVar(&urls, "url", def, "service base URL(s), comma-separated to spread subscribers over nodes (REALTIME_URL)")
	var shared bool
	// Tokens are not flag defaults, which -h would print.
	fs.StringVar(&cfg.Token, "token", "", "subscriber token covering every workspace, for --shared-user and head reads (default: REALTIME_TOKEN; minted when neither is set)")
	fs.BoolVar(&shared, "shared-user", false, "every subscriber uses --token, one user for all (a comparison: it hides per-user work such as presence)")
	fs.StringVar(&cfg.PubToken, "pub-token", "", "publisher token with events:publish (default: REALTIME_PUB_TOKEN)")
	fs.StringVar(&cfg.Mode, "mode", "steady", "steady, burst, resume, longpoll or publish")
	fs.StringVar(&cfg.Label, "label", "", "label for the result")
	fs.IntVar(&cfg.Subscribers, "n", 1000, "subscribers (or long polls)")
	fs.IntVar(&cfg.Workspaces, "w", 10, "workspaces (steady, resume; publish: 100 unless given)")
	fs.StringVar(&cfg.Prefix, "prefix", "ws", "workspace name prefix")
	fs.Float64Var(&cfg.Rate, "rate", 200, "events per second (steady)")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "publish phase (steady; publish: 10s unless given)")
	fs.IntVar(&cfg.Size, "size", 200, "event data size in bytes")
	fs.IntVar(&cfg.PubConns, "pub-conns", 4, "concurrent publishers")
	fs.IntVar(&cfg.ConnectConcurrency, "connect-concurrency", 200, "subscribers connecting at once")
	fs.DurationVar(&cfg.Settle, "settle", 2*time.Second, "pause between connecting and publishing")
	fs.IntVar(&cfg.Bursts, "bursts", 5, "bursts (burst)")
	fs.DurationVar(&cfg.BurstGap, "burst-gap", 2*time.Second, "pause between bursts (burst)")
	fs.IntVar(&cfg.Behind, "behind", 100, "events per workspace missed while away (resume)")
	fs.StringVar(&cfg.PID, "pid", "", "server pid(s), comma-separated: report RSS per connection and CPU per delivery")
	fs.StringVar(&cfg.RedisAddr, "redis", "", "Redis host:port: report the Redis commands the scenario cost")
	fs.StringVar(&jsonOut, "json-out", "", "append the JSON result to this file")
	fs.BoolVar(&cfg.HTTP2, "http2", false, "streams over HTTP/2 (h2c prior knowledge for http://, ALPN for https://), many per connection")
	fs.IntVar(&cfg.Conns, "c", 16, "keep-alive connections publishing as fast as they are answered (publish)")
	fs.IntVar(&cfg.Batch, "batch", 1, "events a request (publish): 1 posts to .../events, more to .../events/batch")
	fs.BoolVar(&cfg.NetHTTP, "net-http-client", false, "publish with net/http's client, as ../shared/pubload does, instead of bench's own lighter one (publish)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Token == "" {
		cfg.Token = getenv("REALTIME_TOKEN")
	}
	if cfg.PubToken == "" {
		cfg.PubToken = getenv("REALTIME_PUB_TOKEN")
	}
	if cfg.Mode == "publish" {
		// Publishing needs only the publisher's token; -w and --duration
		// default to the referee harness's 100 workspaces and 10 s.
		if cfg.PubToken == "" {
			return fmt.Errorf("--pub-token or REALTIME_PUB_TOKEN is required for --mode publish (realtime token --scope events:publish mints one)")
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["w"] {
			cfg.Workspaces = 100
		}
		if !set["duration"] {
			cfg.Duration = 10 * time.Second
		}
		shared = true
		if cfg.Token == "" {
			cfg.Token = cfg.PubToken
		}
	}
	cfg.URLs = strings.Split(urls, ",")
	// One user per connection unless asked otherwise: subscriber i is
	// user "u<i>", with a token signed by the service's key.
	secret := getenv("REALTIME_JWT_SECRET")
	if !shared {
		if secret == "" {
			return fmt.Errorf("REALTIME_JWT_SECRET is required to give each subscriber its own user (or pass --shared-user with --token)")
		}
		spec := func(sub string) appmw.TokenSpec {
			return appmw.TokenSpec{Subject: sub, Workspaces: []string{"*"}, TTL: 2 * time.Hour,
				Issuer: getenv("REALTIME_JWT_ISSUER"), Audience: getenv("REALTIME_JWT_AUDIENCE")}
		}
		now := time.Now()
		cfg.TokenFor = func(i int) string {
			tok, _ := appmw.IssueToken([]byte(secret), spec("u"+strconv.Itoa(i)), now)
			return tok
		}
		if cfg.Token == "" {
			cfg.Token = cfg.TokenFor(-1)
		}
	}
	if cfg.Token == "" || cfg.PubToken == "" {
		return fmt.Errorf("--token (with --shared-user) and --pub-token are required (realtime token mints them)")
	}
	res, err := bench.Run(ctx, cfg, stdout)
	if err != nil {
		return err
	}
	if jsonOut != "" {
		f, err := os.OpenFile(jsonOut, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		b, _ := json.Marshal(res)
		fmt.Fprintf(f, "%s\n", b)
	}
	if res.Mode == "publish" && res.Events == 0 {
		return fmt.Errorf("no publish succeeded (errors by status: %v)", res.ErrorsByStatus)
	}
	if res.Missing > 0 {
		return fmt.Errorf("%d deliveries missing", res.Missing)
	}
	return nil
}
