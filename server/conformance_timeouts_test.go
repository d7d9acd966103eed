package server_test

import (
	"strings"
	"testing"
	"time"
)

// ---------------------------------------------------------------------
// Keepalive and timeouts

func TestConformanceKeepalive(t *testing.T) {
	cfg := testConfig()
	cfg.PingInterval = 100 * time.Millisecond
	cfg.IdleTimeout = 300 * time.Millisecond
	srv := startServer(t, cfg)

	t.Run("answering-client-stays", func(t *testing.T) {
		c := dialWS(t, srv.Addr(), "/echo")
		start := time.Now()
		pings := 0
		for time.Since(start) < 1200*time.Millisecond {
			f := c.mustFrame()
			if f.op != opPing {
				t.Fatalf("got %v, want only pings", f)
			}
			pings++
			c.send(true, opPong, f.payload)
		}
		if pings < 5 {
			t.Fatalf("%d pings in 1.2s with a 100ms ping interval", pings)
		}
		// Still open and working; skip pings that race the echo.
		c.send(true, opText, []byte("alive"))
		for {
			f := c.mustFrame()
			if f.op == opPing {
				continue
			}
			if f.op != opText || string(f.payload) != "alive" {
				t.Fatalf("got %v, want the echo", f)
			}
			break
		}
		c.send(true, opClose, closePayload(1000, ""))
		for {
			f := c.mustFrame()
			if f.op == opPing {
				continue
			}
			if f.op != opClose || f.closeCode() != 1000 {
				t.Fatalf("got %v, want close 1000", f)
			}
			break
		}
		c.expectEOF()
	})

	t.Run("silent-client-closed", func(t *testing.T) {
		c := dialWS(t, srv.Addr(), "/echo")
		start := time.Now()
		pings := 0
		for {
			f, err := c.readFrame()
			if err != nil {
				if !isClosed(err) {
					t.Fatalf("want the idle connection closed: %v", err)
				}
				break
			}
			if f.op != opPing {
				t.Fatalf("got %v, want only pings before the idle close", f)
			}
			pings++
		}
		d := time.Since(start)
		if d < 250*time.Millisecond || d > 2*time.Second {
			t.Fatalf("idle connection closed after %s, want about the 300ms idle timeout", d)
		}
		if pings == 0 {
			t.Fatal("no ping before the idle close")
		}
		waitFor(t, ioTimeout, "idle close counted", func() bool { return srv.Stats().Closes["idle_timeout"] == 1 })
	})

	t.Run("data-counts-as-activity", func(t *testing.T) {
		// A client that sends data but never answers pings is alive.
		c := dialWS(t, srv.Addr(), "/echo")
		start := time.Now()
		for time.Since(start) < 700*time.Millisecond {
			c.send(true, opBinary, []byte("x"))
			for {
				f := c.mustFrame()
				if f.op == opBinary {
					break
				}
				if f.op != opPing {
					t.Fatalf("got %v", f)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func TestConformanceHandshakeTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.HandshakeTimeout = 200 * time.Millisecond
	srv := startServer(t, cfg)
	for _, tc := range []struct{ name, sent string }{
		{"half-head", "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"},
		{"nothing", ""},
		{"after-keepalive-request", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, srv.Addr())
			start := time.Now()
			if tc.sent != "" {
				c.write([]byte(tc.sent))
			}
			if strings.Count(tc.sent, "\r\n\r\n") == 1 {
				if r := c.readResponse(false); r.status != 200 {
					t.Fatalf("status %d", r.status)
				}
			}
			d := c.readUntilClosed(ioTimeout)
			if d < 150*time.Millisecond || d > 2*time.Second {
				t.Fatalf("closed after %s, want about the 200ms handshake timeout", time.Since(start))
			}
		})
	}
	waitFor(t, ioTimeout, "handshake timeouts counted", func() bool { return srv.Stats().Closes["handshake_timeout"] == 3 })
}
