package reqhead

import (
	"bytes"
	"strconv"
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
	f.Add([]byte("GET / HTTP/1.1\r\nHost: [::1]:80\r\nX-Forwarded-For: a\r\nX-Forwarded-For: [2001:db8::1]:9, 1.2.3.4\r\n\r\n"), uint16(30))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), uint16(18))
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

// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
// code to ... any request message that contains more than one Host header
// field line or a Host header field with an invalid field value."
func TestParseInvalidHost(t *testing.T) {
	for in, want := range map[string]error{
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n":                            ErrHost,
		"GET / HTTP/1.1\r\nHost: @evil\r\n\r\n":                          ErrHost,
		"GET / HTTP/1.0\r\nHost: a/b\r\n\r\n":                            ErrHost, // HTTP/1.0 may omit Host, not send a bad one
		"GET / HTTP/1.1\r\nHost:  localhost:8080 \r\n\r\n":               nil,     // OWS is not part of the value
		"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n":                     nil,
		"GET / HTTP/1.1\r\nHost: a\r\nHost: a b\r\n\r\n":                 ErrDuplicate,
		"GET / HTTP/1.1\r\nHost: a b\r\nHost: a\r\n\r\n":                 ErrHost, // the first error found
		"GET http://x/ HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n":           ErrDuplicate,
		"GET / HTTP/1.1\r\nX-Forwarded-Host: a b\r\nHost: a\r\n\r\n":     nil,
		"GET / HTTP/1.1\r\nHost: localhost\r\nX-Host: @evil\r\n\r\n":     nil,
		"GET / HTTP/1.1\r\nHost: loc\x80lhost\r\n\r\n":                   ErrHost, // obs-text is not a reg-name
		"GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]:80\r\n\r\n":            ErrHost,
		"GET / HTTP/1.1\r\nHost: 10.1.2.3:8080\r\nConnection: x\r\n\r\n": nil,
	} {
		var h Head
		if err := Parse([]byte(in), 8192, &h); err != want {
			t.Errorf("%q: got %v, want %v", in, err, want)
		}
	}
	if !strings.Contains(ErrHost.Reason, "Host") || ErrHost.Status != 400 {
		t.Errorf("ErrHost %d %q: want 400 with a reason naming Host", ErrHost.Status, ErrHost.Reason)
	}
}

// RFC 9110 §5.3: field lines of one name combine, in order, into one
// comma-separated list. Every X-Forwarded-For line is kept, up to the last
// MaxForwardedFor, and counted.
func TestParseForwardedForLines(t *testing.T) {
	lines := func(h *Head) []string {
		var s []string
		for _, l := range h.ForwardedForList() {
			s = append(s, string(l))
		}
		return s
	}
	var h Head
	if err := Parse([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 8192, &h); err != nil {
		t.Fatal(err)
	}
	if h.ForwardedForLines != 0 || len(h.ForwardedForList()) != 0 || h.ForwardedForTruncated() {
		t.Fatalf("no X-Forwarded-For: %d lines %q", h.ForwardedForLines, lines(&h))
	}
	in := "GET / HTTP/1.1\r\nX-Forwarded-For: 198.51.100.1\r\nHost: a\r\nx-forwarded-for:  203.0.113.7:5000 , 10.0.0.1\r\nX-Forwarded-For:\r\n\r\n"
	if err := Parse([]byte(in), 8192, &h); err != nil {
		t.Fatal(err)
	}
	if got := lines(&h); h.ForwardedForLines != 3 || strings.Join(got, "|") != "198.51.100.1|203.0.113.7:5000 , 10.0.0.1|" || h.ForwardedForTruncated() {
		t.Fatalf("three lines: %d %q", h.ForwardedForLines, got)
	}

	// More lines than kept: the last MaxForwardedFor, in order.
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: a\r\n")
	const n = MaxForwardedFor + 3
	for i := range n {
		b.WriteString("X-Forwarded-For: 192.0.2." + strconv.Itoa(i) + "\r\n")
	}
	b.WriteString("\r\n")
	if err := Parse([]byte(b.String()), 8192, &h); err != nil {
		t.Fatal(err)
	}
	got := lines(&h)
	if h.ForwardedForLines != n || !h.ForwardedForTruncated() || len(got) != MaxForwardedFor ||
		got[0] != "192.0.2.3" || got[MaxForwardedFor-1] != "192.0.2."+strconv.Itoa(n-1) {
		t.Fatalf("%d lines: counted %d, kept %q", n, h.ForwardedForLines, got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != "192.0.2."+strconv.Itoa(3+i) {
			t.Fatalf("kept lines out of order: %q", got)
		}
	}
	// A new parse starts from nothing.
	if err := Parse([]byte("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"), 8192, &h); err != nil {
		t.Fatal(err)
	}
	if got := lines(&h); h.ForwardedForLines != 1 || len(got) != 1 || got[0] != "1.2.3.4" || h.ForwardedFor[1] != nil {
		t.Fatalf("after a parse with %d lines: %d %q", n, h.ForwardedForLines, got)
	}
}

func TestFields(t *testing.T) {
	head := []byte("GET /ws HTTP/1.1\r\nHost: a\r\ncookie: a=1\r\nCookie:b=2 \r\nX-Cookie: no\r\nCookie2: no\r\n\r\n")
	got := Fields(head, "Cookie")
	if len(got) != 2 || string(got[0]) != "a=1" || string(got[1]) != "b=2" {
		t.Fatalf("Fields(Cookie) = %q", got)
	}
	if got := Fields(head, "Host"); len(got) != 1 || string(got[0]) != "a" {
		t.Fatalf("Fields(Host) = %q", got)
	}
	if got := Fields(head, "GET /ws HTTP/1.1"); len(got) != 0 {
		t.Fatalf("the request line read as a field: %q", got)
	}
}
