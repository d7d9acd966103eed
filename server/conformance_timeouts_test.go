package server_test

import (
	"strings"
	"testing"
	"time"
)

// ---------------------------------------------------------------------
// Keepalive and timeouts
//
// These tests assert what happens (pings sent, a connection kept or
// closed, the close counted under its reason) and lower bounds only: a
// timeout never fires early, which no load can make happen. How late a
// loaded machine lets it fire is not asserted (every wait is bounded by
// ioTimeout or keepaliveWait, only so a broken server fails instead of
// hanging). A client that must stay open gets an idle timeout far above
// how long a loaded machine may keep it from answering.

// keepaliveWait bounds waits for something the server does by itself
// (pings, an idle close), far above the timeouts configured below.
const keepaliveWait = 20 * time.Second

func TestConformanceKeepalive(t *testing.T) {
	// Pings every 100 ms; a client that answers them (or sends data
	// every 50 ms) is silent for a ping interval and its own latency, a
	// small part of the 2 s idle timeout however slowly the machine runs.
	cfg := testConfig()
	cfg.PingInterval = 100 * time.Millisecond
	cfg.IdleTimeout = 2 * time.Second
	srv := startServer(t, cfg)
	// silent: a short idle timeout, so the silent client is closed soon.
	silentCfg := testConfig()
	silentCfg.PingInterval = 100 * time.Millisecond
	silentCfg.IdleTimeout = 300 * time.Millisecond
	silent := startServer(t, silentCfg)

	t.Run("answering-client-stays", func(t *testing.T) {
		t.Parallel()
		// Answered pings keep the connection open past the idle
		// timeout: it must see the pings of more than one idle
		// timeout (timed from after the upgrade, so at least that).
		c := dialWS(t, srv.Addr(), "/echo")
		start := time.Now()
		pings := 0
		for pings < 5 || time.Since(start) < cfg.IdleTimeout+cfg.IdleTimeout/2 {
			f := c.mustFrame()
			if f.op != opPing {
				t.Fatalf("got %v, want only pings", f)
			}
			pings++
			c.send(true, opPong, f.payload)
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
		t.Parallel()
		start := time.Now() // before the dial: the server's idle clock starts later
		c := dialWS(t, silent.Addr(), "/echo")
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
			if time.Since(start) > keepaliveWait {
				t.Fatalf("a silent client still open after %s (idle timeout %s)", keepaliveWait, silentCfg.IdleTimeout)
			}
		}
		// Never early (its 10 ms ticks may round it down by one); how
		// late is the machine's business.
		if d := time.Since(start); d < silentCfg.IdleTimeout-2*silentCfg.IdleTimeout/30 {
			t.Fatalf("idle connection closed after %s, before the %s idle timeout", d, silentCfg.IdleTimeout)
		}
		if pings == 0 {
			t.Fatal("no ping before the idle close")
		}
		waitFor(t, ioTimeout, "idle close counted", func() bool { return silent.Stats().Closes["idle_timeout"] == 1 })
	})

	t.Run("data-counts-as-activity", func(t *testing.T) {
		t.Parallel()
		// A client that sends data but never answers pings is alive
		// past the idle timeout.
		c := dialWS(t, srv.Addr(), "/echo")
		start := time.Now()
		for time.Since(start) < cfg.IdleTimeout+cfg.IdleTimeout/2 {
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

// TestConformanceHandshakeTimeout: a connection without a complete
// request head is closed once the handshake timeout passed, never before,
// and counted as handshake_timeout. The timeout (1 s) is far above how
// long a loaded machine may take this client from its dial to its write,
// which it must not miss (the server would rightly close it first).
func TestConformanceHandshakeTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.HandshakeTimeout = time.Second
	srv := startServer(t, cfg)
	t.Run("cases", func(t *testing.T) {
		for _, tc := range []struct{ name, sent string }{
			{"half-head", "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"},
			{"nothing", ""},
			{"after-keepalive-request", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				start := time.Now() // before the dial: the server's deadline starts later
				c := dialRaw(t, srv.Addr())
				if tc.sent != "" {
					c.write([]byte(tc.sent))
				}
				if strings.Count(tc.sent, "\r\n\r\n") == 1 {
					if r := c.readResponse(false); r.status != 200 {
						t.Fatalf("status %d", r.status)
					}
				}
				c.readUntilClosed(ioTimeout)
				// Never early: the deadline counts in ticks of a tenth
				// of the timeout, which may round it down by one.
				if d := time.Since(start); d < cfg.HandshakeTimeout-2*cfg.HandshakeTimeout/10 {
					t.Fatalf("closed %s after the dial, before the %s handshake timeout", d, cfg.HandshakeTimeout)
				}
			})
		}
	})
	waitFor(t, ioTimeout, "handshake timeouts counted", func() bool { return srv.Stats().Closes["handshake_timeout"] == 3 })
}
