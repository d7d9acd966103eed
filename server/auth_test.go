package server_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/loopcast/loopcast/server"
)

// upgrade sends a WebSocket handshake from local (an address in
// 127.0.0.0/8, or "" for any) with extra header lines and returns the
// response; on 101 the connection stays open until the test ends.
func upgrade(t *testing.T, addr, local, path string, headers ...string) *http.Response {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	req := "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	hreq, _ := http.NewRequestWithContext(context.WithValue(context.Background(), connKey{}, c), "GET", "http://"+addr+path, nil)
	resp, err := http.ReadResponse(bufio.NewReader(c), hreq)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		c.Close()
	}
	return resp
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testJWTSecret is an HS256 secret of 32 bytes, the least RFC 7518
// §3.2 allows (Config.Validate refuses shorter ones).
const testJWTSecret = "correct horse battery staple 256"

func TestJWTHS256(t *testing.T) {
	cfg := testConfig()
	cfg.JWTSecret = testJWTSecret
	srv := startServer(t, cfg)
	addr := srv.Addr().String()
	key := []byte(cfg.JWTSecret)
	exp := time.Now().Add(time.Hour).Unix()
	valid := sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": "u1", "exp": exp})
	chatOnly := sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"exp": exp, "rooms": []string{"chat-*", "lobby"}})
	noRooms := sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"exp": exp, "rooms": []string{}})
	expired := sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})
	wrongKey := sign(t, jwt.SigningMethodHS256, []byte("guess"), jwt.MapClaims{"exp": exp})
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"exp": exp})

	cases := []struct {
		name    string
		path    string
		headers []string
		status  int
		body    string
	}{
		{"no token", "/ws/a", nil, 401, "missing token"},
		{"header", "/ws/a", []string{"Authorization: Bearer " + valid}, 101, ""},
		{"lower-case scheme", "/echo", []string{"Authorization: bearer " + valid}, 101, ""},
		{"query (browsers)", "/ws/a?token=" + valid, nil, 101, ""},
		{"expired", "/ws/a", []string{"Authorization: Bearer " + expired}, 401, "expired"},
		{"wrong key", "/ws/a", []string{"Authorization: Bearer " + wrongKey}, 401, "invalid token"},
		{"alg none", "/ws/a", []string{"Authorization: Bearer " + none}, 401, "invalid token"},
		{"garbage", "/ws/a?token=abc.def", nil, 401, "invalid token"},
		{"rooms claim allows", "/ws/chat-42", []string{"Authorization: Bearer " + chatOnly}, 101, ""},
		{"rooms claim exact", "/ws/lobby", []string{"Authorization: Bearer " + chatOnly}, 101, ""},
		{"rooms claim refuses", "/ws/news", []string{"Authorization: Bearer " + chatOnly}, 403, "rooms claim"},
		{"empty rooms claim", "/ws/chat-1", []string{"Authorization: Bearer " + noRooms}, 403, "rooms claim"},
	}
	for _, c := range cases {
		resp := upgrade(t, addr, "", c.path, c.headers...)
		body := ""
		if resp.StatusCode != 101 {
			b := make([]byte, 512)
			n, _ := resp.Body.Read(b)
			body = string(b[:n])
		}
		if resp.StatusCode != c.status || !strings.Contains(body, c.body) {
			t.Errorf("%s: %d %q, want %d mentioning %q", c.name, resp.StatusCode, body, c.status, c.body)
		}
		if c.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: 401 without WWW-Authenticate: Bearer", c.name)
		}
	}
	st := srv.Stats()
	if st.Rejects[401] != 5 || st.Rejects[403] != 2 || st.Upgrades != 5 {
		t.Errorf("counted rejects %v, %d upgrades; want 5x401, 2x403, 5 upgrades", st.Rejects, st.Upgrades)
	}
}

func TestJWTPublicKeys(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pemOf := func(pub any) string {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	// RS256 from a key file, ES256 from PEM text.
	file := filepath.Join(t.TempDir(), "rsa.pem")
	if err := os.WriteFile(file, []byte(pemOf(&rsaKey.PublicKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	exp := jwt.MapClaims{"exp": time.Now().Add(time.Minute).Unix()}
	for _, c := range []struct {
		name   string
		keyCfg string
		good   string
		other  string
	}{
		{"RS256 file", file, sign(t, jwt.SigningMethodRS256, rsaKey, exp), sign(t, jwt.SigningMethodES256, ecKey, exp)},
		{"ES256 PEM", pemOf(&ecKey.PublicKey), sign(t, jwt.SigningMethodES256, ecKey, exp), sign(t, jwt.SigningMethodRS256, rsaKey, exp)},
	} {
		cfg := testConfig()
		cfg.JWTPublicKey = c.keyCfg
		srv := startServer(t, cfg)
		if got := upgrade(t, srv.Addr().String(), "", "/ws/x", "Authorization: Bearer "+c.good).StatusCode; got != 101 {
			t.Errorf("%s: valid token got %d", c.name, got)
		}
		if got := upgrade(t, srv.Addr().String(), "", "/ws/x", "Authorization: Bearer "+c.other).StatusCode; got != 401 {
			t.Errorf("%s: token signed by another key got %d, want 401", c.name, got)
		}
		// An HS256 token made with the public key as secret (the classic
		// algorithm confusion) must fail.
		hs := sign(t, jwt.SigningMethodHS256, []byte(c.keyCfg), exp)
		if got := upgrade(t, srv.Addr().String(), "", "/ws/x", "Authorization: Bearer "+hs).StatusCode; got != 401 {
			t.Errorf("%s: HS256 with the public key as secret got %d, want 401", c.name, got)
		}
	}
	bad := testConfig()
	bad.JWTPublicKey = "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"
	if _, err := server.New(bad, nil); err == nil || !strings.Contains(err.Error(), "jwt-public-key") {
		t.Errorf("bad PEM: %v, want an error naming jwt-public-key", err)
	}
}

func TestMaxConns(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConns = 2
	srv := startServer(t, cfg)
	addr := srv.Addr().String()
	first := upgrade(t, addr, "", "/ws/a")
	_ = upgrade(t, addr, "", "/echo")
	full := upgrade(t, addr, "", "/ws/a")
	if first.StatusCode != 101 || full.StatusCode != 503 || full.Header.Get("Retry-After") == "" {
		t.Fatalf("third session: %d (Retry-After %q), want 503 with Retry-After", full.StatusCode, full.Header.Get("Retry-After"))
	}
	// Health probes still pass when full.
	resp, err := http.Get("http://" + addr + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health when full: %v %v", resp, err)
	}
	resp.Body.Close()
	if srv.Stats().Rejects[503] != 1 {
		t.Fatalf("503 not counted: %v", srv.Stats().Rejects)
	}
	// A session that ends frees its place.
	first.Body.Close()
	closeConnOf(t, first)
	waitFor(t, ioTimeout, "the place to free", func() bool { return srv.Stats().WebSockets == 1 })
	if s := upgrade(t, addr, "", "/ws/a").StatusCode; s != 101 {
		t.Fatalf("after a session ended: %d, want 101", s)
	}
}

// closeConnOf closes the connection a 101 response came on.
func closeConnOf(t *testing.T, resp *http.Response) {
	t.Helper()
	c, ok := resp.Request.Context().Value(connKey{}).(net.Conn)
	if !ok {
		t.Fatal("response carries no connection")
	}
	c.Close()
}

type connKey struct{}

func TestMaxConnsPerIP(t *testing.T) {
	t.Run("direct", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxConnsPerIP = 1
		srv := startServer(t, cfg)
		addr := srv.Addr().String()
		if s := upgrade(t, addr, "127.0.0.2", "/ws/a").StatusCode; s != 101 {
			t.Fatalf("first from 127.0.0.2: %d", s)
		}
		// X-Forwarded-For from an untrusted peer changes nothing.
		if s := upgrade(t, addr, "127.0.0.2", "/ws/a", "X-Forwarded-For: 198.51.100.1").StatusCode; s != 429 {
			t.Fatalf("second from 127.0.0.2 (spoofed XFF): %d, want 429", s)
		}
		if s := upgrade(t, addr, "127.0.0.3", "/ws/a").StatusCode; s != 101 {
			t.Fatalf("first from 127.0.0.3: %d", s)
		}
		if srv.Stats().Rejects[429] != 1 {
			t.Fatalf("429 not counted: %v", srv.Stats().Rejects)
		}
	})
	t.Run("behind a trusted gateway", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxConnsPerIP = 1
		cfg.TrustedProxies = []string{"127.0.0.0/8"}
		srv := startServer(t, cfg)
		addr := srv.Addr().String()
		// Application Gateway appends "client:port"; an upstream proxy
		// chain may put more (untrusted) entries in front.
		if s := upgrade(t, addr, "127.0.0.4", "/ws/a", "X-Forwarded-For: 203.0.113.7:50123").StatusCode; s != 101 {
			t.Fatalf("client A: %d", s)
		}
		if s := upgrade(t, addr, "127.0.0.4", "/ws/a", "X-Forwarded-For: 203.0.113.8:40000").StatusCode; s != 101 {
			t.Fatalf("client B through the same gateway: %d", s)
		}
		if s := upgrade(t, addr, "127.0.0.5", "/ws/a", "X-Forwarded-For: 10.9.9.9, 203.0.113.7:50999").StatusCode; s != 429 {
			t.Fatalf("client A again: %d, want 429", s)
		}
	})
}

// TestBugJWTNumericDateAsString: RFC 7519 §2 defines NumericDate as "A
// JSON numeric value"; exp, nbf and iat are NumericDates (§4.1.4-4.1.6).
// A token whose exp is the string "9999999999" would otherwise be taken
// as valid until the year 2286 by any library that also reads numbers in
// strings. Such tokens get 401, saying why.
func TestBugJWTNumericDateAsString(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.JWTSecret = testJWTSecret
	srv := startServer(t, cfg)
	addr := srv.Addr().String()
	key := []byte(cfg.JWTSecret)
	exp := time.Now().Add(time.Hour).Unix()
	for _, c := range []struct {
		name   string
		claims jwt.MapClaims
		status int
	}{
		{"exp number", jwt.MapClaims{"exp": exp}, 101},
		{"exp fraction", jwt.MapClaims{"exp": float64(exp) + 0.5}, 101},
		{"exp, nbf and iat numbers", jwt.MapClaims{"exp": exp, "nbf": exp - 7200, "iat": exp - 7200}, 101},
		{"exp string", jwt.MapClaims{"exp": "9999999999"}, 401},
		{"exp string of the right time", jwt.MapClaims{"exp": strconv.FormatInt(exp, 10)}, 401},
		{"exp null", jwt.MapClaims{"exp": nil}, 401},
		{"exp bool", jwt.MapClaims{"exp": true}, 401},
		{"exp array", jwt.MapClaims{"exp": []int64{exp}}, 401},
		{"nbf string", jwt.MapClaims{"exp": exp, "nbf": "0"}, 401},
		{"iat string", jwt.MapClaims{"exp": exp, "iat": "0"}, 401},
	} {
		tok := sign(t, jwt.SigningMethodHS256, key, c.claims)
		resp := upgrade(t, addr, "", "/ws/a", "Authorization: Bearer "+tok)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.status)
			continue
		}
		if c.status == 401 {
			b := make([]byte, 512)
			n, _ := resp.Body.Read(b)
			if body := string(b[:n]); !strings.Contains(body, "JSON number") {
				t.Errorf("%s: body %q, want a reason saying exp, nbf and iat must be JSON numbers", c.name, body)
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: 401 without WWW-Authenticate: Bearer", c.name)
			}
		}
	}
}
