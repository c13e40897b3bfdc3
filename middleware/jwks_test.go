package middleware_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/realtime-dev/realtime/middleware"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid, alg string, k *rsa.PublicKey) map[string]string {
	m := map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	if alg != "" {
		m["alg"] = alg
	}
	return m
}

func ecJWK(kid string, k *ecdsa.PublicKey) map[string]string {
	b, err := k.Bytes() // uncompressed point: 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	n := (len(b) - 1) / 2
	return map[string]string{"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256", "x": b64(b[1 : 1+n]), "y": b64(b[1+n:])}
}

// jwksServer serves a key set the test can swap, and counts its fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []map[string]string
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, keys ...map[string]string) *jwksServer {
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		b, _ := json.Marshal(map[string]any{"keys": s.keys})
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(keys ...map[string]string) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

func sign(t *testing.T, m jwt.SigningMethod, kid string, key any, sub string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, middleware.Claims{
		Workspaces: []string{"w"},
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
		},
	})
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newVerifier(t *testing.T, cfg middleware.AuthConfig) *middleware.Verifier {
	t.Helper()
	v, err := middleware.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func TestJWKS(t *testing.T) {
	r1, _ := rsa.GenerateKey(rand.Reader, 2048)
	r2, _ := rsa.GenerateKey(rand.Reader, 2048)
	e1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := newJWKSServer(t, rsaJWK("r1", "RS256", &r1.PublicKey), ecJWK("e1", &e1.PublicKey))
	secret := []byte("jwks-test-secret-jwks-test-secret-0123")
	v := newVerifier(t, middleware.AuthConfig{Secret: secret, JWKSURL: srv.URL, JWKSMissInterval: time.Hour})
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at start; want 1", n)
	}
	accept := func(what, tok, sub string) {
		t.Helper()
		p, err := v.Verify(tok)
		if err != nil || p.UserID != sub {
			t.Fatalf("%s: %+v, %v; want accepted as %s", what, p, err, sub)
		}
	}
	refuse := func(what, tok string) {
		t.Helper()
		if p, err := v.Verify(tok); err == nil {
			t.Fatalf("%s: accepted as %+v; want refused", what, p)
		}
	}
	accept("RS256", sign(t, jwt.SigningMethodRS256, "r1", r1, "rsa-user"), "rsa-user")
	accept("ES256", sign(t, jwt.SigningMethodES256, "e1", e1, "ec-user"), "ec-user")
	// The service's own HS256 tokens keep working beside the JWKS.
	hs, _ := middleware.IssueToken(secret, middleware.TokenSpec{Subject: "dev", Workspaces: []string{"*"}, TTL: time.Minute}, time.Now())
	accept("HS256 with the secret", hs, "dev")
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches after known kids; want 1 (cached)", n)
	}

	// The provider rotates to r2: the first token naming it refreshes the set.
	srv.set(rsaJWK("r2", "", &r2.PublicKey), ecJWK("e1", &e1.PublicKey))
	accept("RS256 with a rotated key", sign(t, jwt.SigningMethodRS256, "r2", r2, "rotated"), "rotated")
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after a kid miss; want 2", n)
	}
	// Another unknown kid within the bound does not fetch again.
	refuse("unknown kid", sign(t, jwt.SigningMethodRS256, "nope", r2, "x"))
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after a second miss; want still 2 (at most one refresh per interval)", n)
	}

	// Algorithm confusion: the RSA public key's bytes as an HMAC secret.
	pub, _ := x509.MarshalPKIXPublicKey(&r2.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	for _, k := range [][]byte{pubPEM, pub, r2.PublicKey.N.Bytes()} {
		refuse("HS256 signed with the RSA public key", sign(t, jwt.SigningMethodHS256, "r2", k, "mallory"))
		refuse("HS256 signed with the RSA public key, no kid", sign(t, jwt.SigningMethodHS256, "", k, "mallory"))
	}
	refuse("alg none", sign(t, jwt.SigningMethodNone, "r2", jwt.UnsafeAllowNoneSignatureType, "mallory"))
	refuse("alg none, no kid", sign(t, jwt.SigningMethodNone, "", jwt.UnsafeAllowNoneSignatureType, "mallory"))
	// Each key only with the algorithms of its type.
	refuse("RS256 naming the EC key", sign(t, jwt.SigningMethodRS256, "e1", r2, "mallory"))
	refuse("ES384 naming a P-256 key", sign(t, jwt.SigningMethodES384, "e1", mustEC(t, elliptic.P384()), "mallory"))
	// A key whose JWK says RS256 verifies nothing else.
	srv.set(rsaJWK("r1", "RS256", &r1.PublicKey))
	refuse("PS256 with a key pinned to RS256", sign(t, jwt.SigningMethodPS256, "r1", r1, "mallory"))
	// Without the secret, HS256 is not accepted at all.
	noSecret := newVerifier(t, middleware.AuthConfig{JWKSURL: srv.URL})
	if _, err := noSecret.Verify(hs); err == nil {
		t.Fatal("an HS256 token was accepted with no secret configured")
	}
	if _, err := noSecret.Verify(sign(t, jwt.SigningMethodRS256, "r1", r1, "ok")); err != nil {
		t.Fatalf("RS256 without a secret: %v", err)
	}
}

func TestPublicKeysFromPEM(t *testing.T) {
	epub, epriv, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der1, _ := x509.MarshalPKIXPublicKey(epub)
	der2, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	keys, err := middleware.ParsePublicKeys(append(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der1}), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der2})...))
	if err != nil || len(keys) != 2 {
		t.Fatalf("parse: %d keys, %v", len(keys), err)
	}
	v := newVerifier(t, middleware.AuthConfig{PublicKeys: keys})
	for _, tc := range []struct {
		tok  string
		want bool
	}{
		{sign(t, jwt.SigningMethodEdDSA, "", epriv, "ed"), true},
		{sign(t, jwt.SigningMethodES384, "any-kid", ec, "ec"), true},
		{sign(t, jwt.SigningMethodHS256, "", der1, "mallory"), false},
		{sign(t, jwt.SigningMethodES256, "", mustEC(t, elliptic.P256()), "other key"), false},
	} {
		if _, err := v.Verify(tc.tok); (err == nil) != tc.want {
			t.Errorf("Verify: err=%v; want accepted=%v", err, tc.want)
		}
	}
	priv, _ := x509.MarshalPKCS8PrivateKey(epriv)
	if _, err := middleware.ParsePublicKeys(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("a private key: %v; want refused as a private key", err)
	}
	if _, err := middleware.NewVerifier(middleware.AuthConfig{}); err == nil {
		t.Fatal("a verifier without any key was made")
	}
}

func mustEC(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A JWKS that cannot be fetched at start does not stop the service; a
// later token's unknown kid fetches it.
func TestJWKSUnreachableAtStart(t *testing.T) {
	r1, _ := rsa.GenerateKey(rand.Reader, 2048)
	srv := newJWKSServer(t, rsaJWK("r1", "", &r1.PublicKey))
	fail := atomic.Bool{}
	fail.Store(true)
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer flaky.Close()
	v := newVerifier(t, middleware.AuthConfig{JWKSURL: flaky.URL})
	fail.Store(false)
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, "r1", r1, "u")); err != nil {
		t.Fatalf("after the JWKS came back: %v", err)
	}
}

// Whatever a key file holds: parsing never panics, and what it returns is
// a key a Verifier takes or an error.
func FuzzParsePublicKeys(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	good := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	for _, s := range [][]byte{good, nil, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), append(good, good...), good[:len(good)/2]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := middleware.ParsePublicKeys(b)
		if err != nil {
			return
		}
		if len(keys) == 0 {
			t.Fatal("no keys and no error")
		}
		if v, err := middleware.NewVerifier(middleware.AuthConfig{PublicKeys: keys}); err == nil {
			v.Close()
		}
	})
}
