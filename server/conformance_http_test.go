package server_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/server"
)

// ---------------------------------------------------------------------
// The HTTP front door

// httpCase sends raw request bytes and checks the answer.
type httpCase struct {
	name    string
	req     string
	head    bool   // the request is HEAD: no body in the answer
	status  int    // expected status
	header  string // "Name: value" that must be present
	body    string // substring the body must contain
	closes  bool   // the server must close the connection after answering
	cfgName string // which server: "" default, "origins"
}

func TestConformanceHTTP(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	ocfg := testConfig()
	ocfg.AllowedOrigins = []string{"https://app.example.com"}
	osrv := startServer(t, ocfg)

	key := newKey()
	up := func(path string, extra ...string) string {
		h := "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		have := strings.Join(extra, "")
		if !strings.Contains(have, "Sec-WebSocket-Key") {
			h += "Sec-WebSocket-Key: " + key + "\r\n"
		}
		if !strings.Contains(have, "Sec-WebSocket-Version") {
			h += "Sec-WebSocket-Version: 13\r\n"
		}
		return h + have + "\r\n"
	}
	big := "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 9<<10) + "\r\n\r\n"
	cases := []httpCase{
		{name: "health-get-root", req: "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", status: 200, body: "ok\n"},
		{name: "health-head-root", req: "HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n", head: true, status: 200, header: "Content-Length: 3"},
		{name: "health-any-path", req: "GET /anything/else?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", status: 200, body: "ok\n"},
		{name: "livez", req: "GET /livez HTTP/1.1\r\nHost: a\r\n\r\n", status: 200},
		{name: "health-ws-path-without-upgrade", req: "GET /ws/room HTTP/1.1\r\nHost: a\r\n\r\n", status: 200, body: "ok\n"},
		{name: "health-connection-close", req: "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", status: 200, header: "Connection: close", closes: true},
		{name: "http10-closes", req: "GET / HTTP/1.0\r\n\r\n", status: 200, body: "ok\n", closes: true},
		{name: "http10-keep-alive", req: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", status: 200, header: "Connection: keep-alive"},
		{name: "absolute-form", req: "GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n", status: 200},
		{name: "post", req: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", status: 405, header: "Allow: GET, HEAD", closes: true},
		{name: "put-upgrade", req: "PUT /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", status: 405, closes: true},
		{name: "unknown-upgrade-path", req: up("/nope"), status: 404, closes: true},
		{name: "upgrade-bad-room-name", req: up("/ws/bad!name"), status: 400, closes: true},
		{name: "upgrade-room-name-too-long", req: up("/ws/" + strings.Repeat("r", 65)), status: 400, closes: true},
		{name: "upgrade-key-123", req: up("/ws", "Sec-WebSocket-Key: 123\r\n"), status: 400, body: "dGhlIHNhbXBsZSBub25jZQ==", closes: true},
		{name: "upgrade-key-18-bytes", req: up("/echo", "Sec-WebSocket-Key: "+strings.Repeat("A", 24)+"\r\n"), status: 400, body: "base64", closes: true},
		{name: "upgrade-key-not-base64", req: up("/echo", "Sec-WebSocket-Key: "+strings.Repeat("!", 22)+"==\r\n"), status: 400, body: "base64", closes: true},
		{name: "upgrade-key-12-bytes", req: up("/echo", "Sec-WebSocket-Key: "+strings.Repeat("A", 16)+"\r\n"), status: 400, body: "base64", closes: true},
		{name: "upgrade-key-missing", req: "GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", status: 400, closes: true},
		{name: "upgrade-version-8", req: up("/echo", "Sec-WebSocket-Version: 8\r\n"), status: 426, header: "Sec-WebSocket-Version: 13", closes: true},
		{name: "upgrade-version-missing", req: "GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\n\r\n", status: 426, header: "Sec-WebSocket-Version: 13", closes: true},
		{name: "upgrade-http10", req: strings.Replace(up("/echo"), "HTTP/1.1", "HTTP/1.0", 1), status: 400, closes: true},
		{name: "upgrade-without-connection-upgrade", req: strings.Replace(up("/echo"), "Connection: Upgrade", "Connection: keep-alive", 1), status: 400, closes: true},
		{name: "upgrade-with-body", req: up("/echo", "Content-Length: 3\r\n") + "abc", status: 400, closes: true},
		{name: "head-431", req: big, status: 431, closes: true},
		{name: "malformed-request-line", req: "GARBAGE\r\n\r\n", status: 400, closes: true},
		{name: "request-line-no-version", req: "GET /\r\n\r\n", status: 400, closes: true},
		{name: "request-line-bad-version", req: "GET / HTTP/x.y\r\n\r\n", status: 400, closes: true},
		{name: "request-line-relative-target", req: "GET echo HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, closes: true},
		{name: "http2-version", req: "GET / HTTP/2.0\r\n\r\n", status: 505, closes: true},
		{name: "obs-fold", req: "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", status: 400, closes: true},
		{name: "space-before-colon", req: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", status: 400, closes: true},
		{name: "duplicate-host", req: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400, closes: true},
		// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request)
		// status code to any HTTP/1.1 request message that lacks a Host
		// header field"; an empty Host is valid, and HTTP/1.0 needs none.
		{name: "http11-without-host", req: "GET / HTTP/1.1\r\n\r\n", status: 400, body: "Host", closes: true},
		{name: "upgrade-without-host", req: strings.Replace(up("/echo"), "Host: 127.0.0.1\r\n", "", 1), status: 400, body: "Host", closes: true},
		{name: "http11-empty-host", req: "GET / HTTP/1.1\r\nHost:\r\n\r\n", status: 200, body: "ok\n"},
		// ... "or a Host header field with an invalid field value"
		// (host_validation_test.go has the grammar's cases).
		{name: "invalid-host", req: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", status: 400, body: "Host", closes: true},
		{name: "upgrade-invalid-host", req: strings.Replace(up("/echo"), "Host: 127.0.0.1", "Host: @evil", 1), status: 400, body: "Host", closes: true},
		{name: "host-pod-ip-port", req: "GET / HTTP/1.1\r\nHost: 10.1.2.3:8080\r\n\r\n", status: 200, body: "ok\n"},
		{name: "duplicate-key", req: up("/echo", "Sec-WebSocket-Key: "+newKey()+"\r\n", "Sec-WebSocket-Key: "+newKey()+"\r\n"), status: 400, closes: true},
		{name: "origin-wrong", req: up("/echo", "Origin: https://evil.example.com\r\n"), status: 403, closes: true, cfgName: "origins"},
		{name: "origin-missing", req: up("/echo"), status: 403, closes: true, cfgName: "origins"},
		{name: "origin-health-unaffected", req: "GET / HTTP/1.1\r\nHost: a\r\nOrigin: https://evil.example.com\r\n\r\n", status: 200, cfgName: "origins"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := srv.Addr()
			if tc.cfgName == "origins" {
				addr = osrv.Addr()
			}
			c := dialRaw(t, addr)
			c.write([]byte(tc.req))
			r := c.readResponse(tc.head)
			checkResponse(t, r, tc)
			if tc.closes {
				c.expectEOF()
				return
			}
			// Kept alive: a second request on the same connection works.
			c.write([]byte("GET /again HTTP/1.1\r\nHost: a\r\n\r\n"))
			if r := c.readResponse(false); r.status != 200 || r.body != "ok\n" {
				t.Fatalf("second request on a kept-alive connection: %d %q", r.status, r.body)
			}
		})
	}

	t.Run("origin-allowed", func(t *testing.T) {
		c := dialRaw(t, osrv.Addr())
		k := newKey()
		c.write([]byte(strings.Replace(upgradeRequest("/echo", k), "Origin: http://localhost", "Origin: HTTPS://app.example.com", 1)))
		c.expectSwitching(k)
		c.expectEcho(opText, []byte("hi"))
		c.closeHandshake()
	})

	t.Run("seed-curl-check", func(t *testing.T) {
		// The seed's literal curl check uses an invalid key; with a valid
		// one the same request upgrades.
		c := dialRaw(t, srv.Addr())
		k := newKey()
		c.write([]byte("GET /ws HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n" +
			"Connection: Upgrade\r\nUpgrade: websocket\r\nOrigin: http://localhost\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + k + "\r\n\r\n"))
		c.expectSwitching(k)
		c.closeHandshake()
	})

	t.Run("firefox-connection-header", func(t *testing.T) {
		c := dialRaw(t, srv.Addr())
		k := newKey()
		c.write([]byte(strings.Replace(upgradeRequest("/echo", k), "Connection: Upgrade", "Connection: keep-alive, Upgrade", 1)))
		c.expectSwitching(k)
		c.closeHandshake()
	})

	t.Run("header-names-and-tokens-case-insensitive", func(t *testing.T) {
		c := dialRaw(t, srv.Addr())
		k := newKey()
		c.write([]byte("GET /echo HTTP/1.1\r\nhost: a\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\n" +
			"sec-websocket-key: " + k + "\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n"))
		c.expectSwitching(k)
		c.closeHandshake()
	})

	t.Run("deflate-offer-accepted", func(t *testing.T) {
		// Compression on (the default): accepted, without context takeover
		// on either side (RFC 7692 §7.1.1.1, §7.1.1.2); a compressed
		// message (RSV1) inflates and echoes.
		c := dialRaw(t, srv.Addr())
		k := newKey()
		c.write([]byte(strings.Replace(upgradeRequest("/echo", k), "\r\n\r\n",
			"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n", 1)))
		r := c.readResponse(false)
		if r.status != 101 || r.header.Get("Sec-WebSocket-Extensions") != "permessage-deflate; server_no_context_takeover; client_no_context_takeover" || r.header.Get("Sec-WebSocket-Accept") != acceptFor(k) {
			t.Fatalf("answer to a deflate offer: %+v", r)
		}
		// RFC 7692 §7.2.3.1: "Hello" compressed.
		c.write(frameSpec{fin: true, rsv: 4, op: opText, payload: []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}}.encode())
		c.expectFrame(opText, []byte("Hello")) // short echoes go uncompressed
		c.closeHandshake()
	})

	t.Run("pipelined", func(t *testing.T) {
		c := dialRaw(t, srv.Addr())
		c.write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n" +
			"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n" +
			"GET /livez HTTP/1.1\r\nHost: a\r\n\r\n" +
			"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
		if r := c.readResponse(false); r.status != 200 || r.body != "ok\n" || r.header.Get("Connection") != "" {
			t.Fatalf("1st: %+v", r)
		}
		if r := c.readResponse(true); r.status != 200 || r.header.Get("Content-Length") != "3" {
			t.Fatalf("2nd (HEAD): %+v", r)
		}
		if r := c.readResponse(false); r.status != 200 {
			t.Fatalf("3rd: %+v", r)
		}
		if r := c.readResponse(false); r.status != 200 || r.body != "ok\n" || !strings.EqualFold(r.header.Get("Connection"), "close") {
			t.Fatalf("4th: %+v", r)
		}
		c.expectEOF()
	})

	t.Run("pipelined-then-upgrade-then-frame", func(t *testing.T) {
		c := dialRaw(t, srv.Addr())
		k := newKey()
		c.write(concat([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), []byte(upgradeRequest("/echo", k)), txt("after upgrade")))
		if r := c.readResponse(false); r.status != 200 {
			t.Fatalf("health: %+v", r)
		}
		c.expectSwitching(k)
		c.expectFrame(opText, []byte("after upgrade"))
		c.closeHandshake()
	})

	t.Run("keep-alive-reuse", func(t *testing.T) {
		c := dialRaw(t, srv.Addr())
		for i := range 5 {
			c.write([]byte(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: a\r\n\r\n", i)))
			if r := c.readResponse(false); r.status != 200 || r.body != "ok\n" {
				t.Fatalf("request %d: %+v", i, r)
			}
		}
	})

	t.Run("head-split-across-writes", func(t *testing.T) {
		for _, chunk := range []int{1, 7} {
			t.Run(fmt.Sprint(chunk), func(t *testing.T) {
				c := dialRaw(t, srv.Addr())
				k := newKey()
				c.writeChunks([]byte(upgradeRequest("/echo", k)), chunk)
				c.expectSwitching(k)
				c.expectEcho(opText, []byte("split head"))
				c.closeHandshake()

				h := dialRaw(t, srv.Addr())
				h.writeChunks([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), chunk)
				if r := h.readResponse(false); r.status != 200 || r.body != "ok\n" {
					t.Fatalf("health: %+v", r)
				}
			})
		}
	})

	t.Run("head-exactly-8KiB", func(t *testing.T) {
		prefix := "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: "
		suffix := "\r\n\r\n"
		req := prefix + strings.Repeat("p", server.MaxHeadBytes-len(prefix)-len(suffix)) + suffix
		c := dialRaw(t, srv.Addr())
		c.write([]byte(req))
		if r := c.readResponse(false); r.status != 200 {
			t.Fatalf("an 8 KiB head: status %d, want 200", r.status)
		}
	})

	t.Run("lf-only-lines", func(t *testing.T) {
		c := dialRaw(t, srv.Addr())
		c.write([]byte("GET / HTTP/1.1\nHost: a\n\n"))
		if r := c.readResponse(false); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	})
}

func checkResponse(t *testing.T, r httpResponse, tc httpCase) {
	t.Helper()
	if r.proto != "HTTP/1.1" {
		t.Errorf("protocol %q, want HTTP/1.1", r.proto)
	}
	if r.status != tc.status {
		t.Fatalf("status %d, want %d (body %q)", r.status, tc.status, r.body)
	}
	if tc.header != "" {
		name, value, _ := strings.Cut(tc.header, ": ")
		found := false
		for _, v := range r.header[strings.ToLower(name)] {
			found = found || strings.EqualFold(v, value)
		}
		if !found {
			t.Errorf("header %s: %q, want %q", name, r.header[strings.ToLower(name)], value)
		}
	}
	if tc.head && r.body != "" {
		t.Errorf("HEAD answer has a body %q", r.body)
	}
	if !strings.Contains(r.body, tc.body) {
		t.Errorf("body %q, want it to contain %q", r.body, tc.body)
	}
	if tc.closes != strings.EqualFold(r.header.Get("Connection"), "close") && tc.status != 200 {
		t.Errorf("Connection header %q on an answer that closes=%v", r.header.Get("Connection"), tc.closes)
	}
	if !bytes.HasSuffix([]byte(r.body), []byte("\n")) && !tc.head {
		t.Errorf("body %q does not end in a newline", r.body)
	}
}
