package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appmw "github.com/realtime-dev/realtime/middleware"
)

// selfSigned writes a certificate for 127.0.0.1 and localhost and its key
// to dir, and returns their paths and a pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "realtime test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// startH2Node starts a node reached over HTTP/2: "h2c" (cleartext, prior
// knowledge) or "tls" (HTTPS, h2 by ALPN). Its requests go through a client
// that speaks only HTTP/2, so a fallback to HTTP/1 would fail them.
func startH2Node(t *testing.T, mode string, env map[string]string) *node {
	t.Helper()
	full := map[string]string{}
	for k, v := range env {
		full[k] = v
	}
	tr := &http.Transport{Protocols: new(http.Protocols)}
	switch mode {
	case "h2c":
		tr.Protocols.SetUnencryptedHTTP2(true)
	case "tls":
		cert, key, pool := selfSigned(t, t.TempDir())
		full["REALTIME_TLS_CERT"], full["REALTIME_TLS_KEY"] = cert, key
		tr.Protocols.SetHTTP2(true)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	default:
		t.Fatalf("mode %q", mode)
	}
	n := startNode(t, full)
	if mode == "tls" {
		n.URL = "https://" + strings.TrimPrefix(n.URL, "http://")
	}
	clients.Store(n.URL, &http.Client{Transport: tr})
	t.Cleanup(func() { clients.Delete(n.URL); tr.CloseIdleConnections() })
	return n
}

// The stream route keeps its guarantees on HTTP/2, cleartext and over TLS:
// resume by header, reset on a lost cursor, heartbeats, the end at the
// token's expiry, and the drain's come-back hint.
func TestStreamOverHTTP2(t *testing.T) {
	for _, mode := range []string{"h2c", "tls"} {
		t.Run(mode, func(t *testing.T) {
			n := startH2Node(t, mode, map[string]string{"REALTIME_HEARTBEAT": "300ms", "REALTIME_RETENTION": "5"})
			tok := token(t, "u1", []string{"ws1"})

			// Live, then resume by Last-Event-ID from the middle.
			s := n.openStream(t, "ws1", tok, "")
			if s.resp.ProtoMajor != 2 {
				t.Fatalf("stream over %s is %s; want HTTP/2", mode, s.resp.Proto)
			}
			s.first(t)
			ids := n.publishN(t, "ws1", 3)
			if got := frameIDs(s.events(t, 3)); strings.Join(got, ",") != strings.Join(ids, ",") {
				t.Fatalf("live events %v; want %v", got, ids)
			}
			r := n.openStream(t, "ws1", tok, "", "Last-Event-ID", ids[0])
			if got := frameIDs(r.events(t, 2)); strings.Join(got, ",") != strings.Join(ids[1:], ",") {
				t.Fatalf("resumed events %v; want %v", got, ids[1:])
			}
			r.close()

			// Heartbeats on a quiet stream.
			for {
				f, ok := s.next(t)
				if !ok {
					t.Fatal("stream ended before a heartbeat")
				}
				if f.Event == "heartbeat" {
					break
				}
			}

			// A cursor trimmed away: sync.reset.
			n.publishN(t, "ws1", 10)
			gone := n.openStream(t, "ws1", tok, "", "Last-Event-ID", ids[0])
			gone.first(t)
			for {
				f, ok := gone.next(t)
				if !ok {
					t.Fatal("stream ended before sync.reset")
				}
				if f.Event == "sync.reset" {
					break
				}
			}
			gone.close()

			// A token inside the verifier's 30 s leeway past exp, with more
			// than the 5 s minimum left, opens a stream that ends at exp
			// plus the leeway with a retry: hint and auth.expired.
			old, err := appmw.IssueToken([]byte(testSecret), appmw.TokenSpec{Subject: "u1", Workspaces: []string{"ws1"}, TTL: -23 * time.Second}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			exp := n.openStream(t, "ws1", old, "")
			exp.first(t)
			var hinted, expired bool
			for {
				f, ok := exp.next(t)
				if !ok {
					break // ended at the token's expiry
				}
				hinted = hinted || f.Retry != ""
				expired = expired || f.Event == "auth.expired"
			}
			if !hinted || !expired {
				t.Fatalf("expired stream: retry hint %v, auth.expired %v; want both", hinted, expired)
			}

			// The drain tells the stream to come back, and ends it.
			if err := n.stop(); err != nil {
				t.Fatalf("stop: %v", err)
			}
			for {
				f, ok := s.next(t)
				if !ok {
					t.Fatal("stream ended without the drain's retry hint")
				}
				if f.Retry != "" && f.Event == "" {
					break
				}
			}
			if f, ok := s.next(t); ok {
				t.Fatalf("stream sent %+v after the drain hint; want the end", f)
			}
		})
	}
}

// curl --http2-prior-knowledge streams from the cleartext listener.
func TestCurlHTTP2PriorKnowledge(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl not found")
		}
		t.Skip("curl not found")
	}
	n := startNode(t, nil)
	tok := token(t, "u1", []string{"ws1"})
	cmd := exec.CommandContext(t.Context(), curl, "-sN", "--http2-prior-knowledge", "-w", "", "-H", "Authorization: Bearer "+tok, "-D", "-",
		n.URL+"/v1/workspaces/ws1/events/stream")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	var head []string
	published := false
	for sc.Scan() {
		line := sc.Text()
		head = append(head, line)
		if strings.HasPrefix(line, "event: ready") && !published {
			n.publish(t, "ws1", chat(1))
			published = true
		}
		if strings.HasPrefix(line, "event: chat.message") {
			break
		}
	}
	if len(head) == 0 || !strings.HasPrefix(head[0], "HTTP/2 200") {
		t.Fatalf("curl --http2-prior-knowledge got %q; want HTTP/2 200 and the event", head)
	}
	if !published {
		t.Fatalf("no ready event over h2c: %q", head)
	}
}

// On HTTP/2 a client that stops reading is cut REALTIME_WRITE_TIMEOUT
// after a write blocked on it, and a reading stream that idles for longer
// than that is not.
func TestStalledHTTP2StreamIsCut(t *testing.T) {
	n := startH2Node(t, "h2c", map[string]string{"REALTIME_WRITE_TIMEOUT": "500ms", "REALTIME_HEARTBEAT": "1500ms"})
	// The stalled client's window: 64 KiB, which a few padded events fill.
	tr := &http.Transport{Protocols: new(http.Protocols), HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10}}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	tok := token(t, "u1", []string{"ws1"})
	req, _ := http.NewRequestWithContext(t.Context(), "GET", n.URL+"/v1/workspaces/ws1/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Transport: contractTransport{base: tr, c: theContract()}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close() // never read

	reader := n.openStream(t, "ws1", tok, "")
	reader.first(t)
	pad := strings.Repeat("p", 16<<10)
	for i := range 8 {
		n.publish(t, "ws1", `{"type":"chat.message","data":{"chatId":"c","id":"m`+strconv.Itoa(i)+`","text":"`+pad+`"}}`)
	}
	reader.events(t, 8)
	waitFor(t, func() bool { return strings.Contains(n.stderr.String(), "stream write failed") })
	if strings.Contains(n.stderr.String(), "subscriber too slow") {
		t.Fatal("the stalled stream overflowed its queue; this test wants it cut by the write timeout")
	}
	// The reader idles past the write timeout (no write in progress is
	// not a stalled write), then gets a heartbeat and an event.
	time.Sleep(time.Second)
	for f, ok := reader.next(t); f.Event != "heartbeat"; f, ok = reader.next(t) {
		if !ok {
			t.Fatal("the idle reading stream was cut")
		}
	}
	id := n.publish(t, "ws1", chat(9)).ID
	if got := frameIDs(reader.events(t, 1)); got[0] != id {
		t.Fatalf("after idling: %v; want %s", got, id)
	}
	if c := strings.Count(n.stderr.String(), "stream write failed"); c != 1 {
		t.Fatalf("%d streams cut; want only the stalled one", c)
	}
}
