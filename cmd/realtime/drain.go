package main

import (
	"log/slog"
	"net/http"
	"time"
)

// drainDelay is the first part of a graceful stop, before Shutdown: the
// node says it is not ready (draining closes, /readyz answers 503), stops
// keeping connections alive so that clients and proxies open their next
// ones elsewhere, and goes on serving for delay, which is how long a load
// balancer (a Kubernetes Service's endpoints, a proxy's health check) takes
// to notice and send new requests to other nodes. Streams and long polls
// carry on meanwhile; they are told to leave when Shutdown runs. It
// returns early if the server stops by itself (errc).
func drainDelay(srv *http.Server, draining chan<- struct{}, delay time.Duration, errc <-chan error, logger *slog.Logger) (early error, stopped bool) {
	close(draining)
	srv.SetKeepAlivesEnabled(false)
	logger.Info("draining: readiness is 503, still serving", "drain_delay", delay.String())
	if delay <= 0 {
		return nil, false
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil, false
	case err := <-errc:
		return err, true
	}
}
