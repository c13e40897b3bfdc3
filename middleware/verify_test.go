package middleware

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// A token with a crit header is refused, whatever it names: the service
// understands no JWS extension (RFC 7515 §4.1.11). The same token without
// it is accepted.
func TestVerifyRefusesCritHeader(t *testing.T) {
	secret := []byte("crit-secret-crit-secret-crit-secret-0123")
	v, err := NewVerifier(AuthConfig{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(crit bool) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, Claims{RegisteredClaims: jwt.RegisteredClaims{
			Subject: "u1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
		}})
		if crit {
			tok.Header["crit"] = []string{"exp"}
		}
		s, err := tok.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if _, err := v.Verify(sign(false)); err != nil {
		t.Fatalf("plain token: %v", err)
	}
	if _, err := v.Verify(sign(true)); err == nil {
		t.Fatal("a token with crit was accepted")
	}
}
