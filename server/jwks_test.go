package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwksServer serves a JSON Web Key Set that the test can change, as an
// identity provider rotating its keys does.
type jwksServer struct {
	mu   sync.Mutex
	keys []map[string]string
	*httptest.Server
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(keys ...map[string]string) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, k *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PublicKey) map[string]string {
	x, y := make([]byte, 32), make([]byte, 32)
	k.X.FillBytes(x)
	k.Y.FillBytes(y)
	return map[string]string{"kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256", "x": b64(x), "y": b64(y)}
}

func signKid(t *testing.T, method jwt.SigningMethod, kid string, key any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "aud": "loopcast"})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// With --jwt-jwks-url, RS256 and ES256 tokens are verified by the key
// their kid names in a real key set served over HTTP; an unknown kid or
// a key not in the set is 401; after the provider rotates its keys the
// new key is accepted and the removed one refused, once the set is
// fetched again.
func TestJWKS(t *testing.T) {
	rsa1, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa2, _ := rsa.GenerateKey(rand.Reader, 2048)
	ec1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	idp := newJWKSServer(t)
	idp.set(rsaJWK("rsa1", &rsa1.PublicKey), ecJWK("ec1", &ec1.PublicKey))

	cfg := testConfig()
	cfg.JWTJWKSURL = idp.URL + "/discovery/v2.0/keys"
	cfg.JWTJWKSRefresh = 100 * time.Millisecond
	cfg.JWTAudience = "loopcast"
	srv := startServer(t, cfg)
	addr := srv.Addr().String()
	status := func(token string) int {
		return upgrade(t, addr, "", "/ws/jwks", "Authorization: Bearer "+token).StatusCode
	}

	for name, tc := range map[string]struct {
		token string
		want  int
	}{
		"RS256, known kid":             {signKid(t, jwt.SigningMethodRS256, "rsa1", rsa1), 101},
		"ES256, known kid":             {signKid(t, jwt.SigningMethodES256, "ec1", ec1), 101},
		"unknown kid":                  {signKid(t, jwt.SigningMethodRS256, "rsa2", rsa2), 401},
		"known kid, another key":       {signKid(t, jwt.SigningMethodRS256, "rsa1", rsa2), 401},
		"HS256 with no secret set":     {signKid(t, jwt.SigningMethodHS256, "rsa1", []byte("guess")), 401},
		"RS256 under the EC key's kid": {signKid(t, jwt.SigningMethodRS256, "ec1", rsa1), 401},
	} {
		if got := status(tc.token); got != tc.want {
			t.Errorf("%s: %d, want %d", name, got, tc.want)
		}
	}

	// Rotation: rsa2 replaces rsa1.
	idp.set(rsaJWK("rsa2", &rsa2.PublicKey), ecJWK("ec1", &ec1.PublicKey))
	newTok, oldTok := signKid(t, jwt.SigningMethodRS256, "rsa2", rsa2), signKid(t, jwt.SigningMethodRS256, "rsa1", rsa1)
	waitFor(t, ioTimeout, "the rotated key accepted", func() bool { return status(newTok) == 101 })
	waitFor(t, ioTimeout, "the removed key refused", func() bool { return status(oldTok) == 401 })
}
