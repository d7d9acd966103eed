package deflate

import (
	"bytes"
	"compress/flate"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func jsonish(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		b.WriteString(`{"symbol":"EURUSD","bid":1.0842,"ask":1.0844,"seq":`)
		b.WriteString(strings.Repeat("7", i%5+1))
		b.WriteString("},")
	}
	return b.Bytes()[:n]
}

// What Append produces is what RFC 7692 §7.2.1 says: a flushed DEFLATE
// stream without its last 00 00 ff ff, which the standard library
// inflates back once they are appended; and Inflate reads what the
// standard library's compressor writes.
func TestRoundTrip(t *testing.T) {
	c, err := NewCompressor(1)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	random := make([]byte, 70_000)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	for _, msg := range [][]byte{{}, []byte("a"), jsonish(1024), jsonish(300_000), random} {
		z := c.Append(nil, msg[:len(msg)/2], msg[len(msg)/2:])
		if bytes.HasSuffix(z, tail[:]) {
			t.Fatalf("%d bytes: the tail was not removed", len(msg))
		}
		std, err := readAllStd(append(z, tail[:]...))
		if err != nil || !bytes.Equal(std, msg) {
			t.Fatalf("%d bytes: the standard library read back %d bytes, %v", len(msg), len(std), err)
		}
		got, err := Inflate(nil, z, len(msg))
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: Inflate gave %d bytes, %v", len(msg), len(got), err)
		}
		// From the standard library's compressor (another implementation).
		var b bytes.Buffer
		w, _ := flate.NewWriter(&b, 6)
		w.Write(msg)
		w.Flush()
		other := bytes.TrimSuffix(b.Bytes(), tail[:])
		if got, err := Inflate(nil, other, len(msg)); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes from compress/flate: %d bytes, %v", len(msg), len(got), err)
		}
	}
	if len(c.Append(nil, jsonish(1024))) > 300 {
		t.Fatal("1 KiB of JSON did not compress below 300 bytes")
	}
}

func readAllStd(z []byte) ([]byte, error) {
	r := flate.NewReader(bytes.NewReader(z))
	var out bytes.Buffer
	_, err := out.ReadFrom(r)
	if err != nil && err.Error() == "unexpected EOF" {
		err = nil
	}
	return out.Bytes(), err
}

// A decompression bomb stops at the limit: 16 MiB of zeros compress to
// a few KiB; inflating them with a 1 MiB limit never takes more than the
// limit plus one read.
func TestInflateBomb(t *testing.T) {
	c, _ := NewCompressor(1)
	zeros := make([]byte, 16<<20)
	z := c.Append(nil, zeros)
	if len(z) > 1<<20 {
		t.Fatalf("16 MiB of zeros compress to %d bytes: not a bomb", len(z))
	}
	got, err := Inflate(make([]byte, 0, 16), z, 1<<20)
	if err != ErrTooLarge || len(got) != 0 {
		t.Fatalf("bomb: %v, %d bytes kept", err, len(got))
	}
	if _, err := Inflate(nil, z, len(zeros)); err != nil {
		t.Fatalf("the same at its size: %v", err)
	}
}

func TestInflateCorrupt(t *testing.T) {
	for _, z := range [][]byte{{0xff, 0xff, 0xff}, {0x07}, bytes.Repeat([]byte{0xfe}, 100)} {
		if _, err := Inflate(nil, z, 1<<20); err != ErrCorrupt {
			t.Errorf("% x: %v, want ErrCorrupt", z, err)
		}
	}
}

func TestCompressInflateDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	c, _ := NewCompressor(1)
	msg := jsonish(1024)
	dst := make([]byte, 0, 4096)
	z := c.Append(nil, msg)
	out := make([]byte, 0, 4096)
	c.Append(dst, msg)
	_, _ = Inflate(out, z, 1<<20)
	if n := testing.AllocsPerRun(200, func() { _ = c.Append(dst[:0], msg) }); n != 0 {
		t.Errorf("Append: %v allocations", n)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = Inflate(out[:0], z, 1<<20) }); n != 0 {
		t.Errorf("Inflate: %v allocations", n)
	}
}

// FuzzInflate: any bytes either inflate within the limit or fail with one
// of the two errors; never a panic, never more than the limit; and what
// Inflate accepts within the limit, compress/flate inflates to the same
// bytes once the tail is appended.
func FuzzInflate(f *testing.F) {
	c, _ := NewCompressor(1)
	f.Add(c.Append(nil, jsonish(200)))
	f.Add([]byte{0x00})
	f.Add([]byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00})
	f.Add([]byte{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00})
	f.Add([]byte{0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00})
	f.Add([]byte{0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00})
	f.Add(stdClosed([]byte("hello world")))
	f.Add(stdFlushed([]byte("hello world"))[:10])
	f.Fuzz(func(t *testing.T, z []byte) {
		out, err := Inflate(nil, z, 4096)
		switch {
		case err == nil && len(out) > 4096:
			t.Fatalf("%d bytes over the limit", len(out))
		case err != nil && err != ErrTooLarge && err != ErrCorrupt:
			t.Fatalf("error %v", err)
		case err != nil && len(out) != 0:
			t.Fatalf("%d bytes returned with %v", len(out), err)
		case err == nil:
			checkLikeStd(t, z)
		}
	})
}

// FuzzInflateCut: a message compressed, then cut short or followed by
// more bytes, is refused, unless what is left is a whole message: then
// it inflates to the original's start (or, with bytes added, to a
// message that starts with the original).
func FuzzInflateCut(f *testing.F) {
	f.Add([]byte("hello world"), uint16(3), []byte{}, uint8(0))
	f.Add(jsonish(3000), uint16(1), []byte{}, uint8(1))
	f.Add([]byte("Hello"), uint16(0), []byte("x"), uint8(2))
	f.Add(make([]byte, 70_000), uint16(2), []byte{}, uint8(3))
	c1, _ := NewCompressor(1)
	c9, _ := NewCompressor(9)
	f.Fuzz(func(t *testing.T, msg []byte, cut uint16, extra []byte, how uint8) {
		var z []byte
		switch how % 4 {
		case 0:
			z = c1.Append(nil, msg)
		case 1:
			z = c9.Append(nil, msg)
		case 2:
			z = stdFlushed(msg)
		case 3:
			z = stdClosed(msg)
		}
		if got, err := Inflate(nil, z, len(msg)); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("whole: %d of %d bytes, %v", len(got), len(msg), err)
		}
		if int(cut) > len(z) {
			cut = uint16(len(z))
		}
		short := z[:len(z)-int(cut)]
		if got, err := Inflate(nil, short, len(msg)); err == nil && (cut > 0 && len(got) == len(msg) && len(msg) > 0 || !bytes.HasPrefix(msg, got)) {
			t.Fatalf("cut by %d: accepted %q of %q", cut, got, msg)
		}
		checkLikeStd(t, short)
		if len(extra) > 0 {
			long := append(z[:len(z):len(z)], extra...)
			if got, err := Inflate(nil, long, 1<<20); err == nil && !bytes.HasPrefix(got, msg) {
				t.Fatalf("with % x after: accepted %q of %q", extra, got, msg)
			}
			checkLikeStd(t, long)
		}
	})
}

// BenchmarkInflate: a 1 KiB JSON message, as a room member sends it.
func BenchmarkInflate(b *testing.B) {
	c, _ := NewCompressor(1)
	msg := jsonish(1024)
	z := c.Append(nil, msg)
	out := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		var err error
		if out, err = Inflate(out[:0], z, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// stdFlushed is what compress/flate (another implementation) sends for
// msg: flushed, without the last 00 00 ff ff (RFC 7692 §7.2.1).
func stdFlushed(msg []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, 6)
	w.Write(msg)
	w.Flush()
	return bytes.TrimSuffix(b.Bytes(), tail[:])
}

// stdClosed is msg compressed by compress/flate and closed: the stream
// ends with an empty stored block with BFINAL set, whose LEN and NLEN
// (00 00 ff ff) are removed as §7.2.1 says; the receiver's appended tail
// puts them back.
func stdClosed(msg []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, 6)
	w.Write(msg)
	w.Close()
	return bytes.TrimSuffix(b.Bytes(), tail[:])
}

// RFC 7692 §7.2.2: the receiver appends 00 00 ff ff and inflates; the
// data must then end cleanly: at a block boundary after the empty stored
// block a flush ends with, or at the end of a block with BFINAL set
// (followed by nothing, or by the one 0x00 of §7.2.3.4). Everything else
// (a message truncated mid-block, bytes after the final block) is
// invalid: a room once received "hello worh" from a truncated
// "hello world".
func TestInflateValidMessages(t *testing.T) {
	c, _ := NewCompressor(1)
	hello := []byte("Hello")
	for _, tc := range []struct {
		name string
		z    []byte
		want []byte
	}{
		{"sync-flushed, Append", c.Append(nil, []byte("hello world")), []byte("hello world")},
		{"sync-flushed, Append, 1 KiB", c.Append(nil, jsonish(1024)), jsonish(1024)},
		{"sync-flushed, Append, empty", c.Append(nil), nil},
		{"sync-flushed, compress/flate", stdFlushed([]byte("hello world")), []byte("hello world")},
		{"RFC 7692 §7.2.3.1", []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, hello},
		{"RFC 7692 §7.2.3.3, stored", []byte{0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}, hello},
		{"RFC 7692 §7.2.3.4, BFINAL and 0x00", []byte{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}, hello},
		{"RFC 7692 §7.2.3.5, two blocks", []byte{0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00}, hello},
		{"BFINAL, nothing after", []byte{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, hello},
		{"BFINAL stored block, nothing after", []byte{0x01, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f}, hello},
		{"BFINAL, closed by compress/flate", stdClosed([]byte("hello world")), []byte("hello world")},
		{"BFINAL empty block", []byte{0x03, 0x00}, nil},
		{"BFINAL empty stored block, LEN and NLEN removed", []byte{0x01}, nil},
	} {
		got, err := Inflate(nil, tc.z, 1<<20)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s (% x): %q, %v; want %q", tc.name, tc.z, got, err, tc.want)
		}
	}
}

func TestInflateTruncated(t *testing.T) {
	c, _ := NewCompressor(1)
	for _, tc := range []struct {
		name  string
		z     []byte
		whole []int // cuts that are whole messages themselves
	}{
		{"Append, stored", c.Append(nil, []byte("hello world")), []int{1}}, // 00: the empty message
		{"Append, Huffman", c.Append(nil, jsonish(1024)), nil},
		{"compress/flate", stdFlushed([]byte("hello world")), nil}, // cut to 10: "hello worh"
		{"RFC 7692 §7.2.3.5, two blocks", []byte{0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00}, []int{4}},
		{"BFINAL", []byte{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, nil},
		{"BFINAL stored block", []byte{0x01, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f}, []int{1}}, // 01: empty, BFINAL
	} {
		// Every other cut: the inflater ends inside a block, waiting
		// for more, or reads the appended tail as data.
		for cut := range len(tc.z) {
			if slices.Contains(tc.whole, cut) {
				continue
			}
			if got, err := Inflate(nil, tc.z[:cut], 1<<20); err != ErrCorrupt || len(got) != 0 {
				t.Errorf("%s cut to %d of %d bytes (% x): %q, %v; want ErrCorrupt", tc.name, cut, len(tc.z), tc.z[:cut], got, err)
			}
		}
	}
}

// Messages from several compressors, cut anywhere: Inflate refuses the
// cut message, or (a cut at a block boundary that is a whole message
// itself) returns the start of the original; compress/flate agrees.
func TestInflateCutAnywhere(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	random := make([]byte, 70_000) // over 64 KiB: more than one stored block
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	messages := [][]byte{[]byte("a"), jsonish(300), jsonish(40_000), random[:5000], random, make([]byte, 100_000),
		append(jsonish(20_000), random[:20_000]...)}
	kp, _ := NewCompressor(1)
	kp9, _ := NewCompressor(9)
	kph, _ := NewCompressor(-2) // flate.HuffmanOnly
	for _, msg := range messages {
		for ci, z := range [][]byte{kp.Append(nil, msg), kp9.Append(nil, msg), kph.Append(nil, msg), stdFlushed(msg), stdClosed(msg)} {
			if got, err := Inflate(nil, z, len(msg)); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("%d bytes, compressor %d: whole message: %d bytes, %v", len(msg), ci, len(got), err)
			}
			cuts := []int{0}
			for k := 1; k <= 16 && k < len(z); k++ {
				cuts = append(cuts, len(z)-k)
			}
			for range 8 {
				cuts = append(cuts, rng.IntN(len(z)))
			}
			for _, cut := range cuts {
				got, err := Inflate(nil, z[:cut], len(msg))
				if err != nil {
					continue
				}
				if !bytes.HasPrefix(msg, got) {
					t.Fatalf("%d bytes, compressor %d, cut to %d of %d: accepted %d bytes that are not the message's start", len(msg), ci, cut, len(z), len(got))
				}
				if cut >= len(z)-16 && len(got) == len(msg) {
					t.Fatalf("%d bytes, compressor %d, cut to %d of %d: accepted whole", len(msg), ci, cut, len(z))
				}
				checkLikeStd(t, z[:cut])
			}
		}
	}
}

func TestInflateTrailingBytes(t *testing.T) {
	c, _ := NewCompressor(1)
	final := []byte{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00} // "Hello", BFINAL
	for _, tc := range []struct {
		name string
		z    []byte
	}{
		{"after BFINAL: a byte", append(final[:7:7], 'x')},
		{"after BFINAL: two 0x00", append(final[:7:7], 0, 0)},
		{"after BFINAL: 0x00 0x01", append(final[:7:7], 0, 1)},
		{"after BFINAL: the tail itself", append(final[:7:7], 0, 0, 0xff, 0xff)},
		{"after BFINAL: another message", append(final[:7:7], c.Append(nil, []byte("world"))...)},
		{"after BFINAL: text", append(final[:7:7], "garbage"...)},
		{"after a BFINAL stored block", []byte{0x01, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 'x'}},
		{"after compress/flate's final block", append(stdClosed([]byte("hello world")), 'x')},
		{"after a flush", append(c.Append(nil, []byte("hello world")), "garbage"...)},
		{"after a flush: the tail", append(c.Append(nil, []byte("hello world")), tail[:]...)},
	} {
		if got, err := Inflate(nil, tc.z, 1<<20); err != ErrCorrupt || len(got) != 0 {
			t.Errorf("%s (% x): %q, %v; want ErrCorrupt", tc.name, tc.z, got, err)
		}
	}
}

func TestInflateGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, z := range [][]byte{{}, {0x07}, {0xff}, []byte("hello world"), {0x00, 0x00}, {0x02}} {
		if got, err := Inflate(nil, z, 1<<20); err != ErrCorrupt || len(got) != 0 {
			t.Errorf("% x: %q, %v; want ErrCorrupt", z, got, err)
		}
	}
	// Random bytes are almost never a valid message; whatever Inflate
	// accepts, compress/flate reads the same way.
	for range 2000 {
		z := make([]byte, 1+rng.IntN(64))
		for i := range z {
			z[i] = byte(rng.Uint32())
		}
		checkLikeStd(t, z)
	}
}

// checkLikeStd: what Inflate accepts, compress/flate inflates to the
// same bytes once the tail is appended.
func checkLikeStd(t *testing.T, z []byte) {
	t.Helper()
	got, err := Inflate(nil, z, 1<<20)
	if err != nil {
		return
	}
	std, serr := readAllStd(append(z[:len(z):len(z)], tail[:]...))
	if serr != nil || !bytes.Equal(std, got) {
		t.Fatalf("% x: Inflate accepted %q; compress/flate reads %q, %v", z, got, std, serr)
	}
}
