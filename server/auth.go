package server

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	occ "github.com/loopcast/loopcast/server/internal/occupancy"
	"github.com/loopcast/loopcast/server/internal/reqhead"
)

// authenticator checks the JWT of an upgrade before it is accepted. It is
// nil when no key is configured (JWTSecret, JWTSecretFile, JWTPublicKey).
// It runs once per handshake, never per message.
type authenticator struct {
	parser  *jwt.Parser
	hmacKey []byte
	pubKey  crypto.PublicKey

	// jwksURL, when set, is where RS256 and ES256 keys are published by
	// kid (Config.JWTJWKSURL); jwks holds them once startJWKS ran.
	jwksURL     string
	jwksRefresh time.Duration
	jwks        keyfunc.Keyfunc

	// maxInfo is Config.PresenceMaxInfo, maxSubs Config.MaxSubscriptions.
	maxInfo, maxSubs int
}

// tokenClaims are the claims loopcast reads: the registered ones (exp is
// required unless JWTAllowNoExp; nbf and iat are enforced when present;
// aud and iss when JWTAudience and JWTIssuer are set); rooms, a list of
// room name patterns (path.Match syntax: "chat-*", "team.?", "*") that
// limits which rooms the connection may join (raw mode) or subscribe to
// (loopcast.v1); and publish, patterns of the rooms it may publish to.
// Without a rooms claim every room is allowed; an empty list allows none.
// Without a publish claim the connection may publish where rooms allows
// it; "publish": [] makes a read-only client. sub names the user in
// presence rooms, and info (any JSON, at most PresenceMaxInfo bytes) is
// shown with it.
type tokenClaims struct {
	jwt.RegisteredClaims
	Rooms   *[]string       `json:"rooms,omitempty"`
	Publish *[]string       `json:"publish,omitempty"`
	Info    json.RawMessage `json:"info,omitempty"`
	// Subs are rooms a loopcast.v1 connection is subscribed to at
	// connect (personal rooms: "user.ana"), whatever its rooms claim.
	Subs []string `json:"subs,omitempty"`
}

// errNumericDate is the decoding error of a token whose exp, nbf or iat
// is present but not a JSON number.
var errNumericDate = errors.New("exp, nbf and iat must be JSON numbers (RFC 7519 section 2, NumericDate)")

// UnmarshalJSON decodes the claims, refusing an exp, nbf or iat that is
// not a JSON number. RFC 7519 §2 defines NumericDate as "A JSON numeric
// value"; golang-jwt also reads numbers written as strings, so
// "exp":"9999999999" would pass as a date in 2286, and "exp":null as no
// exp at all. It decodes the claims twice, a cost paid once per
// handshake that carries a token, never per message.
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	var dates struct {
		Exp json.RawMessage `json:"exp"` // empty when absent; "null" for null
		Nbf json.RawMessage `json:"nbf"`
		Iat json.RawMessage `json:"iat"`
	}
	if err := json.Unmarshal(b, &dates); err != nil {
		return err
	}
	for _, d := range [...]json.RawMessage{dates.Exp, dates.Nbf, dates.Iat} {
		// A RawMessage holds one valid JSON value, without surrounding
		// white space: a number is the only kind that starts so.
		if len(d) > 0 && d[0] != '-' && (d[0] < '0' || d[0] > '9') {
			return errNumericDate
		}
	}
	type plain tokenClaims // without this method
	return json.Unmarshal(b, (*plain)(c))
}

// session is what a connection keeps beyond its plain state, for its
// life: what its token allows, and what it watches. nil when no token is
// required and it watches nothing: everything is allowed.
type session struct {
	rooms, publish *[]string // the token's claims (nil: no such claim)
	// user and info are the token's sub and info claims: who the
	// connection is in presence rooms ("" without a sub: not listed).
	user string
	info []byte
	// subs are the token's subs claim: subscribed at connect.
	subs []string
	// expireAt, when set (the connect hook's expire_at), is when the
	// connection is closed (4001), checked at each ping.
	expireAt time.Time
	// connSeq is the connection's number on its loop when the connect
	// hook named it (its id: connID), else 0.
	connSeq uint64
	// pendingSubs are the rooms whose subscribe hook has not answered,
	// publishing the publications waiting for the publish hook, in order
	// (hooks_publish.go).
	pendingSubs []string
	publishing  []*hookedPublish
	// present lists the presence rooms the connection is listed in
	// (presence.go), presenceWatching those whose joins and leaves it
	// watches.
	present, presenceWatching []string
	// watching lists the rooms whose occupancy the connection watches
	// (at most MaxSubscriptions; watch.go).
	watching []string
}

// maySubscribe reports whether the rooms claim allows room.
func (g *session) maySubscribe(room []byte) bool {
	return g == nil || g.rooms == nil || roomAllowed(*g.rooms, string(room))
}

// mayPublish reports whether the publish claim (or, without one, the
// rooms claim) allows publishing to room.
func (g *session) mayPublish(room []byte) bool {
	switch {
	case g == nil:
		return true
	case g.publish != nil:
		return roomAllowed(*g.publish, string(room))
	}
	return g.maySubscribe(room)
}

func newAuthenticator(cfg Config) (*authenticator, error) {
	if cfg.JWTSecret == "" && cfg.JWTPublicKey == "" && cfg.JWTJWKSURL == "" {
		if cfg.JWTSecretFile != "" {
			return &authenticator{}, nil // Validate before New read the file: nothing to check yet
		}
		if cfg.JWTAudience != "" || cfg.JWTIssuer != "" {
			return nil, errors.New("jwt-audience and jwt-issuer need a key: jwt-secret(-file), jwt-public-key or jwt-jwks-url")
		}
		return nil, nil
	}
	a := &authenticator{jwksURL: cfg.JWTJWKSURL, jwksRefresh: cfg.JWTJWKSRefresh, maxInfo: cfg.PresenceMaxInfo, maxSubs: cfg.MaxSubscriptions}
	var methods []string
	if cfg.JWTSecret != "" {
		a.hmacKey = []byte(cfg.JWTSecret)
		methods = append(methods, "HS256")
	}
	if cfg.JWTPublicKey != "" {
		pem := []byte(cfg.JWTPublicKey)
		if !strings.HasPrefix(strings.TrimSpace(cfg.JWTPublicKey), "-----BEGIN") {
			var err error
			if pem, err = os.ReadFile(cfg.JWTPublicKey); err != nil {
				return nil, fmt.Errorf("jwt-public-key: %w", err)
			}
		}
		if k, err := jwt.ParseRSAPublicKeyFromPEM(pem); err == nil {
			a.pubKey = k
			methods = append(methods, "RS256")
		} else if k, err := jwt.ParseECPublicKeyFromPEM(pem); err == nil {
			a.pubKey = k
			methods = append(methods, "ES256")
		} else {
			return nil, errors.New("jwt-public-key: not a PEM RSA or ECDSA public key")
		}
	}
	if a.jwksURL != "" {
		if u, err := url.Parse(a.jwksURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("jwt-jwks-url %q: want an https:// URL", a.jwksURL)
		}
		if cfg.JWTPublicKey != "" {
			return nil, errors.New("jwt-public-key and jwt-jwks-url: give one source of public keys")
		}
		if a.jwksRefresh <= 0 {
			return nil, fmt.Errorf("jwt-jwks-refresh %s: must be positive", a.jwksRefresh)
		}
		methods = append(methods, "RS256", "ES256")
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithLeeway(cfg.JWTLeeway)}
	if !cfg.JWTAllowNoExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if cfg.JWTAudience != "" {
		opts = append(opts, jwt.WithAudience(cfg.JWTAudience))
	}
	if cfg.JWTIssuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.JWTIssuer))
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

func (a *authenticator) key(t *jwt.Token) (any, error) {
	switch {
	case t.Method.Alg() == "HS256":
		return a.hmacKey, nil
	case a.jwks != nil:
		return a.jwks.Keyfunc(t) // by kid, from memory: never a fetch on the loop
	case a.jwksURL != "":
		return nil, errors.New("JWKS not loaded")
	default:
		return a.pubKey, nil
	}
}

// startJWKS loads the key set from jwksURL and refreshes it every
// jwksRefresh in the background until ctx ends. Keys are looked up in
// memory: a token whose kid is not in the set is refused (401) rather
// than fetched on the event loop, and accepted after the next refresh
// (identity providers, Microsoft Entra ID among them, publish keys well
// before they sign with them). An unreachable URL does not stop the
// start: tokens are refused until the set loads, and errors are logged.
func (a *authenticator) startJWKS(ctx context.Context, log *slog.Logger) error {
	if a == nil || a.jwksURL == "" {
		return nil
	}
	noErr := true
	k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{a.jwksURL}, keyfunc.Override{
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: &noErr,
		RefreshInterval:           a.jwksRefresh,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) { log.Warn("JWKS refresh failed", "url", u, "err", err) }
		},
	})
	if err != nil {
		return fmt.Errorf("jwt-jwks-url: %w", err)
	}
	a.jwks = k
	return nil
}

// check authorizes an upgrade to t: a valid token from the Authorization
// header or the token query parameter (browsers cannot set headers on a
// WebSocket), whose rooms claim allows t's room. It returns what the
// token allows for the rest of the connection.
func (a *authenticator) check(h *reqhead.Head, t target) (*session, *rejection) {
	g, rej := a.verify(h)
	if rej == nil && t.room != nil && !g.maySubscribe(t.room) {
		return nil, rejRoomForbidden
	}
	return g, rej
}

func (a *authenticator) verify(h *reqhead.Head) (*session, *rejection) {
	tok := bearerToken(h)
	if tok == "" {
		return nil, rejAuthMissing
	}
	var c tokenClaims
	if _, err := a.parser.ParseWithClaims(tok, &c, a.key); err != nil {
		switch {
		case errors.Is(err, errNumericDate):
			return nil, rejAuthNumericDate
		case errors.Is(err, jwt.ErrTokenExpired):
			return nil, rejAuthExpired
		case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && c.ExpiresAt == nil:
			return nil, rejAuthNoExp
		case errors.Is(err, jwt.ErrTokenInvalidAudience), errors.Is(err, jwt.ErrTokenInvalidIssuer),
			errors.Is(err, jwt.ErrTokenRequiredClaimMissing): // no aud where one is required
			return nil, rejAuthAudience
		}
		return nil, rejAuthInvalid
	}
	switch {
	case len(c.Subject) > occ.MaxUser || strings.IndexByte(c.Subject, 0) >= 0:
		return nil, rejAuthSubject
	case len(c.Info) > a.maxInfo:
		return nil, rejAuthInfo
	case len(c.Subs) > a.maxSubs || slices.ContainsFunc(c.Subs, func(r string) bool { return !ValidRoomName(r) }):
		return nil, rejAuthSubs
	case c.Rooms == nil && c.Publish == nil && c.Subject == "" && len(c.Subs) == 0:
		return nil, nil // everything allowed, nobody named: nothing to keep
	}
	sess := &session{rooms: c.Rooms, publish: c.Publish, user: c.Subject, subs: c.Subs}
	if c.Subject != "" && len(c.Info) > 0 && string(c.Info) != "null" {
		sess.info = c.Info
	}
	return sess, nil
}

// rejAuthSubject and rejAuthInfo answer a token whose sub or info claim
// presence cannot carry.
var (
	rejAuthSubject = newRejection(401, "invalid token: its sub claim is over 256 bytes or holds a NUL",
		"WWW-Authenticate: Bearer realm=\"loopcast\", error=\"invalid_token\"\r\n")
	rejAuthInfo = newRejection(401, "invalid token: its info claim is over presence-max-info bytes",
		"WWW-Authenticate: Bearer realm=\"loopcast\", error=\"invalid_token\"\r\n")
	rejAuthSubs = newRejection(401, "invalid token: its subs claim names an invalid room, or more than max-subscriptions",
		"WWW-Authenticate: Bearer realm=\"loopcast\", error=\"invalid_token\"\r\n")
)

// rejAuthNumericDate answers a token whose exp, nbf or iat is not a JSON
// number (see tokenClaims.UnmarshalJSON).
var rejAuthNumericDate = newRejection(401, "invalid token: its exp, nbf and iat must be JSON numbers (RFC 7519 section 2, NumericDate), not strings or null",
	"WWW-Authenticate: Bearer realm=\"loopcast\", error=\"invalid_token\"\r\n")

func roomAllowed(patterns []string, room string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, room); ok && err == nil {
			return true
		}
	}
	return false
}

// bearerToken returns the token of "Authorization: Bearer …", else the
// token query parameter, else "".
func bearerToken(h *reqhead.Head) string {
	if v := h.Authorization; len(v) > 7 && reqhead.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(string(v[7:]))
	}
	for q := string(h.Query); q != ""; {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		if k, v, _ := strings.Cut(kv, "="); k == "token" {
			if s, err := url.QueryUnescape(v); err == nil {
				return s
			}
		}
	}
	return ""
}
