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
)

func TestHealthResponder(t *testing.T) {
	srv := startServer(t, testConfig())
	base := "http://" + srv.Addr().String()
	for _, path := range []string{"/", "/health", "/healthz", "/ws", "/echo", "/anything/at/all?x=1", "/livez"} {
		for _, method := range []string{"GET", "HEAD"} {
			req, _ := http.NewRequest(method, base+path, nil)
			req.Host = "localhost" // Application Gateway's default probe
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := "ok\n"
			if method == "HEAD" {
				want = ""
			}
			if resp.StatusCode != 200 || string(body) != want || resp.ContentLength != 3 {
				t.Errorf("%s %s: %d %q (Content-Length %d), want 200 %q", method, path, resp.StatusCode, body, resp.ContentLength, want)
			}
		}
	}
	resp, err := http.Post(base+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d Allow=%q, want 405 with Allow: GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// The health responder serves pipelined and keep-alive requests on one
// connection, answering in order, whatever way the bytes are split.
func TestHealthPipelinedAndSplit(t *testing.T) {
	srv := startServer(t, testConfig())
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	reqs := "GET / HTTP/1.1\r\nHost: localhost\r\n\r\nHEAD /x HTTP/1.1\r\nHost: localhost\r\n\r\nGET /livez HTTP/1.1\r\nHost: localhost\r\n\r\n"
	// One write with three requests, then the same three one byte at a time.
	if _, err := io.WriteString(c, reqs); err != nil {
		t.Fatal(err)
	}
	for i := range len(reqs) {
		if _, err := c.Write([]byte{reqs[i]}); err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(c)
	for i := range 6 {
		method := []string{"GET", "HEAD", "GET"}[i%3]
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || (method == "GET" && string(body) != "ok\n") {
			t.Fatalf("response %d: %d %q", i, resp.StatusCode, body)
		}
	}
}

// HTTP/1.0 closes after the answer unless it asked for keep-alive.
func TestHealthHTTP10(t *testing.T) {
	srv := startServer(t, testConfig())
	for _, tc := range []struct {
		req       string
		keepAlive bool
	}{
		{"GET / HTTP/1.0\r\n\r\n", false},
		{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", false},
	} {
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		_, _ = io.WriteString(c, tc.req)
		buf := make([]byte, 4096)
		var got []byte
		for !bytes.Contains(got, []byte("ok\n")) {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("%q: %v after %q", tc.req, err, got)
			}
			got = append(got, buf[:n]...)
		}
		hasKA := bytes.Contains(got, []byte("Connection: keep-alive"))
		hasClose := bytes.Contains(got, []byte("Connection: close"))
		if tc.keepAlive && (hasClose || (strings.Contains(tc.req, "1.0") && !hasKA)) || !tc.keepAlive && !hasClose {
			t.Errorf("%q: answer %q", tc.req, got)
		}
		if tc.keepAlive {
			// Kept: a second request on it is answered.
			_, _ = io.WriteString(c, tc.req)
			got = nil
			for !bytes.Contains(got, []byte("ok\n")) {
				n, err := c.Read(buf)
				if err != nil {
					t.Fatalf("%q: second request on a kept-alive connection: %v after %q", tc.req, err, got)
				}
				got = append(got, buf[:n]...)
			}
		} else {
			// Closed: the end of the stream follows the answer.
			if n, err := c.Read(buf); err != io.EOF {
				t.Errorf("%q: %q %v after the answer, want the connection closed", tc.req, buf[:n], err)
			}
		}
		c.Close()
	}
}

// BenchmarkHealthKeepAlive measures probes over one keep-alive connection,
// 16 pipelined at a time. allocs/op counts the whole process (server and
// this client); steady state is 0.
func BenchmarkHealthKeepAlive(b *testing.B) {
	srv := startServer(b, testConfig())
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const batch = 16
	req := []byte("GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: ApplicationGatewayProbe\r\n\r\n")
	reqs := bytes.Repeat(req, batch)
	respLen := len("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: 3\r\n\r\nok\n")
	buf := make([]byte, respLen*batch)
	roundTrip := func() {
		if _, err := c.Write(reqs); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
	roundTrip() // warm up buffers and pools
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		roundTrip()
	}
}
