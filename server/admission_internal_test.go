package server

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/server/internal/reqhead"
)

// TestClientIPWalksEveryLine: clientIP reads X-Forwarded-For as one list
// over all its lines (RFC 9110 §5.3), from the right, past trusted
// proxies only; it never takes an entry a client could have chosen.
func TestClientIPWalksEveryLine(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxConnsPerIP = 1
	cfg.TrustedProxies = []string{"127.0.0.0/8", "fd00::/8"}
	a, err := newAdmission(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Repeat("X-Forwarded-For: 127.0.0.9\r\n", reqhead.MaxForwardedFor+4)
	allTrusted := "X-Forwarded-For: 198.51.100.66\r\n" + strings.Repeat("X-Forwarded-For: 127.0.0.9, 127.0.0.8\r\n", reqhead.MaxForwardedFor)
	for _, c := range []struct {
		name, peer, lines, want string
	}{
		{"no header", "127.0.0.1", "", "127.0.0.1"},
		{"untrusted peer", "192.0.2.50", "X-Forwarded-For: 203.0.113.7\r\n", "192.0.2.50"},
		{"one line", "127.0.0.1", "X-Forwarded-For: 198.51.100.1, 203.0.113.7:5000\r\n", "203.0.113.7"},
		{"forged first line", "127.0.0.1", "X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 203.0.113.7:5000\r\n", "203.0.113.7"},
		{"lines apart", "127.0.0.1", "X-Forwarded-For: 198.51.100.1\r\nOrigin: x\r\nx-forwarded-for: 203.0.113.7\r\n", "203.0.113.7"},
		{"across lines past trusted hops", "127.0.0.1", "X-Forwarded-For: 198.51.100.1, 203.0.113.8\r\nX-Forwarded-For: 127.0.0.5, [fd00::1]:80\r\n", "203.0.113.8"},
		{"empty elements", "127.0.0.1", "X-Forwarded-For: 203.0.113.9, ,\r\nX-Forwarded-For:\r\nX-Forwarded-For: ,\r\n", "203.0.113.9"},
		{"IPv6 with a port", "127.0.0.1", "X-Forwarded-For: [2001:db8::7]:443\r\n", "2001:db8::7"},
		{"IPv4-mapped", "127.0.0.1", "X-Forwarded-For: ::ffff:203.0.113.10\r\n", "203.0.113.10"},
		{"malformed right of the client", "127.0.0.1", "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: unknown\r\n", "127.0.0.1"},
		{"malformed behind a trusted hop", "127.0.0.1", "X-Forwarded-For: 198.51.100.1, bogus, 127.0.0.3\r\n", "127.0.0.3"},
		{"all trusted", "127.0.0.1", "X-Forwarded-For: 127.0.0.2, 127.0.0.3\r\n", "127.0.0.2"},
		// A client sends more lines than the parser keeps; the proxy's
		// line is still the last one.
		{"line flood before the proxy's", "127.0.0.1", forged + "X-Forwarded-For: 203.0.113.11:1\r\n", "203.0.113.11"},
		// Every kept entry is trusted and the client's is in a line not
		// kept: the left-most trusted hop kept counts, never an entry
		// the client wrote.
		{"truncated, all kept trusted", "127.0.0.1", allTrusted, "127.0.0.9"},
	} {
		var h reqhead.Head
		head := "GET /ws HTTP/1.1\r\nHost: a\r\n" + c.lines + "\r\n"
		if err := reqhead.Parse([]byte(head), 8192, &h); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		peer := &net.TCPAddr{IP: net.ParseIP(c.peer), Port: 40000}
		got := a.clientIP(peer, &h)
		if got.String() != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
		if n := testing.AllocsPerRun(10, func() { _ = a.clientIP(peer, &h) }); n != 0 {
			t.Errorf("%s: %v allocations, want 0", c.name, n)
		}
	}
}

// TestPerIPKey: IPv6 clients share an allowance per ConnsPerIPv6Prefix,
// IPv4 clients per address; releases undo admissions exactly.
func TestPerIPKey(t *testing.T) {
	for _, c := range []struct {
		bits       int
		same, diff []string // same: one client with the first; diff: another
	}{
		{64, []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"}, []string{"2001:db8:1:3::1", "192.0.2.1"}},
		{48, []string{"2001:db8:1::1", "2001:db8:1:ffff::1"}, []string{"2001:db8:2::1"}},
		{128, []string{"2001:db8::1"}, []string{"2001:db8::2"}},
		{1, []string{"::1", "7fff::1"}, []string{"8000::1"}},
	} {
		cfg := DefaultConfig()
		cfg.MaxConnsPerIP = len(c.same)
		cfg.ConnsPerIPv6Prefix = c.bits
		a, err := newAdmission(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range c.same {
			if rej := a.admit(netip.MustParseAddr(s)); rej != nil {
				t.Fatalf("/%d: %s refused", c.bits, s)
			}
		}
		if rej := a.admit(netip.MustParseAddr(c.same[0])); rej != rejPerIP {
			t.Fatalf("/%d: one more from %s's prefix admitted", c.bits, c.same[0])
		}
		for _, s := range c.diff {
			if rej := a.admit(netip.MustParseAddr(s)); rej != nil {
				t.Fatalf("/%d: %s refused as if it were %s", c.bits, s, c.same[0])
			}
			a.release(netip.MustParseAddr(s))
		}
		for _, s := range c.same {
			a.release(netip.MustParseAddr(s))
		}
		if a.total != 0 || len(a.perIP) != 0 {
			t.Fatalf("/%d: after every release: total %d, per address %v", c.bits, a.total, a.perIP)
		}
	}
	// IPv4 counts per address whatever the IPv6 prefix.
	a, _ := newAdmission(Config{MaxConnsPerIP: 1, ConnsPerIPv6Prefix: 1}, slog.New(slog.DiscardHandler))
	if a.admit(netip.MustParseAddr("192.0.2.1")) != nil || a.admit(netip.MustParseAddr("192.0.2.2")) != nil {
		t.Fatal("two IPv4 addresses counted as one")
	}
}
