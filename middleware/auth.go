package middleware

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
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

// AuthConfig configures a Verifier. At least one of Secret, PublicKeys
// and JWKSURL is required; any of them may stand beside the others.
type AuthConfig struct {
	// Secret is the HS256 key, the only key HS256 tokens are checked
	// with (and the one IssueToken signs dev and CLI tokens with).
	Secret []byte
	// PublicKeys verify RS*, PS*, ES* or EdDSA tokens, each only with the
	// algorithms of its type (LoadPublicKeys reads them from PEM files).
	// A token's kid does not select among them: each key of the token's
	// algorithm is tried.
	PublicKeys []crypto.PublicKey
	// JWKSURL is a JSON Web Key Set the identity provider publishes. It
	// is fetched at start, refreshed every JWKSRefresh, and again when a
	// token names a kid it does not hold, at most once per JWKSMissInterval.
	JWKSURL string
	// JWKSRefresh is how often the JWKS is fetched again (1h).
	JWKSRefresh time.Duration
	// JWKSMissInterval bounds the refreshes unknown kids cause: at most
	// one per interval; a token with an unknown kid past the bound is
	// refused at once (1m).
	JWKSMissInterval time.Duration
	// HTTPClient fetches the JWKS (a client with a 10s timeout).
	HTTPClient *http.Client
	// Logger receives JWKS fetch failures (slog.Default()).
	Logger *slog.Logger
	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when set, must be in the token's aud.
	Audience string
	// Leeway tolerates clock skew on exp and nbf.
	Leeway time.Duration
}

// Verifier checks tokens. It is safe for concurrent use. Close stops the
// JWKS refresh, if any.
type Verifier struct {
	secret []byte
	keys   []crypto.PublicKey
	jwks   keyfunc.Keyfunc
	stop   context.CancelFunc
	parser *jwt.Parser
	leeway time.Duration
	cache  *tokenCache
	now    func() time.Time
}

// Token cache bounds (tokenCache): a verified token is reused for at most a
// minute, which is also how long a key withdrawn from the JWKS can still
// admit a token it signed; at most 4,096 are kept (about 4 MiB of token
// strings).
const (
	tokenCacheTTL = time.Minute
	tokenCacheMax = 4096
)

// asymmetric are the algorithms a public key may verify, by key type.
var asymmetric = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// algFits reports whether key may verify a token signed with alg: RSA keys
// verify RS* and PS*, an EC key only the ES* of its curve, an Ed25519 key
// EdDSA. Nothing else (an HMAC secret from a JWKS, say) verifies anything:
// the secret of AuthConfig is the only HS256 key.
func algFits(alg string, key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return alg == "ES256"
		case elliptic.P384():
			return alg == "ES384"
		case elliptic.P521():
			return alg == "ES512"
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// NewVerifier returns a Verifier that accepts tokens with an exp (and the
// configured iss and aud) signed with HS256 by cfg.Secret, or with an
// asymmetric algorithm by one of cfg.PublicKeys or a key of cfg.JWKSURL.
// With a JWKS it fetches the set before returning (a failure is logged,
// not returned: the next unknown kid fetches it again) and starts the
// refresh goroutine Close stops.
func NewVerifier(cfg AuthConfig) (*Verifier, error) {
	if len(cfg.Secret) == 0 && len(cfg.PublicKeys) == 0 && cfg.JWKSURL == "" {
		return nil, errors.New("no key to verify tokens with: set a jwt secret, public keys or a jwks url")
	}
	var methods []string
	if len(cfg.Secret) > 0 {
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	for _, k := range cfg.PublicKeys {
		if !slices.ContainsFunc(asymmetric, func(alg string) bool { return algFits(alg, k) }) {
			return nil, fmt.Errorf("public key of type %T: want RSA, ECDSA (P-256, P-384, P-521) or Ed25519", k)
		}
	}
	if len(cfg.PublicKeys) > 0 || cfg.JWKSURL != "" {
		methods = append(methods, asymmetric...)
	}
	opts := []jwt.ParserOption{
		// Pinning the methods is what defeats "alg: none"; pinning each
		// key to the algorithms of its type (keyFor) defeats algorithm
		// confusion: the token's header never chooses how a key is used.
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v := &Verifier{secret: cfg.Secret, keys: cfg.PublicKeys, leeway: cfg.Leeway, stop: func() {},
		cache: newTokenCache(tokenCacheTTL, cfg.Leeway, tokenCacheMax), now: time.Now}
	// The parser and the cache read one clock, so a test that moves it
	// moves both.
	opts = append(opts, jwt.WithTimeFunc(func() time.Time { return v.now() }))
	v.parser = jwt.NewParser(opts...)
	if cfg.JWKSURL != "" {
		jwks, stop, err := newJWKS(cfg)
		if err != nil {
			return nil, err
		}
		v.jwks, v.stop = jwks, stop
	}
	return v, nil
}

// newJWKS fetches cfg.JWKSURL with keyfunc (jwkset's HTTP storage): the
// set is cached, refreshed every JWKSRefresh by a goroutine that ends
// when the returned func is called, and refreshed when a kid is unknown,
// as often as a rate limiter allows.
func newJWKS(cfg AuthConfig) (keyfunc.Keyfunc, context.CancelFunc, error) {
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, nil, fmt.Errorf("jwks url %q is not an http(s) url", cfg.JWKSURL)
	}
	refresh, miss := cfg.JWKSRefresh, cfg.JWKSMissInterval
	if refresh <= 0 {
		refresh = time.Hour
	}
	if miss <= 0 {
		miss = time.Minute
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	shown := u.Redacted()
	ctx, stop := context.WithCancel(context.Background())
	k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:          client,
		HTTPTimeout:     10 * time.Second,
		RefreshInterval: refresh,
		// Burst 1: the first unknown kid refreshes at once; the next
		// waits its turn, or fails at once when the turn is further off
		// than RateLimitWaitMax.
		RefreshUnknownKID: rate.NewLimiter(rate.Every(miss), 1),
		RateLimitWaitMax:  10 * time.Second,
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				if ctx.Err() == nil {
					logger.Error("jwks fetch failed", "url", shown, "err", err)
				}
			}
		},
	})
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("jwks %s: %w", shown, err)
	}
	return k, stop, nil
}

// Close stops the JWKS refresh goroutine, if there is one.
func (v *Verifier) Close() { v.stop() }

// Leeway is the clock skew the verifier tolerates on exp.
func (v *Verifier) Leeway() time.Duration { return v.leeway }

// keyFor returns the key, or keys, that may verify t: the secret for
// HS256, else every configured public key and the JWKS key named by the
// token's kid (every JWKS key without a kid) that fits its algorithm.
func (v *Verifier) keyFor(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		// RFC 7515 §4.1.11: a token naming header extensions that must be
		// understood is refused by a verifier that understands none.
		if _, ok := t.Header["crit"]; ok {
			return nil, errors.New("the token's crit header names extensions this service does not understand")
		}
		alg := t.Method.Alg()
		if alg == jwt.SigningMethodHS256.Alg() {
			if len(v.secret) == 0 {
				return nil, errors.New("hs256 is not accepted")
			}
			return v.secret, nil
		}
		var keys []jwt.VerificationKey
		for _, k := range v.keys {
			if algFits(alg, k) {
				keys = append(keys, k)
			}
		}
		if v.jwks != nil {
			k, err := v.jwks.KeyfuncCtx(ctx)(t)
			switch {
			case err != nil:
				if len(keys) == 0 {
					return nil, err
				}
			default:
				set, ok := k.(jwt.VerificationKeySet)
				if !ok {
					set.Keys = []jwt.VerificationKey{k}
				}
				for _, k := range set.Keys {
					if algFits(alg, k) {
						keys = append(keys, k)
					}
				}
			}
		}
		switch len(keys) {
		case 0:
			return nil, fmt.Errorf("no key for alg %s", alg)
		case 1:
			return keys[0], nil
		}
		return jwt.VerificationKeySet{Keys: keys}, nil
	}
}

// Principal is who a request is authenticated as.
type Principal struct {
	UserID     string
	Workspaces []string
	Scopes     []string
	Expires    time.Time
	// Ticket is set when a stream ticket, not a token, authenticated the
	// request; Types are then the types the ticket was bought for.
	Ticket bool
	Types  []string
}

// CanRead reports whether the principal may read workspace.
func (p *Principal) CanRead(workspace string) bool {
	return slices.Contains(p.Workspaces, "*") || slices.Contains(p.Workspaces, workspace)
}

// Has reports whether the principal holds scope.
func (p *Principal) Has(scope string) bool { return slices.Contains(p.Scopes, scope) }

// Verify parses and checks a raw token.
func (v *Verifier) Verify(raw string) (*Principal, error) {
	return v.VerifyContext(context.Background(), raw)
}

// VerifyContext is Verify bounded by ctx (a JWKS refresh an unknown kid
// causes stops with it).
//
// A token verified in the last minute is not checked again until its exp
// (tokenCache); the *Principal returned is then shared and must not be
// modified.
func (v *Verifier) VerifyContext(ctx context.Context, raw string) (*Principal, error) {
	now := v.now()
	if p, ok := v.cache.get(raw, now); ok {
		return p, nil
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(raw, &c, v.keyFor(ctx))
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
	if p, ok := ctx.Value(principalKey{}).(*Principal); ok {
		return p
	}
	if info := infoFrom(ctx); info != nil {
		return info.principal
	}
	return nil
}

// serveAs runs next with p as the request's principal: in the request's
// own record when RequestLog made one and no principal is in the context
// yet (no new context, no Request copy), else in a new context, which
// PrincipalFromContext looks at first. Either way the principal just
// verified is the one the handler sees.
func serveAs(next http.Handler, w http.ResponseWriter, r *http.Request, p *Principal) {
	ctx := r.Context()
	if info := infoFrom(ctx); info != nil && info.principal == nil && ctx.Value(principalKey{}) == nil {
		info.principal = p
		next.ServeHTTP(w, r)
		return
	}
	next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
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

// ErrQueryTokenDisabled is the error for an access_token query parameter
// when AuthOptions.QueryToken is off.
var ErrQueryTokenDisabled = errors.New("the access_token query parameter is turned off")

// AuthOptions are how Authenticate looks for credentials beyond the
// Authorization header.
type AuthOptions struct {
	// QueryToken accepts a token in the access_token query parameter on
	// GET and HEAD (REALTIME_ALLOW_QUERY_TOKEN). When off, a request that
	// sends one is refused with ErrQueryTokenDisabled, rather than
	// silently treated as anonymous.
	QueryToken bool
	// Redeem, when set, turns the ticket query parameter of a GET into a
	// principal (a stream ticket), or fails; an error that matches
	// ErrUnauthenticated is wrapped in an *AuthError, any other (the store
	// is down) passed on as it is.
	Redeem func(r *http.Request, ticket string) (*Principal, error)
}

// Authenticate requires a valid token, taken from the Authorization header,
// or on GET and HEAD requests from the access_token query parameter (RFC
// 6750 §2.3: EventSource cannot send headers) or the realtime_token cookie.
// On failure it calls onError with an *AuthError.
func Authenticate(v *Verifier, onError func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	return AuthenticateWith(v, AuthOptions{QueryToken: true}, onError)
}

// AuthenticateWith is Authenticate with opts: the credentials it takes are,
// first found first, the Authorization header (any method), then on GET
// and HEAD only a ticket (opts.Redeem), the access_token query parameter
// (opts.QueryToken) and the realtime_token cookie. A cookie never
// authenticates a POST or PUT, so no other site can make a browser change
// state with it (CSRF): those need the header, which a page can only send
// to its own origin or through CORS.
func AuthenticateWith(v *Verifier, opts AuthOptions, onError func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if opts.Redeem != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.Header.Get("Authorization") == "" {
				if t := r.URL.Query().Get("ticket"); t != "" {
					p, err := opts.Redeem(r, t)
					if errors.Is(err, ErrUnauthenticated) {
						err = &AuthError{Presented: true, Err: err}
					}
					if err != nil {
						onError(w, r, err)
						return
					}
					serveAs(next, w, r, p)
					return
				}
			}
			raw, err := tokenFrom(r, opts.QueryToken)
			if err != nil {
				onError(w, r, &AuthError{Presented: true, Err: err})
				return
			}
			if raw == "" {
				onError(w, r, &AuthError{Err: fmt.Errorf("%w: no bearer token", ErrUnauthenticated)})
				return
			}
			p, err := v.VerifyContext(r.Context(), raw)
			if err != nil {
				onError(w, r, &AuthError{Presented: true, Err: fmt.Errorf("%w: %w", ErrUnauthenticated, err)})
				return
			}
			serveAs(next, w, r, p)
		})
	}
}

func tokenFrom(r *http.Request, queryToken bool) (string, error) {
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
		if !queryToken {
			return "", fmt.Errorf("%w: %w", ErrUnauthenticated, ErrQueryTokenDisabled)
		}
		return tok, nil
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		return c.Value, nil
	}
	return "", nil
}
