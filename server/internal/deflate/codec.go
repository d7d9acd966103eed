package deflate

import (
	"errors"
	"io"
	"slices"
	"sync"

	"github.com/klauspost/compress/flate"
)

// The compressed form of a message (RFC 7692 §7.2.1): DEFLATE blocks,
// flushed, without the final 4 bytes 00 00 ff ff of the empty stored
// block the flush ends with; the receiver appends them before inflating
// (§7.2.2). Both sides here work without context takeover: every message
// is compressed and inflated on its own, so compressors and decompressors
// are pooled, never kept per connection.

// tail is what a flushed DEFLATE stream ends with and the wire form
// leaves out.
var tail = [4]byte{0x00, 0x00, 0xff, 0xff}

// Compressor compresses messages at one level. Safe for concurrent use:
// it pools its flate writers (about 600 KiB each at level 1; a pool
// keeps one per goroutine that compresses at once, the event loops).
type Compressor struct {
	level int
	pool  sync.Pool
}

// NewCompressor returns a Compressor at level (flate.BestSpeed 1 to
// flate.BestCompression 9; flate.HuffmanOnly -2).
func NewCompressor(level int) (*Compressor, error) {
	if _, err := flate.NewWriter(io.Discard, level); err != nil {
		return nil, err
	}
	return &Compressor{level: level}, nil
}

// appender is an io.Writer onto a growing slice.
type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

type writer struct {
	w   *flate.Writer
	out appender
}

// Append appends the compressed form of the message made of the parts
// (concatenated) to dst and returns it. It does not allocate once the
// pool and dst have grown.
func (c *Compressor) Append(dst []byte, parts ...[]byte) []byte {
	w, _ := c.pool.Get().(*writer)
	if w == nil {
		fw, _ := flate.NewWriter(nil, c.level)
		w = &writer{w: fw}
	}
	w.out.b = dst
	w.w.Reset(&w.out)
	for _, p := range parts {
		_, _ = w.w.Write(p)
	}
	_ = w.w.Flush()
	out := w.out.b
	if n := len(out); n >= 4 && [4]byte(out[n-4:]) == tail {
		out = out[:n-4]
	}
	w.out.b = nil
	c.pool.Put(w)
	return out
}

// Errors of Inflate.
var (
	// ErrTooLarge: the message inflates past the limit.
	ErrTooLarge = errors.New("inflated message over max-message")
	// ErrCorrupt: not valid DEFLATE data.
	ErrCorrupt = errors.New("invalid permessage-deflate data")
)

// source feeds a decompressor the message, then the tail.
type source struct {
	msg  []byte
	tail []byte
}

func (s *source) Read(p []byte) (int, error) {
	if len(s.msg) > 0 {
		n := copy(p, s.msg)
		s.msg = s.msg[n:]
		return n, nil
	}
	if len(s.tail) > 0 {
		n := copy(p, s.tail)
		s.tail = s.tail[n:]
		return n, nil
	}
	return 0, io.EOF
}

func (s *source) ReadByte() (byte, error) {
	var b [1]byte
	if _, err := s.Read(b[:]); err != nil {
		return 0, err
	}
	return b[0], nil
}

type reader struct {
	src source
	r   io.ReadCloser
}

var readers sync.Pool

// Inflate appends the inflated form of msg (a compressed message) to dst
// and returns it. It stops with ErrTooLarge as soon as the output would
// pass limit bytes: a few KiB that inflate to GiBs never take more than
// limit (plus one read's worth). Invalid data is ErrCorrupt.
func Inflate(dst, msg []byte, limit int) ([]byte, error) {
	r, _ := readers.Get().(*reader)
	if r == nil {
		r = &reader{}
		r.src = source{msg: msg, tail: tail[:]}
		r.r = flate.NewReader(&r.src)
	} else {
		r.src = source{msg: msg, tail: tail[:]}
		_ = r.r.(flate.Resetter).Reset(&r.src, nil)
	}
	defer func() {
		r.src = source{}
		readers.Put(r)
	}()
	start := len(dst)
	for {
		if cap(dst)-len(dst) < 512 {
			dst = slices.Grow(dst, max(4096, len(dst)-start))
		}
		room := min(cap(dst)-len(dst), limit-(len(dst)-start)+1)
		n, err := r.r.Read(dst[len(dst) : len(dst)+room])
		dst = dst[:len(dst)+n]
		if len(dst)-start > limit {
			return dst[:start], ErrTooLarge
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF && len(r.src.msg) == 0 && len(r.src.tail) == 0:
			// The stream ends at the flush: every byte given was read.
			return dst, nil
		case err != nil:
			return dst[:start], ErrCorrupt
		}
	}
}
