package reqhead

import (
	"bytes"
	"strings"
	"testing"
)

const seedCurl = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n" +
	"Connection: Upgrade\r\nUpgrade: websocket\r\nOrigin: http://localhost\r\n" +
	"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: 123\r\n\r\n"

func TestParseUpgrade(t *testing.T) {
	var h Head
	if err := Parse([]byte(seedCurl+"trailing"), 8192, &h); err != nil {
		t.Fatal(err)
	}
	if string(h.Method) != "GET" || string(h.Path) != "/ws" || h.Minor != 1 || h.Len != len(seedCurl) {
		t.Fatalf("request line: %+v", h)
	}
	if h.Tokens != ConnUpgrade|UpgradeWS || string(h.Key) != "123" ||
		string(h.Version) != "13" || string(h.Origin) != "http://localhost" || string(h.Host) != "localhost" {
		t.Fatalf("fields: %+v", h)
	}
	if !h.KeepAlive() {
		t.Fatal("HTTP/1.1 without Connection: close must be keep-alive")
	}
}

func TestParseTokensAndVersions(t *testing.T) {
	cases := []struct {
		head      string
		tokens    int
		keepAlive bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n", ConnKeepAlive | ConnUpgrade | UpgradeWS, true},
		{"GET / HTTP/1.1\r\nHost: a\r\nconnection: CLOSE\r\n\r\n", ConnClose, false},
		{"GET / HTTP/1.0\r\n\r\n", 0, false},
		{"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", ConnKeepAlive, true},
		{"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c, websocket/13\r\nConnection: upgrade\r\nConnection: close\r\n\r\n", ConnUpgrade | ConnClose, false},
		{"GET / HTTP/1.1\nHost:a\nUpgrade:websocket\n\n", UpgradeWS, true}, // bare LF lines, no OWS
	}
	for _, c := range cases {
		var h Head
		if err := Parse([]byte(c.head), 8192, &h); err != nil {
			t.Fatalf("%q: %v", c.head, err)
		}
		if h.Tokens != c.tokens || h.KeepAlive() != c.keepAlive {
			t.Errorf("%q: tokens %b keep-alive %v, want %b %v", c.head, h.Tokens, h.KeepAlive(), c.tokens, c.keepAlive)
		}
	}
}

func TestParseTargets(t *testing.T) {
	cases := map[string][2]string{
		"GET /ws/room-1?token=abc HTTP/1.1\r\nHost: a\r\n\r\n":              {"/ws/room-1", "token=abc"},
		"GET http://example.com/ws?x HTTP/1.1\r\nHost: example.com\r\n\r\n": {"/ws", "x"},
		"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n":      {"/", ""},
		"\r\nGET /after-empty-line HTTP/1.1\r\nHost: a\r\n\r\n":             {"/after-empty-line", ""},
	}
	for in, want := range cases {
		var h Head
		if err := Parse([]byte(in), 8192, &h); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if string(h.Path) != want[0] || string(h.Query) != want[1] {
			t.Errorf("%q: path %q query %q, want %q %q", in, h.Path, h.Query, want[0], want[1])
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]error{
		"GET / HTTP/1.1\r\nHost: a\r\n":             ErrIncomplete,
		"GET / HTTP/1.1\r\n":                        ErrIncomplete,
		"":                                          ErrIncomplete,
		"GET /\r\n\r\n":                             ErrRequestLine,
		" GET / HTTP/1.1\r\n\r\n":                   ErrRequestLine,
		"G(T / HTTP/1.1\r\n\r\n":                    ErrRequestLine,
		"GET ws HTTP/1.1\r\n\r\n":                   ErrTarget,
		"GET / HTTP/1.1 extra\r\n\r\n":              ErrVersion,
		"GET / HTTP/1\r\n\r\n":                      ErrVersion,
		"GET / HTTP/2.0\r\n\r\n":                    ErrVersionSupport,
		"GET / HTTP/1.1\r\nHost a\r\n\r\n":          ErrHeaderLine,
		"GET / HTTP/1.1\r\nHost : a\r\n\r\n":        ErrHeaderLine,
		"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n":       ErrHeaderLine,
		"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n": ErrObsFold,
		"GET / HTTP/1.1\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Key: b\r\n\r\n": ErrDuplicate,
		"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n":                           ErrContentLength,
		"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n":       ErrContentLength,
	}
	for in, want := range cases {
		var h Head
		if err := Parse([]byte(in), 8192, &h); err != want {
			t.Errorf("%q: got %v, want %v", in, err, want)
		}
	}
}

func TestParseLimit(t *testing.T) {
	big := "GET / HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 9000) + "\r\n\r\n"
	var h Head
	if err := Parse([]byte(big), 8192, &h); err != ErrTooLarge {
		t.Fatalf("complete 9 KiB head: %v, want ErrTooLarge", err)
	}
	if err := Parse([]byte(big[:8192]), 8192, &h); err != ErrIncomplete {
		t.Fatalf("8 KiB without end: %v, want ErrIncomplete (may still end in time)", err)
	}
	if err := Parse([]byte(big[:8193]), 8192, &h); err != ErrTooLarge {
		t.Fatalf("8 KiB + 1 without end: %v, want ErrTooLarge", err)
	}
	exact := "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 8192-len("GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n")) + "\r\n\r\n"
	if err := Parse([]byte(exact), 8192, &h); err != nil || h.Len != 8192 {
		t.Fatalf("head of exactly 8 KiB: %v len %d", err, h.Len)
	}
}

// FuzzParse splits inputs at every offset the fuzzer picks, as TCP would:
// a prefix is incomplete or gives the same result as the whole input.
func FuzzParse(f *testing.F) {
	f.Add([]byte(seedCurl), uint16(10))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET /health HTTP/1.1\r\n\r\n"), uint16(20))
	f.Add([]byte("HEAD / HTTP/1.0\nConnection: keep-alive\n\n"), uint16(3))
	f.Add([]byte("\r\nGET http://x/ws?token=1 HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nContent-Length: 0\r\n\r\n"), uint16(7))
	f.Add([]byte("POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), uint16(1))
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		var whole Head
		errWhole := Parse(b, 1024, &whole)
		if errWhole == nil && (whole.Len <= 0 || whole.Len > len(b) || whole.Len > 1024 || whole.Path[0] != '/') {
			t.Fatalf("bad head: %+v", whole)
		}
		c := int(cut) % (len(b) + 1)
		var part Head
		errPart := Parse(b[:c], 1024, &part)
		switch {
		case errPart == ErrIncomplete:
			// fine: waits for more bytes
		case errWhole == ErrTooLarge && errPart == ErrTooLarge:
		case errPart != errWhole:
			t.Fatalf("prefix %d: %v, whole: %v", c, errPart, errWhole)
		case errPart == nil && (part.Len != whole.Len || !bytes.Equal(part.Path, whole.Path)):
			t.Fatalf("prefix %d parsed differently: %+v vs %+v", c, part, whole)
		}
	})
}

func BenchmarkParseProbe(b *testing.B) {
	probe := []byte("GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: ApplicationGatewayProbe\r\nConnection: keep-alive\r\n\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(probe)))
	var h Head
	for b.Loop() {
		if err := Parse(probe, 8192, &h); err != nil {
			b.Fatal(err)
		}
	}
}

// RFC 9112 §3.2: an HTTP/1.1 request needs exactly one Host header, which
// may be empty; HTTP/1.0 requests may go without.
func TestParseHostRule(t *testing.T) {
	for in, want := range map[string]error{
		"GET / HTTP/1.1\r\n\r\n":                       ErrNoHost,
		"GET / HTTP/1.1\r\nX-Host: a\r\n\r\n":          ErrNoHost,
		"GET / HTTP/1.1\r\nHost:\r\n\r\n":              nil,
		"GET / HTTP/1.1\r\nhOsT: a\r\n\r\n":            nil,
		"GET / HTTP/1.0\r\n\r\n":                       nil,
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n": ErrDuplicate,
		"GET / HTTP/1.1\r\nHost:\r\nHost:\r\n\r\n":     ErrDuplicate,
	} {
		var h Head
		if err := Parse([]byte(in), 8192, &h); err != want {
			t.Errorf("%q: got %v, want %v", in, err, want)
		}
	}
}
