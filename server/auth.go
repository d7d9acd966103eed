package server

import (
	"crypto"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/loopcast/loopcast/server/internal/reqhead"
)

// authenticator checks the JWT of an upgrade before it is accepted. It is
// nil when neither JWTSecret nor JWTPublicKey is set. It runs once per
// handshake, never per message.
type authenticator struct {
	parser  *jwt.Parser
	hmacKey []byte
	pubKey  crypto.PublicKey
}

// tokenClaims are the claims loopcast reads: the registered ones (exp,
// nbf, iat are enforced when present) and rooms, a list of room name
// patterns (path.Match syntax: "chat-*", "team.?", "*") that limits which
// rooms the connection may join and so publish to. Without a rooms claim
// every room is allowed; an empty list allows none.
type tokenClaims struct {
	jwt.RegisteredClaims
	Rooms *[]string `json:"rooms,omitempty"`
}

func newAuthenticator(cfg Config) (*authenticator, error) {
	if cfg.JWTSecret == "" && cfg.JWTPublicKey == "" {
		return nil, nil
	}
	a := &authenticator{}
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
	a.parser = jwt.NewParser(jwt.WithValidMethods(methods), jwt.WithLeeway(jwtLeeway))
	return a, nil
}

func (a *authenticator) key(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		return a.hmacKey, nil
	default:
		return a.pubKey, nil
	}
}

// check authorizes an upgrade to t: a valid token from the Authorization
// header or the token query parameter (browsers cannot set headers on a
// WebSocket), whose rooms claim allows t's room.
func (a *authenticator) check(h *reqhead.Head, t target) *rejection {
	tok := bearerToken(h)
	if tok == "" {
		return rejAuthMissing
	}
	var c tokenClaims
	if _, err := a.parser.ParseWithClaims(tok, &c, a.key); err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return rejAuthExpired
		}
		return rejAuthInvalid
	}
	if t.room != nil && c.Rooms != nil && !roomAllowed(*c.Rooms, string(t.room)) {
		return rejRoomForbidden
	}
	return nil
}

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
