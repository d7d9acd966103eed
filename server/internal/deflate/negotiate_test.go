package deflate

import (
	"testing"
)

// Offers as real clients send them, and the rules of RFC 7692 §7 for
// each parameter; "decline" cases get a handshake without the extension.
func TestNegotiate(t *testing.T) {
	const decline = "decline"
	for _, tc := range []struct {
		name   string
		values []string
		want   string // decline, "no-ct" (client_no_context_takeover agreed) or "ct"
	}{
		{"gorilla (EnableCompression)", []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover"}, "no-ct"},
		{"Chromium and Node ws", []string{"permessage-deflate; client_max_window_bits"}, "ct"},
		{"coder/websocket, context takeover", []string{"permessage-deflate"}, "ct"},
		{"coder/websocket, no context takeover", []string{"permessage-deflate; client_no_context_takeover; server_no_context_takeover"}, "no-ct"},
		{"no spaces", []string{"permessage-deflate;client_no_context_takeover"}, "no-ct"},
		{"case does not matter", []string{"PerMessage-Deflate; Client_No_Context_Takeover"}, "no-ct"},

		// §7.1.2.1: server_max_window_bits needs a value; the server
		// compresses with a 32 KiB window and declines a smaller one.
		{"server window of 15 bits", []string{"permessage-deflate; server_max_window_bits=15"}, "ct"},
		{"server window of 10 bits", []string{"permessage-deflate; server_max_window_bits=10"}, decline},
		{"server window without a value", []string{"permessage-deflate; server_max_window_bits"}, decline},
		{"declined offer, then a fallback", []string{"permessage-deflate; server_max_window_bits=10, permessage-deflate; client_no_context_takeover"}, "no-ct"},

		// §7.1.2.2: client_max_window_bits, with or without a value 8..15.
		{"client window of 8 bits", []string{"permessage-deflate; client_max_window_bits=8"}, "ct"},
		{"client window quoted", []string{`permessage-deflate; client_max_window_bits="10"`}, "ct"},
		{"client window of 16 bits", []string{"permessage-deflate; client_max_window_bits=16"}, decline},
		{"client window of 7 bits", []string{"permessage-deflate; client_max_window_bits=7"}, decline},
		{"client window with a leading zero", []string{"permessage-deflate; client_max_window_bits=09"}, decline},
		{"client window not a number", []string{"permessage-deflate; client_max_window_bits=ten"}, decline},

		// §7: a parameter not defined for an offer, an invalid value, a
		// parameter given twice: the offer is declined.
		{"unknown parameter", []string{"permessage-deflate; foo"}, decline},
		{"value on server_no_context_takeover", []string{"permessage-deflate; server_no_context_takeover=1"}, decline},
		{"value on client_no_context_takeover", []string{"permessage-deflate; client_no_context_takeover=true"}, decline},
		{"parameter twice", []string{"permessage-deflate; server_no_context_takeover; server_no_context_takeover"}, decline},
		{"window twice", []string{"permessage-deflate; client_max_window_bits; client_max_window_bits=10"}, decline},
		{"bad offer, then a good one", []string{"permessage-deflate; foo, permessage-deflate"}, "ct"},

		// Other extensions alongside, in one value or on separate lines.
		{"unknown extension first", []string{"x-webkit-deflate-frame, permessage-deflate; client_no_context_takeover"}, "no-ct"},
		{"unknown extension with parameters", []string{`foo; bar=baz; q="x", permessage-deflate`}, "ct"},
		{"separate header lines", []string{"foo", "permessage-deflate"}, "ct"},
		{"only other extensions", []string{"x-webkit-deflate-frame; max_window_bits=10"}, decline},
		{"empty elements", []string{" , ,permessage-deflate"}, "ct"},

		// Syntax errors end the search.
		{"nothing", []string{""}, decline},
		{"empty parameter", []string{"permessage-deflate;"}, decline},
		{"unterminated quote", []string{`permessage-deflate; client_max_window_bits="10`}, decline},
		{"space inside a quoted value", []string{`permessage-deflate; client_max_window_bits="1 0"`}, decline},
		{"garbage after the name", []string{"permessage-deflate x"}, decline},
		{"syntax error before a good offer", []string{"foo; =x, permessage-deflate"}, decline},
	} {
		vals := make([][]byte, len(tc.values))
		for i, v := range tc.values {
			vals[i] = []byte(v)
		}
		a, ok := Negotiate(vals...)
		got := decline
		if ok {
			got = "ct"
			if a.ClientNoContextTakeover {
				got = "no-ct"
			}
		}
		if got != tc.want {
			t.Errorf("%s: %q: %s, want %s", tc.name, tc.values, got, tc.want)
		}
	}
}

func TestAppendResponse(t *testing.T) {
	for a, want := range map[Agreement]string{
		{}:                              "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n",
		{ClientNoContextTakeover: true}: "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n",
	} {
		if got := string(AppendResponse(nil, a)); got != want {
			t.Errorf("%+v: %q, want %q", a, got, want)
		}
	}
}

func TestNegotiateAllocatesNothing(t *testing.T) {
	v := []byte("foo; bar=\"baz\", permessage-deflate; server_max_window_bits=15; client_max_window_bits; client_no_context_takeover")
	if n := testing.AllocsPerRun(100, func() { Negotiate(v) }); n != 0 {
		t.Fatalf("%v allocations per negotiation", n)
	}
}

// FuzzNegotiate: any header value is declined or accepted without a
// panic, and an accepted offer's response is one well-formed header line.
func FuzzNegotiate(f *testing.F) {
	for _, s := range []string{
		"permessage-deflate; client_max_window_bits",
		"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
		`foo; bar="baz", permessage-deflate; server_max_window_bits=15`,
		"permessage-deflate; server_max_window_bits=10, permessage-deflate",
		`permessage-deflate; client_max_window_bits="1`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		a, ok := Negotiate(v)
		if !ok {
			return
		}
		r := string(AppendResponse(nil, a))
		if r != "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n" {
			t.Fatalf("response %q", r)
		}
	})
}
