package scenario

import "testing"

func TestParseResponse(t *testing.T) {
	cases := []struct {
		name   string
		in     string
		status int
		n      int
		keep   bool
		err    bool
		incomp bool
	}{
		{name: "content-length", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1", status: 200, n: 40, keep: true},
		{name: "close", in: "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 8\r\n\r\ndraining", status: 503, n: 82},
		{name: "http/1.0", in: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", status: 200, n: 38},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", status: 200, n: 59, keep: true},
		{name: "chunked, incomplete", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n", incomp: true},
		{name: "head incomplete", in: "HTTP/1.1 200 OK\r\nContent-Len", incomp: true},
		{name: "body incomplete", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", incomp: true},
		{name: "no length", in: "HTTP/1.1 200 OK\r\n\r\nok", err: true},
		{name: "not http", in: "SSH-2.0-OpenSSH\r\n\r\n", err: true},
		{name: "bad length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: true},
		{name: "gzip te", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", err: true},
	}
	for _, c := range cases {
		status, n, keep, err := parseResponse([]byte(c.in))
		switch {
		case c.incomp:
			if err != errIncomplete {
				t.Errorf("%s: err %v, want incomplete", c.name, err)
			}
		case c.err:
			if err == nil || err == errIncomplete {
				t.Errorf("%s: err %v, want an error", c.name, err)
			}
		case err != nil || status != c.status || n != c.n || keep != c.keep:
			t.Errorf("%s: got %d %d %v %v, want %d %d %v", c.name, status, n, keep, err, c.status, c.n, c.keep)
		}
	}
}

func TestSourceIPs(t *testing.T) {
	if ips := sourceIPs("127.0.0.1:8080", 3); len(ips) != 3 || ips[2].String() != "127.0.0.4" {
		t.Fatalf("got %v", ips)
	}
	for _, addr := range []string{"[::1]:8080", "localhost:8080", "10.0.0.1:80", "nonsense"} {
		if ips := sourceIPs(addr, 4); ips != nil {
			t.Errorf("%s: got %v, want none", addr, ips)
		}
	}
}
