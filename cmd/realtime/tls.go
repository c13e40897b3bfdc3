package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
)

// protocols is what the listener speaks: HTTP/1 always; with TLS, HTTP/2
// by ALPN; without, cleartext HTTP/2 with prior knowledge (h2c) when
// enabled, for a proxy that speaks it to the backends. net/http tells the
// two apart by the client's connection preface, on the same port.
func protocols(cfg Config) *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	if cfg.TLSCert != "" {
		p.SetHTTP2(true)
	} else if cfg.H2C {
		p.SetUnencryptedHTTP2(true)
	}
	return &p
}

// tlsConfig loads the certificate and key when TLS is configured (nil
// otherwise), so that a bad file fails serve at start rather than at the
// first handshake.
func tlsConfig(cfg Config) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// startServing serves srv on ln, with TLS when srv.TLSConfig is set
// (ServeTLS adds h2 and http/1.1 to ALPN as srv.Protocols says). The
// returned channel gets what Serve returned.
func startServing(srv *http.Server, ln net.Listener) <-chan error {
	errc := make(chan error, 1)
	// Serve returns when Shutdown closes the listener.
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	return errc
}
