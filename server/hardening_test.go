package server_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/loopcast/loopcast/server"
)

// A member may publish PublishBurst messages at once and then
// PublishRate per second; the next one closes it with 1008 and a reason,
// TCP closes at once, and the close is counted as rate_limited. A member
// that keeps to the rate is never closed.
func TestPublishRateLimit(t *testing.T) {
	cfg := promptConfig()                     // fine ticks: see promptClose
	cfg.PublishRate, cfg.PublishBurst = 10, 3 // a message per 100 ms
	srv := startServer(t, cfg)

	t.Run("over the burst", func(t *testing.T) {
		c := dialWS(t, srv.Addr(), "/ws/rate-over")
		msg := frameBytes(true, opText, []byte("m"))
		c.write(concat(msg, msg, msg, msg)) // one read: the same instant
		for range 3 {
			c.expectFrame(opText, []byte("m"))
		}
		f := c.mustFrame()
		if f.op != opClose || f.closeCode() != 1008 || !bytes.Contains(f.payload, []byte("publish-rate")) {
			t.Fatalf("got %v, want close 1008 naming publish-rate", f)
		}
		if took := c.readUntilClosed(ioTimeout); took > promptClose {
			t.Fatalf("TCP closed %s after the close frame: it waited for the peer's close (the close grace is %s)", took, closeGrace)
		}
		waitFor(t, ioTimeout, "rate_limited counted", func() bool { return srv.Stats().Closes["rate_limited"] == 1 })
	})
	t.Run("within the rate", func(t *testing.T) {
		c := dialWS(t, srv.Addr(), "/ws/rate-within")
		msg := frameBytes(true, opText, []byte("m"))
		c.write(concat(msg, msg, msg))
		// The server read the first three before it sent them back, and
		// reads the next three after this client sent them: at least the
		// pause apart on the server's clock, however late it runs.
		for range 3 {
			c.expectFrame(opText, []byte("m"))
		}
		time.Sleep(400 * time.Millisecond) // refills the three tokens (and more)
		c.write(concat(msg, msg, msg))
		for range 3 {
			c.expectFrame(opText, []byte("m"))
		}
		c.closeHandshake()
	})
	t.Run("echo is not limited", func(t *testing.T) {
		c := dialWS(t, srv.Addr(), "/echo")
		msg := frameBytes(true, opText, []byte("e"))
		c.write(bytes.Repeat(msg, 20))
		for range 20 {
			c.expectFrame(opText, []byte("e"))
		}
		c.closeHandshake()
	})
}

// MaxRooms caps the rooms with members: an upgrade that would create one
// more gets 503 with Retry-After, counted; joining an existing room still
// works, and a room freed by its last member makes space.
func TestMaxRooms(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRooms = 2
	srv := startServer(t, cfg)
	addr := srv.Addr().String()
	a := dialWS(t, srv.Addr(), "/ws/r1")
	_ = dialWS(t, srv.Addr(), "/ws/r2")
	resp := upgrade(t, addr, "", "/ws/r3")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "max-rooms") {
		t.Fatalf("third room: %d %q, want 503 with Retry-After naming max-rooms", resp.StatusCode, body)
	}
	if resp := upgrade(t, addr, "", "/ws/r1"); resp.StatusCode != 101 {
		t.Fatalf("joining an existing room: %d, want 101", resp.StatusCode)
	}
	a.closeHandshake()
	// r1 still has the member that joined second; r2's member stays too.
	if st := srv.Stats(); st.Rejects[503] != 1 || st.Rooms != 2 {
		t.Fatalf("stats: %d refusals with 503, %d rooms; want 1 and 2", st.Rejects[503], st.Rooms)
	}
}

// A freed room makes space for a new one.
func TestMaxRoomsFreed(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRooms = 1
	srv := startServer(t, cfg)
	a := dialWS(t, srv.Addr(), "/ws/first")
	if resp := upgrade(t, srv.Addr().String(), "", "/ws/second"); resp.StatusCode != 503 {
		t.Fatalf("second room while the first has a member: %d, want 503", resp.StatusCode)
	}
	a.closeHandshake()
	waitFor(t, ioTimeout, "first room gone", func() bool { return srv.Stats().Rooms == 0 })
	if resp := upgrade(t, srv.Addr().String(), "", "/ws/second"); resp.StatusCode != 101 {
		t.Fatalf("second room after the first emptied: %d, want 101", resp.StatusCode)
	}
}

// With AllowedOrigins set, the 403 says which Origin it received, or that
// there was none; AllowNoOrigin admits clients that send none, never a
// wrong Origin.
func TestOriginRefusals(t *testing.T) {
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"https://app.example.com"}
	strict := startServer(t, cfg)
	cfg.AllowNoOrigin = true
	lenient := startServer(t, cfg)
	for _, tc := range []struct {
		srv    *server.Server
		origin string
		status int
		body   string
	}{
		{strict, "Origin: https://evil.example.com", 403, "Origin: https://evil.example.com"},
		{strict, "", 403, "no Origin header"},
		{strict, "Origin: https://app.example.com", 101, ""},
		{lenient, "", 101, ""},
		{lenient, "Origin: https://evil.example.com", 403, "Origin: https://evil.example.com"},
	} {
		var hdr []string
		if tc.origin != "" {
			hdr = append(hdr, tc.origin)
		}
		resp := upgrade(t, tc.srv.Addr().String(), "", "/echo", hdr...)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
			t.Errorf("%q (allow-no-origin %v): %d %q, want %d with %q", tc.origin, tc.srv == lenient, resp.StatusCode, body, tc.status, tc.body)
		}
	}
}

// "." and ".." are not room names: browsers and HTTP libraries remove
// them from paths. Upgrades get 400, POST /publish 400 (not a redirect),
// Publish ErrBadRoom.
func TestDotRoomNames(t *testing.T) {
	srv, admin := startWithAdmin(t, "s3cret")
	for _, name := range []string{".", ".."} {
		if resp := upgrade(t, srv.Addr().String(), "", "/ws/"+name); resp.StatusCode != 400 {
			t.Errorf("upgrade to /ws/%s: %d, want 400", name, resp.StatusCode)
		}
		req, _ := http.NewRequest("POST", admin+"/publish/"+name, strings.NewReader("x"))
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("POST /publish/%s: %d, want 400", name, resp.StatusCode)
		}
		if _, err := srv.Publish(name, server.Text, []byte("x")); err != server.ErrBadRoom {
			t.Errorf("Publish(%q): %v, want ErrBadRoom", name, err)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

// JWT: exp is required unless JWTAllowNoExp; JWTLeeway (default 5 s)
// bounds how long past exp a token is accepted; aud and iss are checked
// when configured.
func TestJWTClaims(t *testing.T) {
	key := []byte("correct horse battery staple 256")
	now := time.Now()
	tok := func(claims jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, key, claims) }
	base := testConfig()
	base.JWTSecret = string(key)
	strict := startServer(t, base)
	withAud := base
	withAud.JWTAudience, withAud.JWTIssuer = "loopcast", "https://login.example.com/tenant/v2.0"
	aud := startServer(t, withAud)
	lax := base
	lax.JWTAllowNoExp = true
	noExp := startServer(t, lax)
	for _, tc := range []struct {
		name   string
		srv    *server.Server
		token  string
		status int
		body   string
	}{
		{"valid", strict, tok(jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}), 101, ""},
		{"expired 10 s ago, past the 5 s leeway", strict, tok(jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()}), 401, "expired"},
		{"expired 2 s ago, within the leeway", strict, tok(jwt.MapClaims{"exp": now.Add(-2 * time.Second).Unix()}), 101, ""},
		{"no exp", strict, tok(jwt.MapClaims{"sub": "u"}), 401, "no exp"},
		{"no exp, allowed", noExp, tok(jwt.MapClaims{"sub": "u"}), 101, ""},
		{"aud and iss match", aud, tok(jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "aud": []string{"other", "loopcast"}, "iss": withAud.JWTIssuer}), 101, ""},
		{"wrong aud", aud, tok(jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "aud": "other", "iss": withAud.JWTIssuer}), 401, "aud"},
		{"wrong iss", aud, tok(jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "aud": "loopcast", "iss": "https://evil.example.com"}), 401, "iss"},
		{"no aud", aud, tok(jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "iss": withAud.JWTIssuer}), 401, "aud"},
	} {
		resp := upgrade(t, tc.srv.Addr().String(), "", "/ws/jwt", "Authorization: Bearer "+tc.token)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, resp.StatusCode, body, tc.status, tc.body)
		}
	}
}

// Secrets can come from files (mounted Kubernetes Secrets), trimmed; a
// missing file stops New with the flag's name and never the contents.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "publish-token")
	if err := os.WriteFile(tokenFile, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.PublishToken = "from-the-flag"
	cfg.PublishTokenFile = tokenFile
	srv := startServer(t, cfg)
	admin := "http://" + srv.AdminAddr().String()
	for token, want := range map[string]int{"from-a-file": 202, "from-the-flag": 401} {
		req, _ := http.NewRequest("POST", admin+"/publish/room", strings.NewReader("x"))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("token %q: %d, want %d", token, resp.StatusCode, want)
		}
	}
	http.DefaultClient.CloseIdleConnections()

	cfg = testConfig()
	cfg.JWTSecretFile = filepath.Join(dir, "missing")
	if _, err := server.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "jwt-secret-file") {
		t.Fatalf("New with a missing secret file: %v, want an error naming jwt-secret-file", err)
	}
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	cfg.JWTSecretFile = empty
	if _, err := server.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("New with an empty secret file: %v, want an error", err)
	}
}

// The admin listener is safe by default: loopback, profiles off, never
// the command line. Validate refuses a non-loopback admin address without
// a publish token unless AdminNoToken says so.
func TestAdminSafeDefaults(t *testing.T) {
	if got := server.DefaultConfig().AdminAddr; got != "127.0.0.1:9090" {
		t.Fatalf("default admin address %q, want loopback 127.0.0.1:9090", got)
	}
	for _, tc := range []struct {
		admin, token string
		noToken      bool
		ok           bool
	}{
		{":9090", "", false, false},
		{"0.0.0.0:9090", "", false, false},
		{"10.1.2.3:9090", "", false, false},
		{":9090", "t", false, true},
		{":9090", "", true, true},
		{"127.0.0.1:9090", "", false, true},
		{"[::1]:9090", "", false, true},
		{"localhost:9090", "", false, true},
	} {
		cfg := server.DefaultConfig()
		cfg.AdminAddr, cfg.PublishToken, cfg.AdminNoToken = tc.admin, tc.token, tc.noToken
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("admin %q token %q no-token %v: %v, want ok=%v", tc.admin, tc.token, tc.noToken, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "publish-token-file") {
			t.Errorf("refusal does not say what to set: %v", err)
		}
	}
	for _, pprofOn := range []bool{false, true} {
		cfg := testConfig()
		cfg.AdminAddr = "127.0.0.1:0"
		cfg.Pprof = pprofOn
		srv := startServer(t, cfg)
		admin := "http://" + srv.AdminAddr().String()
		for path, want := range map[string]int{"/debug/pprof/": map[bool]int{false: 404, true: 200}[pprofOn], "/debug/pprof/cmdline": 404} {
			resp, err := http.Get(admin + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("pprof %v: GET %s %d, want %d", pprofOn, path, resp.StatusCode, want)
			}
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

// Validate catches what a new user gets wrong: both listeners on one
// port, a port out of range, entries of AllowedOrigins that are not
// origins.
func TestValidateCatchesMistakes(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*server.Config)
		want string
	}{
		{"same port", func(c *server.Config) { c.Addr, c.AdminAddr = ":8080", ":8080"; c.AdminNoToken = true }, "port 8080"},
		{"same port, wildcard and loopback", func(c *server.Config) { c.Addr, c.AdminAddr = ":8080", "127.0.0.1:8080" }, "port 8080"},
		{"port out of range", func(c *server.Config) { c.Addr = ":99999" }, "65535"},
		{"admin port not a number", func(c *server.Config) { c.AdminAddr = "127.0.0.1:http" }, "not a number"},
		{"origin without a scheme", func(c *server.Config) { c.AllowedOrigins = []string{"localhost"} }, "scheme://host"},
		{"origin with a path", func(c *server.Config) { c.AllowedOrigins = []string{"https://app.example.com/"} }, "path"},
		{"publish burst without a rate's token", func(c *server.Config) { c.PublishRate, c.PublishBurst = 5, 0 }, "publish-burst"},
	} {
		cfg := server.DefaultConfig()
		tc.set(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	ok := server.DefaultConfig()
	ok.Addr, ok.AdminAddr = "127.0.0.1:8080", "127.0.0.2:8080" // one port, two addresses: fine
	ok.AllowedOrigins = []string{"https://app.example.com", "http://localhost:3000", "*"}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid configuration refused: %v", err)
	}
}
