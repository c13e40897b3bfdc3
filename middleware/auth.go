package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ScopePublish is the scope a token needs to publish events.
const ScopePublish = "events:publish"

// CookieName is the cookie a same-origin page may carry its token in.
const CookieName = "realtime_token"

// ErrUnauthenticated is the error Authenticate reports for a missing,
// malformed, expired or forged token. Its message is safe to show.
var ErrUnauthenticated = errors.New("unauthenticated")

// Claims are the JWT claims the service reads.
type Claims struct {
	// Workspaces the bearer may read; "*" for every workspace (services).
	Workspaces []string `json:"workspaces"`
	// Scope is space-separated.
	Scope string `json:"scope,omitempty"`
	jwt.RegisteredClaims
}

// Validate implements jwt.ClaimsValidator; it runs after the standard
// checks.
func (c Claims) Validate() error {
	if c.Subject == "" {
		return errors.New("token has no sub")
	}
	return nil
}

// AuthConfig configures a Verifier.
type AuthConfig struct {
	// Secret is the HS256 key. Required.
	Secret []byte
	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when set, must be in the token's aud.
	Audience string
	// Leeway tolerates clock skew on exp and nbf.
	Leeway time.Duration
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	key    []byte
	parser *jwt.Parser
	cache  *tokenCache
	now    func() time.Time
}

// Token cache bounds (tokenCache): a verified token is reused for at most a
// minute, and at most 4,096 of them are kept (about 4 MiB of token strings).
const (
	tokenCacheTTL = time.Minute
	tokenCacheMax = 4096
)

// NewVerifier returns a Verifier that accepts only HS256 tokens signed with
// cfg.Secret that carry an exp (and the configured iss and aud).
func NewVerifier(cfg AuthConfig) (*Verifier, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("jwt secret is empty")
	}
	opts := []jwt.ParserOption{
		// Pinning the method is what defeats "alg: none" and algorithm
		// confusion: the token's header never chooses how it is checked.
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v := &Verifier{key: cfg.Secret, cache: newTokenCache(tokenCacheTTL, cfg.Leeway, tokenCacheMax), now: time.Now}
	// The parser and the cache read one clock, so a test that moves it
	// moves both.
	opts = append(opts, jwt.WithTimeFunc(func() time.Time { return v.now() }))
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Principal is who a request is authenticated as.
type Principal struct {
	UserID     string
	Workspaces []string
	Scopes     []string
	Expires    time.Time
}

// CanRead reports whether the principal may read workspace.
func (p *Principal) CanRead(workspace string) bool {
	return slices.Contains(p.Workspaces, "*") || slices.Contains(p.Workspaces, workspace)
}

// Has reports whether the principal holds scope.
func (p *Principal) Has(scope string) bool { return slices.Contains(p.Scopes, scope) }

// Verify parses and checks a raw token.
// A token verified in the last minute is not checked again until its exp
// (tokenCache); the *Principal returned is then shared and must not be
// modified.
func (v *Verifier) Verify(raw string) (*Principal, error) {
	now := v.now()
	if p, ok := v.cache.get(raw, now); ok {
		return p, nil
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return v.key, nil })
	if err != nil {
		return nil, fmt.Errorf("verify token: %w", err)
	}
	p := &Principal{UserID: c.Subject, Workspaces: c.Workspaces, Scopes: strings.Fields(c.Scope), Expires: c.ExpiresAt.Time}
	v.cache.put(raw, p, now)
	return p, nil
}

// TokenSpec describes a token to issue.
type TokenSpec struct {
	Subject    string
	Workspaces []string
	Scopes     []string
	TTL        time.Duration
	Issuer     string
	Audience   string
}

// IssueToken signs a token for spec with secret: for `realtime token`,
// --dev and tests. The service itself never issues tokens to clients.
func IssueToken(secret []byte, spec TokenSpec, now time.Time) (string, error) {
	c := Claims{
		Workspaces: spec.Workspaces,
		Scope:      strings.Join(spec.Scopes, " "),
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   spec.Subject,
			Issuer:    spec.Issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(spec.TTL)),
		},
	}
	if spec.Audience != "" {
		c.Audience = jwt.ClaimStrings{spec.Audience}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

type principalKey struct{}

// PrincipalFromContext returns the principal Authenticate stored, or nil.
func PrincipalFromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// AuthError is what Authenticate hands to its error writer.
type AuthError struct {
	// Presented reports whether a token was sent at all (it decides the
	// WWW-Authenticate error attribute).
	Presented bool
	Err       error
}

func (e *AuthError) Error() string { return e.Err.Error() }
func (e *AuthError) Unwrap() error { return e.Err }

// Authenticate requires a valid token, taken from the Authorization header,
// or on GET and HEAD requests from the access_token query parameter (RFC
// 6750 §2.3: EventSource cannot send headers) or the realtime_token cookie.
// On failure it calls onError with an *AuthError.
func Authenticate(v *Verifier, onError func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, err := tokenFrom(r)
			if err != nil {
				onError(w, r, &AuthError{Presented: true, Err: err})
				return
			}
			if raw == "" {
				onError(w, r, &AuthError{Err: fmt.Errorf("%w: no bearer token", ErrUnauthenticated)})
				return
			}
			p, err := v.Verify(raw)
			if err != nil {
				onError(w, r, &AuthError{Presented: true, Err: fmt.Errorf("%w: %w", ErrUnauthenticated, err)})
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
		})
	}
}

func tokenFrom(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return "", fmt.Errorf("%w: authorization header is not a bearer token", ErrUnauthenticated)
		}
		return strings.TrimSpace(tok), nil
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return "", nil
	}
	if tok := r.URL.Query().Get("access_token"); tok != "" {
		return tok, nil
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		return c.Value, nil
	}
	return "", nil
}
