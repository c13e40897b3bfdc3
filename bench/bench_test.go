package bench_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/realtime-dev/realtime/bench"
	"github.com/realtime-dev/realtime/handlers"
	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var secret = []byte("bench-test-secret-bench-test-secret-01")

// server runs the service's handler on the embedded log over real HTTP.
func server(t *testing.T) string {
	t.Helper()
	return serverWith(t, nil)
}

// serverWith is server with the handler wrapped by wrap, when not nil.
func serverWith(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	// Every event a run publishes stays readable, however fast the run:
	// TestPublishBatch reads them all back (at the default 10,000 per
	// workspace, a fast run had its first batches trimmed).
	log := stream.NewMemory(stream.MemoryConfig{Retention: 1 << 20})
	v, err := appmw.NewVerifier(appmw.AuthConfig{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	streams, stop := context.WithCancel(context.Background())
	pres := stream.NewPresenceTracker(log, log, stream.PresenceConfig{})
	var h http.Handler = handlers.New(slog.New(slog.DiscardHandler), handlers.Config{}, log, pres, log, v, streams)
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		stop()
		srv.CloseClientConnections()
		srv.Close()
		pres.Close()
		log.Close()
	})
	return srv.URL
}

func tokens(t *testing.T) (sub, pub string) {
	t.Helper()
	mint := func(scopes ...string) string {
		tok, err := appmw.IssueToken(secret, appmw.TokenSpec{Subject: "bench", Workspaces: []string{"*"}, Scopes: scopes, TTL: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	return mint(), mint(appmw.ScopePublish)
}

// Each scenario, small, end to end: nothing missing, nothing repeated.
func TestScenarios(t *testing.T) {
	url := server(t)
	sub, pub := tokens(t)
	for _, cfg := range []bench.Config{
		{Mode: "steady", Subscribers: 40, Workspaces: 4, Rate: 200, Duration: time.Second},
		{Mode: "burst", Subscribers: 50, Bursts: 2, BurstGap: 100 * time.Millisecond},
		{Mode: "resume", Subscribers: 40, Workspaces: 4, Behind: 20},
		{Mode: "longpoll", Subscribers: 50},
	} {
		t.Run(cfg.Mode, func(t *testing.T) {
			cfg.URLs, cfg.Token, cfg.PubToken = []string{url}, sub, pub
			// One user per connection, as `realtime bench` runs by default.
			cfg.TokenFor = func(i int) string {
				tok, err := appmw.IssueToken(secret, appmw.TokenSpec{Subject: fmt.Sprintf("u%d", i), Workspaces: []string{"*"}, TTL: time.Hour}, time.Now())
				if err != nil {
					t.Error(err)
				}
				return tok
			}
			cfg.Settle = 100 * time.Millisecond
			cfg.Prefix = cfg.Mode // a workspace set of its own
			var out strings.Builder
			res, err := bench.Run(t.Context(), cfg, &out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			if res.Missing != 0 || res.Duplicates != 0 || res.Received == 0 || res.Received != res.Expected {
				t.Fatalf("result %+v\n%s", res, out.String())
			}
			io.WriteString(t.Output(), out.String())
		})
	}
}
