package frame

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// maskedFrame builds a client frame the way a client library would.
func maskedFrame(fin bool, rsv byte, op ws.OpCode, payload []byte, mask [4]byte) []byte {
	b0 := byte(op) | rsv<<4
	if fin {
		b0 |= 0x80
	}
	var b []byte
	switch n := len(payload); {
	case n <= 125:
		b = []byte{b0, 0x80 | byte(n)}
	case n <= 0xffff:
		b = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		b = []byte{b0, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b = append(b, mask[:]...)
	p := append([]byte(nil), payload...)
	ws.Cipher(p, mask, 0)
	return append(b, p...)
}

func TestParseLengthBoundaries(t *testing.T) {
	for _, n := range []int{0, 1, 124, 125, 126, 127, 65535, 65536, 1 << 20} {
		payload := bytes.Repeat([]byte{'x'}, n)
		b := maskedFrame(true, 0, ws.OpBinary, payload, [4]byte{1, 2, 3, 4})
		wantHdr := 2 + 4
		if n > 125 {
			wantHdr += 2
		}
		if n > 0xffff {
			wantHdr += 6
		}
		// Every strict prefix of the header is incomplete.
		for cut := range wantHdr {
			if _, _, err := Parse(b[:cut]); err != ErrIncomplete {
				t.Fatalf("len %d: prefix %d: err %v, want ErrIncomplete", n, cut, err)
			}
		}
		h, hn, err := Parse(b)
		if err != nil || hn != wantHdr || h.Length != int64(n) || !h.Fin || h.Op != ws.OpBinary || !h.Masked || h.Mask != [4]byte{1, 2, 3, 4} {
			t.Fatalf("len %d: got %+v n=%d err=%v", n, h, hn, err)
		}
		p := b[hn:]
		Unmask(p, h.Mask, 0)
		if !bytes.Equal(p, payload) {
			t.Fatalf("len %d: unmasked payload differs", n)
		}
		// The server's own header for the same length round-trips.
		sh := AppendHeader(nil, true, ws.OpText, n)
		if len(sh) != wantHdr-4 { // the client's header less its mask
			t.Fatalf("len %d: AppendHeader wrote %d bytes, want %d", n, len(sh), wantHdr-4)
		}
		h2, n2, err := Parse(sh)
		if err != nil || n2 != len(sh) || h2.Length != int64(n) || h2.Masked || h2.Op != ws.OpText {
			t.Fatalf("len %d: server header parses as %+v n=%d err=%v", n, h2, n2, err)
		}
	}
}

// A declared length of 2^63 or more must be refused, not trusted.
func TestParseHugePayloadLenDoesNotPanic(t *testing.T) {
	b := []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}
	if _, _, err := Parse(b); err != ErrLength {
		t.Fatalf("MSB set: err %v, want ErrLength", err)
	}
	// 2^63-1 parses; the caller compares it with its limit.
	copy(b[2:10], []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	h, _, err := Parse(b)
	if err != nil || h.Length != 1<<63-1 {
		t.Fatalf("2^63-1: %+v %v", h, err)
	}
}

func TestCheckClient(t *testing.T) {
	ok := Header{Fin: true, Op: ws.OpText, Masked: true}
	cases := []struct {
		name string
		h    Header
		frag bool
		want *CloseError
	}{
		{"text", ok, false, nil},
		{"rsv1", Header{Fin: true, Rsv: 4, Op: ws.OpText, Masked: true}, false, ErrReservedBits},
		{"rsv3", Header{Fin: true, Rsv: 1, Op: ws.OpBinary, Masked: true}, false, ErrReservedBits},
		{"opcode 3", Header{Fin: true, Op: 3, Masked: true}, false, ErrReservedOpcode},
		{"opcode 0xb", Header{Fin: true, Op: 0xb, Masked: true}, false, ErrReservedOpcode},
		{"unmasked", Header{Fin: true, Op: ws.OpText}, false, ErrUnmasked},
		{"ping 125", Header{Fin: true, Op: ws.OpPing, Masked: true, Length: 125}, false, nil},
		{"ping 126", Header{Fin: true, Op: ws.OpPing, Masked: true, Length: 126}, false, ErrControlTooLong},
		{"fragmented close", Header{Op: ws.OpClose, Masked: true}, false, ErrControlFragmented},
		{"ping inside fragments", Header{Fin: true, Op: ws.OpPing, Masked: true}, true, nil},
		{"continuation alone", Header{Fin: true, Op: ws.OpContinuation, Masked: true}, false, ErrContinuation},
		{"continuation", Header{Fin: true, Op: ws.OpContinuation, Masked: true}, true, nil},
		{"text inside fragments", ok, true, ErrInterleaved},
	}
	for _, c := range cases {
		if got := CheckClient(c.h, c.frag, false); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestParseClose(t *testing.T) {
	body := func(code uint16, reason string) []byte {
		return append([]byte{byte(code >> 8), byte(code)}, reason...)
	}
	if code, err := ParseClose(nil); err != nil || code != ws.StatusNoStatusRcvd {
		t.Fatalf("empty: %v %v", code, err)
	}
	if _, err := ParseClose([]byte{3}); err != ErrCloseLength {
		t.Fatalf("one byte: %v", err)
	}
	for _, c := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		if code, err := ParseClose(body(c, "bye")); err != nil || uint16(code) != c {
			t.Errorf("code %d refused: %v", c, err)
		}
	}
	for _, c := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		if _, err := ParseClose(body(c, "")); err != ErrCloseCode {
			t.Errorf("code %d: err %v, want ErrCloseCode", c, err)
		}
	}
	if _, err := ParseClose(body(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")); err != ErrCloseReason {
		t.Errorf("invalid reason: %v", err)
	}
	closeFrame := AppendClose(nil, 1001, string(bytes.Repeat([]byte("r"), 200)))
	if len(closeFrame) != 2+125 {
		t.Errorf("AppendClose did not cut the reason to the control payload limit: %d bytes", len(closeFrame))
	}
}

func TestUTF8MatchesStdlib(t *testing.T) {
	cases := []string{
		"", "hello", "κόσμε", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf", "\xef\xbf\xbf",
		"\xed\x9f\xbf", "\xee\x80\x80", "\xc2\x80", "\xdf\xbf",
		"\xf4\x90\x80\x80", "\xed\xa0\x80", "\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf",
		"\x80", "\xbf", "\xfe", "\xff", "\xce\xba\xe1", "\xf8\x88\x80\x80\x80",
		"κόσμε\xed\xa0\x80edited", "abcdefgh\x80", "abcdefghijklmnop",
	}
	for _, s := range cases {
		want := utf8.ValidString(s)
		var v UTF8
		got := v.Write([]byte(s)) && v.Complete()
		if got != want {
			t.Errorf("%q: got %v, want %v", s, got, want)
		}
		// Every split into two writes agrees too.
		for i := 0; i <= len(s); i++ {
			var v UTF8
			got := v.Write([]byte(s[:i])) && v.Write([]byte(s[i:])) && v.Complete()
			if got != want {
				t.Errorf("%q split at %d: got %v, want %v", s, i, got, want)
			}
		}
	}
}

// Fail fast: the first byte that cannot continue valid text is refused,
// before the message ends (RFC 6455 §8.1).
func TestUTF8FailsFast(t *testing.T) {
	var v UTF8
	if !v.Write([]byte("κόσμε")) || v.Write([]byte{0xed, 0xa0}) {
		t.Fatal("a surrogate prefix must fail at its second byte")
	}
	v.Reset()
	if !v.Write([]byte{0xf4}) || v.Write([]byte{0x90}) {
		t.Fatal("F4 90 (above U+10FFFF) must fail at once")
	}
}

func FuzzUTF8(f *testing.F) {
	f.Add([]byte("κόσμε"), uint8(3))
	f.Add([]byte("\xed\xa0\x80"), uint8(1))
	f.Add([]byte("\xf4\x8f\xbf\xbf abc"), uint8(2))
	f.Fuzz(func(t *testing.T, p []byte, seed uint8) {
		want := utf8.Valid(p)
		var v UTF8
		r := rand.New(rand.NewPCG(uint64(seed), 1))
		ok := true
		for rest := p; len(rest) > 0 && ok; {
			n := 1 + r.IntN(len(rest))
			ok = v.Write(rest[:n])
			rest = rest[n:]
		}
		if got := ok && v.Complete(); got != want {
			t.Fatalf("%q: got %v, want %v", p, got, want)
		}
	})
}

// FuzzParse feeds random bytes, whole and split at random offsets as TCP
// would, and checks the parser never panics, never reads past its input
// and agrees with itself across splits.
func FuzzParse(f *testing.F) {
	f.Add(maskedFrame(true, 0, ws.OpText, []byte("hello"), [4]byte{1, 2, 3, 4}), uint8(0))
	f.Add(maskedFrame(false, 0, ws.OpBinary, make([]byte, 200), [4]byte{9, 9, 9, 9}), uint8(1))
	f.Add(maskedFrame(true, 0, ws.OpBinary, make([]byte, 70000), [4]byte{}), uint8(2))
	f.Add([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, uint8(3))
	f.Add([]byte{0x88, 0x82, 1, 2, 3, 4, 0x02, 0xea}, uint8(4))
	f.Fuzz(func(t *testing.T, b []byte, cut uint8) {
		h, n, err := Parse(b)
		if err == nil {
			if n < 2 || n > MaxHeaderLen || n > len(b) || h.Length < 0 {
				t.Fatalf("header size %d length %d for %d bytes", n, h.Length, len(b))
			}
			_ = CheckClient(h, cut%2 == 0, cut%3 == 0)
			// Any prefix shorter than the header is incomplete.
			if c := int(cut) % n; c < n {
				if _, _, err := Parse(b[:c]); err != ErrIncomplete {
					t.Fatalf("prefix %d of %d-byte header: %v", c, n, err)
				}
			}
		} else if err != ErrIncomplete && err != ErrLength {
			t.Fatalf("unexpected error %v", err)
		}
		if len(b) >= 2 && err == nil && h.Op.IsControl() && h.Length <= MaxControlPayload && n+int(h.Length) <= len(b) && h.Op == ws.OpClose {
			p := append([]byte(nil), b[n:n+int(h.Length)]...)
			Unmask(p, h.Mask, 0)
			_, _ = ParseClose(p)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	fr := maskedFrame(true, 0, ws.OpBinary, make([]byte, 64), [4]byte{1, 2, 3, 4})
	b.ReportAllocs()
	b.SetBytes(int64(len(fr)))
	for b.Loop() {
		h, n, err := Parse(fr)
		if err != nil || CheckClient(h, false, false) != nil {
			b.Fatal(err)
		}
		Unmask(fr[n:], h.Mask, 0)
	}
}

func BenchmarkUTF8(b *testing.B) {
	p := []byte("loopcast fans out one message to thousands of sockets: κόσμε ✓")
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		var v UTF8
		if !v.Write(p) || !v.Complete() {
			b.Fatal("invalid")
		}
	}
}
