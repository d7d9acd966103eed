package server_test

import (
	"strings"
	"testing"
)

// TestBugInvalidHostAnswered: RFC 9112 §3.2: "A server MUST respond with
// a 400 (Bad Request) status code to any HTTP/1.1 request message that
// lacks a Host header field and to any request message that contains more
// than one Host header field line or a Host header field with an invalid
// field value." Host = uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986
// §3.2.2-3.2.3). Health GETs and upgrades alike get 400 and are closed;
// what Application Gateway's probes send still gets 200.
func TestBugInvalidHostAnswered(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	key := newKey()
	upgradeWithHost := func(host string) string {
		return "GET /echo HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	}
	bad := []string{
		"a b",             // space: not in reg-name
		"@evil",           // userinfo delimiter
		"user@localhost",  // userinfo is not part of Host
		"localhost/x",     // path
		"a?b",             // query
		"a#b",             // fragment
		"local\"host",     // quote
		"a:b",             // port not digits
		"a:80:80",         // two ports
		":8080",           // port without a host (RFC 9110 §4.2.1: empty host is invalid)
		"[::1",            // unclosed IP-literal
		"::1",             // IPv6 without brackets
		"[::1]x",          // junk after the IP-literal
		"[1:2:3]",         // not an IPv6 address
		"[fe80::1%25en0]", // zone identifiers are not in RFC 3986's IP-literal
		"[127.0.0.1]",     // IPv4 is never bracketed
		"a%zz",            // bad percent-encoding
		"a%4",             // truncated percent-encoding
		"caf\xc3\xa9",     // raw UTF-8: IDNs travel as A-labels
	}
	for _, h := range bad {
		for _, req := range []string{"GET / HTTP/1.1\r\nHost: " + h + "\r\n\r\n", "GET /x HTTP/1.0\r\nHost: " + h + "\r\n\r\n", upgradeWithHost(h)} {
			c := dialRaw(t, srv.Addr())
			c.write([]byte(req))
			r := c.readResponse(false)
			if r.status != 400 || !strings.EqualFold(r.header.Get("Connection"), "close") {
				t.Errorf("%q: %d (Connection %q), want 400 and close", req, r.status, r.header.Get("Connection"))
				continue
			}
			if !strings.Contains(r.body, "Host") {
				t.Errorf("%q: body %q, want a reason naming Host", req, r.body)
			}
			c.expectEOF()
		}
	}
	// Two Host lines, also when both are empty or equal.
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost:\r\nHost:\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
		upgradeWithHost("localhost\r\nHost: localhost"),
	} {
		c := dialRaw(t, srv.Addr())
		c.write([]byte(req))
		if r := c.readResponse(false); r.status != 400 {
			t.Errorf("%q: %d, want 400", req, r.status)
		}
		c.expectEOF()
	}

	good := []string{
		"localhost",           // Application Gateway's default probe
		"10.1.2.3:8080",       // AGIC: the pod IP and port
		"10.1.2.3",            //
		"LocalHost:80",        // case does not matter
		"app.example.com",     //
		"xn--caf-dma.example", // an IDN as its A-label
		"[::1]",               // IP-literal
		"[::1]:8080",          //
		"[2001:db8::10.0.0.1]:443",
		"[v1.fe80::a+en1]",     // IPvFuture
		"a-b_c~d.e!$&'()*+,;=", // unreserved and sub-delims
		"a%20b",                // pct-encoded
		"a:",                   // port = *DIGIT may be empty (RFC 3986 §3.2.3)
		"999.999.999.999",      // not an IPv4 address, but a valid reg-name
		"",                     // empty: allowed (RFC 9112 §3.2)
	}
	c := dialRaw(t, srv.Addr())
	for _, h := range good {
		c.write([]byte("GET / HTTP/1.1\r\nHost: " + h + "\r\n\r\n"))
		if r := c.readResponse(false); r.status != 200 {
			t.Fatalf("Host %q: %d %q, want 200", h, r.status, r.body)
		}
	}
	// An upgrade with the pod's address as Host goes through.
	u := dialRaw(t, srv.Addr())
	u.write([]byte(upgradeWithHost("10.1.2.3:8080")))
	u.expectSwitching(key)
}
