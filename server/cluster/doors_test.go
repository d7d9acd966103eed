package cluster_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	gorilla "github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/loopcast/loopcast/server"
	"github.com/loopcast/loopcast/server/cluster"
)

// Publishing has one owner: every door (a raw member's message, a
// loopcast.v1 pub, POST /publish) goes through the same policy and the
// same route. This table drives each door through the same cases and
// expects the same outcome from each, in that door's terms.

// doorSecret signs the tokens of the forbidden case.
const doorSecret = "door-table-secret-0123456789abcd"

// outcome is what a door reports: delivered (the message came back to
// its publisher, or was acknowledged, or 202), or a refusal.
type outcome struct {
	raw   string // "delivered", or "close <code>"
	v1    string // "ack", or "err <code>"
	admin string // "202", another status, or "" when the case cannot reach the door
}

type doorCase struct {
	name string
	// start builds the instance; after runs once it is up (take NATS
	// down, say).
	start func(t *testing.T) (srv *server.Server, after func())
	token string // the clients' token ("" none)
	// payload of the publication; twice means send it twice and look at
	// the second's outcome (rate limits).
	payload string
	twice   bool
	want    outcome
}

func TestPublishingDoors(t *testing.T) {
	plain := func(adjust func(*server.Config)) func(t *testing.T) (*server.Server, func()) {
		return func(t *testing.T) (*server.Server, func()) {
			cfg := server.DefaultConfig()
			cfg.Addr, cfg.AdminAddr, cfg.EventLoops, cfg.PublishRate = "127.0.0.1:0", "", 2, 0
			if adjust != nil {
				adjust(&cfg)
			}
			srv, err := server.New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Close() })
			return srv, func() {}
		}
	}
	forbidden := sign(t, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "rooms": []string{"r"}, "publish": []string{"other"}})
	cases := []doorCase{
		{name: "allowed", start: plain(nil), payload: "hello",
			want: outcome{raw: "delivered", v1: "ack", admin: "202"}},
		{name: "forbidden", start: plain(func(c *server.Config) { c.JWTSecret = doorSecret }), token: forbidden, payload: "hello",
			want: outcome{raw: "close 1008", v1: "err forbidden"}}, // the admin API has no token claims
		{name: "rate limited", start: plain(func(c *server.Config) { c.PublishRate, c.PublishBurst = 0.001, 1 }), payload: "hello", twice: true,
			want: outcome{raw: "close 1008", v1: "err rate_limited"}}, // the admin API is not rate limited
		{name: "too large", start: plain(func(c *server.Config) { c.MaxMessage = 16 }), payload: strings.Repeat("x", 32),
			want: outcome{raw: "close 1009", v1: "err too_large", admin: "413"}},
		{name: "log down", start: func(t *testing.T) (*server.Server, func()) {
			ns := runJetStream(t, 0, "")
			n := startJSNode(t, natsURL(ns), jetstream.MemoryStorage)
			return n.srv, func() {
				ns.Shutdown()
				ns.WaitForShutdown()
				waitFor(t, 5*time.Second, "NATS gone", func() bool { return !n.stream.ClusterStatus().(cluster.StreamStatus).Connected })
			}
		}, payload: "hello",
			want: outcome{raw: "close 1013", v1: "err unavailable", admin: "503"}},
		{name: "broker down", start: func(t *testing.T) (*server.Server, func()) {
			ns := runNATS(t, 0, 0)
			n := startNode(t, natsURL(ns))
			return n.srv, func() {
				ns.Shutdown()
				ns.WaitForShutdown()
				waitFor(t, 5*time.Second, "NATS gone", func() bool { return !n.bridge.Status().Connected })
			}
		}, payload: "hello", // at most once across instances: published here
			want: outcome{raw: "delivered", v1: "ack", admin: "202"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, after := tc.start(t)
			raw := dialDoor(t, srv, "/ws/r", "", tc.token)
			v := dialDoor(t, srv, "/ws", "loopcast.v1", tc.token)
			after()
			got := outcome{raw: rawDoor(t, raw, tc), v1: v1Door(t, v, tc)}
			if tc.want.admin != "" {
				got.admin = adminDoor(srv, tc)
			}
			if got != tc.want {
				t.Fatalf("outcomes %+v, want %+v", got, tc.want)
			}
		})
	}
}

func sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(doorSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dialDoor(t *testing.T, srv *server.Server, path, proto, token string) *gorilla.Conn {
	t.Helper()
	d := gorilla.Dialer{HandshakeTimeout: 5 * time.Second}
	if proto != "" {
		d.Subprotocols = []string{proto}
	}
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	c, _, err := d.Dial("ws://"+srv.Addr().String()+path, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawDoor publishes as a raw member of room r and reports what happened:
// its own message back, or the close code.
func rawDoor(t *testing.T, c *gorilla.Conn, tc doorCase) string {
	t.Helper()
	sends := 1
	if tc.twice {
		sends = 2
	}
	var last string
	for i := range sends {
		if err := c.WriteMessage(gorilla.TextMessage, []byte(tc.payload)); err != nil {
			t.Fatalf("raw send %d: %v", i, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := c.ReadMessage()
		var ce *gorilla.CloseError
		switch {
		case errors.As(err, &ce):
			return fmt.Sprintf("close %d", ce.Code)
		case err != nil:
			t.Fatalf("raw read: %v", err)
		case string(b) != tc.payload:
			t.Fatalf("raw read %q, want its own message", b)
		}
		last = "delivered"
	}
	return last
}

// v1Door publishes with pub and reports the reply: ack or err <code>.
func v1Door(t *testing.T, c *gorilla.Conn, tc doorCase) string {
	t.Helper()
	sends := 1
	if tc.twice {
		sends = 2
	}
	var last string
	for i := range sends {
		id := i + 1
		if err := c.WriteMessage(gorilla.TextMessage, []byte(fmt.Sprintf("pub %d r\n%s", id, tc.payload))); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("v1 read: %v", err)
		}
		f := strings.Fields(string(b))
		switch {
		case len(f) == 5 && f[0] == "pub" && f[1] == fmt.Sprint(id):
			last = "ack"
		case len(f) >= 3 && f[0] == "err" && f[1] == fmt.Sprint(id):
			return "err " + f[2]
		default:
			t.Fatalf("v1 reply %q", b)
		}
	}
	return last
}

// adminDoor publishes with POST /publish/r and reports the status.
func adminDoor(srv *server.Server, tc doorCase) string {
	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("POST", "/publish/r", strings.NewReader(tc.payload)))
	return fmt.Sprint(rec.Code)
}
