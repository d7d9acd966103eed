package server_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/server"
)

// The admin listener bounds what one client can hold: the request (head
// and body), the response, an idle keep-alive connection, the head's
// size and the number of connections; and its pprof routes need the
// publish token when one is set. Tests that shorten a limit
// (SetAdminLimits) do not run in parallel.

// startAdminServer runs a server with an admin listener and returns it
// with the admin address and an HTTP client closed at cleanup.
func startAdminServer(t *testing.T, token string, pprof bool) (*server.Server, string, *http.Client) {
	t.Helper()
	cfg := testConfig()
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.PublishToken = token
	cfg.Pprof = pprof
	srv := startServer(t, cfg)
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	return srv, srv.AdminAddr().String(), client
}

// adminDo sends one request and returns its status, the body read and
// closed.
func adminDo(t *testing.T, client *http.Client, method, url, token, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func dialAdmin(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A POST whose body comes a byte at a time is cut at the read timeout:
// the server closes the connection (it may answer first, but never
// publishes), and the next request is served.
func TestAdminDribbledBodyIsCut(t *testing.T) {
	server.SetAdminLimits(t, server.AdminLimits{Read: time.Second})
	_, addr, client := startAdminServer(t, "s3cret", false)
	c := dialAdmin(t, addr)
	head := "POST /publish/dribble HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer s3cret\r\n" +
		"Content-Type: text/plain\r\nContent-Length: 1048576\r\n\r\n"
	_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	type result struct {
		got []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Generous: the body would take hours at this pace.
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		got, err := io.ReadAll(c)
		done <- result{got, err}
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var res result
dribble:
	for {
		select {
		case res = <-done:
			break dribble
		case <-tick.C:
			_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
			if _, err := c.Write([]byte("x")); err != nil {
				res = <-done // the server closed: the reader sees it too
				break dribble
			}
		}
	}
	if res.err != nil && !isClosed(res.err) {
		t.Fatalf("want the connection closed by the server, got %v after %q", res.err, res.got)
	}
	if bytes.HasPrefix(res.got, []byte("HTTP/1.1 2")) {
		t.Fatalf("the dribbled body was accepted: %q", res.got)
	}
	if code := adminDo(t, client, "POST", "http://"+addr+"/publish/dribble", "s3cret", "whole"); code != 202 {
		t.Fatalf("a normal publish afterwards: %d, want 202", code)
	}
}

// A keep-alive connection that sends no further request is closed at
// the idle timeout.
func TestAdminIdleConnectionClosed(t *testing.T) {
	server.SetAdminLimits(t, server.AdminLimits{Idle: 200 * time.Millisecond})
	_, addr, _ := startAdminServer(t, "", false)
	c := dialAdmin(t, addr)
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.Write([]byte("GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("GET /metrics: %d, close %v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	var b [1]byte
	if n, err := br.Read(b[:]); n != 0 || !isClosed(err) {
		t.Fatalf("idle connection: read %d bytes, %v; want it closed by the server", n, err)
	}
}

// A request head over the admin listener's limit gets 431.
func TestAdminHeadTooLarge(t *testing.T) {
	t.Parallel()
	_, addr, client := startAdminServer(t, "", false)
	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	req.Header.Set("X-Pad", strings.Repeat("p", 20<<10))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("20 KiB header: %d, want 431", resp.StatusCode)
	}
	if code := adminDo(t, client, "GET", "http://"+addr+"/metrics", "", ""); code != 200 {
		t.Fatalf("a normal request afterwards: %d", code)
	}
}

// Beyond the connection cap a new connection is not served until one
// closes.
func TestAdminConnectionCap(t *testing.T) {
	server.SetAdminLimits(t, server.AdminLimits{MaxConns: 2})
	_, addr, _ := startAdminServer(t, "", false)
	get := []byte("GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
	var held []net.Conn
	for range 2 {
		c := dialAdmin(t, addr)
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		if _, err := c.Write(get); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("connection %d: %v %v", len(held), resp, err)
		}
		resp.Body.Close()
		held = append(held, c) // kept alive: it counts
	}
	third := dialAdmin(t, addr) // the kernel completes the handshake
	if _, err := third.Write(get); err != nil {
		t.Fatal(err)
	}
	// Not served while two are open. (A broken cap answers at once; a
	// working one never does, however slow the machine.)
	br := bufio.NewReader(third)
	_ = third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br.Peek(1); !isTimeout(err) {
		t.Fatalf("third connection answered (%v) while two are open", err)
	}
	held[0].Close()
	_ = third.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("third connection once one closed: %v %v", resp, err)
	}
	resp.Body.Close()
}

// With a publish token every /debug/pprof/ route needs it, as /stats
// does; without one (a loopback admin listener) they stay open.
// /debug/pprof/cmdline is never served.
func TestAdminPprofToken(t *testing.T) {
	t.Parallel()
	t.Run("token set", func(t *testing.T) {
		t.Parallel()
		_, addr, client := startAdminServer(t, "s3cret", true)
		base := "http://" + addr
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=2",
			"/debug/pprof/symbol", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1", "/debug/pprof/cmdline"} {
			for _, token := range []string{"", "wrong"} {
				if code := adminDo(t, client, "GET", base+path, token, ""); code != 401 {
					t.Errorf("GET %s with token %q: %d, want 401", path, token, code)
				}
			}
		}
		for path, want := range map[string]int{"/debug/pprof/": 200, "/debug/pprof/heap": 200, "/debug/pprof/symbol": 200,
			"/debug/pprof/cmdline": 404} {
			if code := adminDo(t, client, "GET", base+path, "s3cret", ""); code != want {
				t.Errorf("GET %s with the token: %d, want %d", path, code, want)
			}
		}
	})
	t.Run("no token", func(t *testing.T) {
		t.Parallel()
		_, addr, client := startAdminServer(t, "", true)
		for path, want := range map[string]int{"/debug/pprof/": 200, "/debug/pprof/heap": 200, "/debug/pprof/symbol": 200,
			"/debug/pprof/cmdline": 404} {
			if code := adminDo(t, client, "GET", "http://"+addr+path, "", ""); code != want {
				t.Errorf("GET %s: %d, want %d", path, code, want)
			}
		}
	})
}

// The write timeout does not cut a CPU profile that runs longer:
// net/http/pprof extends the write deadline by the profile's seconds.
func TestAdminPprofProfileOutlastsWriteTimeout(t *testing.T) {
	server.SetAdminLimits(t, server.AdminLimits{Write: time.Second})
	_, addr, client := startAdminServer(t, "s3cret", true)
	req, _ := http.NewRequest("GET", "http://"+addr+"/debug/pprof/profile?seconds=2", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(body) == 0 {
		t.Fatalf("2 s profile with a 1 s write timeout: %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}
}
