package reqhead

import (
	"net/netip"
	"strings"
	"testing"
)

// RFC 9110 §7.2: Host = uri-host [ ":" port ]; RFC 3986 §3.2.2 gives
// uri-host = IP-literal / IPv4address / reg-name.
func TestValidHost(t *testing.T) {
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"", true}, // RFC 9112 §3.2: empty when the target has no authority
		{"localhost", true},
		{"LOCALHOST:80", true},
		{"10.1.2.3", true},
		{"10.1.2.3:8080", true},
		{"app.example.com:443", true},
		{"xn--caf-dma.example", true},
		{"a-b_c~d.e", true},            // unreserved
		{"!$&'()*+,;=", true},          // sub-delims
		{"a%20b%C3%A9", true},          // pct-encoded, either case
		{"999.999.999.999", true},      // not IPv4, but a reg-name
		{"a:", true},                   // port = *DIGIT
		{"a:99999", true},              // the grammar sets no maximum
		{"[::1]", true},                // IP-literal
		{"[::1]:8080", true},           //
		{"[2001:DB8::1]", true},        //
		{"[::ffff:192.0.2.1]", true},   // IPv4 in IPv6
		{"[1:2:3:4:5:6:7:8]:1", true},  //
		{"[v1.fe80::a+en1]", true},     // IPvFuture
		{"[V7A.x:y]", true},            //
		{"a b", false},                 // space
		{"@evil", false},               // userinfo delimiter
		{"user@localhost", false},      //
		{"user:pass@localhost", false}, //
		{"localhost/", false},          // path
		{"a?b", false},                 // query
		{"a#b", false},                 // fragment
		{"a\"b", false},                //
		{"a<b>", false},                //
		{"a\\b", false},                //
		{"a\tb", false},                //
		{"caf\xc3\xa9", false},         // raw UTF-8
		{"a:b", false},                 // port not digits
		{"a:80:80", false},             //
		{"a: 80", false},               //
		{":80", false},                 // empty host with a port
		{":", false},                   //
		{"%", false},                   // truncated pct-encoded
		{"a%4", false},                 //
		{"a%zz", false},                //
		{"::1", false},                 // IPv6 needs brackets
		{"[::1", false},                //
		{"::1]", false},                //
		{"[]", false},                  //
		{"[::1]x", false},              //
		{"[::1]:x", false},             //
		{"[::1]]", false},              //
		{"[[::1]]", false},             //
		{"[1:2:3]", false},             // too short
		{"[1:2:3:4:5:6:7:8:9]", false}, // too long
		{"[1::2::3]", false},           // two "::"
		{"[12345::]", false},           // five digits
		{"[fe80::1%25en0]", false},     // zone (RFC 6874) not in RFC 3986
		{"[fe80::1%en0]", false},       //
		{"[127.0.0.1]", false},         // IPv4 never in brackets
		{"[v.x]", false},               // IPvFuture needs a version
		{"[v1.]", false},               // and something after the dot
		{"[v1x]", false},               //
		{"[v1.a%20]", false},           // no pct-encoding in IPvFuture
		{"[::1]" + strings.Repeat("9", 3), false},
	} {
		if got := ValidHost([]byte(c.host)); got != c.ok {
			t.Errorf("ValidHost(%q) = %v, want %v", c.host, got, c.ok)
		}
	}
}

func TestParseForwardedAddr(t *testing.T) {
	for _, c := range []struct {
		entry string
		want  string // "" for not an address
	}{
		{"203.0.113.7", "203.0.113.7"},
		{"203.0.113.7:50123", "203.0.113.7"}, // Application Gateway adds the port
		{"203.0.113.7:0", "203.0.113.7"},
		{"2001:db8::1", "2001:db8::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"::ffff:192.0.2.1", "192.0.2.1"}, // IPv4-mapped: as IPv4
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"},
		{"::", "::"},
		{"", ""},
		{"unknown", ""},
		{"_hidden", ""}, // RFC 7239 obfuscated identifier
		{"example.com", ""},
		{"203.0.113.7:", ""},
		{"203.0.113.7:65536", ""},
		{"203.0.113.7:123456", ""},
		{"203.0.113.7:8a", ""},
		{"[2001:db8::1]:", ""},
		{"[2001:db8::1]x", ""},
		{"[2001:db8::1", ""},
		{"[203.0.113.7]", ""},
		{"fe80::1%eth0", ""}, // zones are not addresses of clients
		{"01.2.3.4", ""},     // leading zero
		{"1.2.3", ""},
		{"1.2.3.4.5", ""},
		{"256.1.1.1", ""},
		{" 1.2.3.4", ""}, // the caller trims
	} {
		a, ok := ParseForwardedAddr([]byte(c.entry))
		got := ""
		if ok {
			got = a.String()
		}
		if got != c.want {
			t.Errorf("ParseForwardedAddr(%q) = %q (ok %v), want %q", c.entry, got, ok, c.want)
		}
	}
}

// FuzzParseAddr: the in-place parsers agree with net/netip on every input
// without a zone.
func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
		"::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4", "fFfF::0", "00000::", "1.2.3.04", "1:2::3::4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.Contains(s, "%") {
			return
		}
		want, err := netip.ParseAddr(s)
		var got netip.Addr
		var ok bool
		if strings.Contains(s, ":") {
			got, ok = parseIPv6([]byte(s))
		} else {
			got, ok = parseIPv4([]byte(s))
		}
		if ok != (err == nil) || ok && got != want {
			t.Fatalf("%q: got %v %v, net/netip %v %v", s, got, ok, want, err)
		}
	})
}

// The checks run on every request (Host) or handshake (X-Forwarded-For):
// none allocates.
func TestAddrChecksDoNotAllocate(t *testing.T) {
	hosts := [][]byte{[]byte("localhost"), []byte("10.1.2.3:8080"), []byte("[2001:db8::1]:443"), []byte("a%20b")}
	entries := [][]byte{[]byte("203.0.113.7:5000"), []byte("[2001:db8::1]:443"), []byte("2001:db8::1")}
	head := []byte("GET / HTTP/1.1\r\nHost: [::1]:8080\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8:9\r\n\r\n")
	var h Head
	if n := testing.AllocsPerRun(100, func() {
		for _, b := range hosts {
			_ = ValidHost(b)
		}
		for _, b := range entries {
			_, _ = ParseForwardedAddr(b)
		}
		_ = Parse(head, 8192, &h)
	}); n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}
