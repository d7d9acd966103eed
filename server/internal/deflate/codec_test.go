package deflate

import (
	"bytes"
	"compress/flate"
	"math/rand/v2"
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
// of the two errors; never a panic, never more than the limit.
func FuzzInflate(f *testing.F) {
	c, _ := NewCompressor(1)
	f.Add(c.Append(nil, jsonish(200)))
	f.Add([]byte{0x00})
	f.Add([]byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00})
	f.Fuzz(func(t *testing.T, z []byte) {
		out, err := Inflate(nil, z, 4096)
		switch {
		case err == nil && len(out) > 4096:
			t.Fatalf("%d bytes over the limit", len(out))
		case err != nil && err != ErrTooLarge && err != ErrCorrupt:
			t.Fatalf("error %v", err)
		case err != nil && len(out) != 0:
			t.Fatalf("%d bytes returned with %v", len(out), err)
		}
	})
}
