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
	// ErrCorrupt: not a valid compressed message: not DEFLATE data, a
	// stream truncated inside a block, or bytes after the final block.
	ErrCorrupt = errors.New("invalid permessage-deflate data")
)

// How the decompressor took bytes from a source. A source that is an
// io.ByteReader is read unbuffered (flate.NewReader). Block headers,
// Huffman tables and Huffman-coded data go through ReadByte; a stored
// block's LEN and NLEN, then its data, through Read (io.ReadFull). The
// decoder's bit buffer may hold up to 3 whole bytes when a stored block
// starts (it reads ahead up to 10 bits past a block that is not final,
// since the next block is at least that long), which then make the
// first bytes of LEN and NLEN; at least NLEN's last byte comes through
// Read. Inflate tells from this where the stream ended (endsCleanly).
const (
	tookNone = iota
	tookByte // ReadByte
	tookRead // Read
)

// source feeds a decompressor the message, then the tail, and records
// how it took them (see tookByte).
type source struct {
	msg  []byte
	tail []byte
	// lastMsg and lastTail: how the message's last byte and the tail's
	// last byte were taken; past: what the decompressor asked for once
	// both were used up.
	lastMsg, lastTail, past uint8
}

func (s *source) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(s.msg) > 0 {
		n := copy(p, s.msg)
		s.msg = s.msg[n:]
		if len(s.msg) == 0 {
			s.lastMsg = tookRead
		}
		return n, nil
	}
	if len(s.tail) > 0 {
		n := copy(p, s.tail)
		s.tail = s.tail[n:]
		if len(s.tail) == 0 {
			s.lastTail = tookRead
		}
		return n, nil
	}
	if s.past == tookNone {
		s.past = tookRead
	}
	return 0, io.EOF
}

func (s *source) ReadByte() (byte, error) {
	if len(s.msg) > 0 {
		b := s.msg[0]
		s.msg = s.msg[1:]
		if len(s.msg) == 0 {
			s.lastMsg = tookByte
		}
		return b, nil
	}
	if len(s.tail) > 0 {
		b := s.tail[0]
		s.tail = s.tail[1:]
		if len(s.tail) == 0 {
			s.lastTail = tookByte
		}
		return b, nil
	}
	if s.past == tookNone {
		s.past = tookByte
	}
	return 0, io.EOF
}

// tailWasEmptyStoredBlock reports whether the decompressor took the
// appended tail as the LEN and NLEN (0 and 0xffff) of a stored block
// whose header bits were in the message's last byte: what a flush ends
// with (RFC 7692 §7.2.1), BFINAL set or not. The tail's last byte came
// through Read, so it was NLEN's last byte or a stored block's data. Data
// that starts in the message takes the message's last byte with Read
// too; data that starts in the tail has LEN and NLEN made partly of the
// tail, which makes LEN at least 255, more than is left. Neither ends
// the block with the tail; the message's last byte taken with ReadByte
// leaves only LEN and NLEN.
func (s *source) tailWasEmptyStoredBlock() bool {
	return len(s.msg) == 0 && len(s.tail) == 0 && s.lastMsg == tookByte && s.lastTail == tookRead
}

// endsCleanly reports whether the stream ended where a valid message
// ends (RFC 7692 §7.2.2), given how the decompressor stopped: err is
// io.EOF after a block with BFINAL set, io.ErrUnexpectedEOF when it
// asked for more than the message and the tail.
func (s *source) endsCleanly(err error) bool {
	switch err {
	case io.EOF:
		// The final block ended within the message, before the tail,
		// followed by nothing or by one 0x00: the header bits of the
		// empty stored block a flush adds after it, whose LEN and NLEN
		// the sender removed (§7.2.1, the example of §7.2.3.4). (A final
		// block is never read ahead of.) Or the final block is that empty
		// stored block itself, as compress/flate's Close ends a stream.
		inMsg := len(s.tail) == len(tail) && (len(s.msg) == 0 || len(s.msg) == 1 && s.msg[0] == 0)
		return inMsg || s.past == tookNone && s.tailWasEmptyStoredBlock()
	case io.ErrUnexpectedEOF:
		// A flushed message (no BFINAL): the tail was the empty stored
		// block's LEN and NLEN, and then the decompressor asked for the
		// next block's header, not for more of a block.
		return s.tailWasEmptyStoredBlock() && s.past == tookByte
	}
	return false
}

type reader struct {
	src source
	r   io.ReadCloser
}

var readers sync.Pool

// Inflate appends the inflated form of msg (a compressed message) to dst
// and returns it. It stops with ErrTooLarge as soon as the output would
// pass limit bytes: a few KiB that inflate to GiBs never take more than
// limit (plus one read's worth). Data that is not a whole message is
// ErrCorrupt: invalid DEFLATE data, a stream that ends inside a block
// once the tail is appended (a truncated message), or bytes after the
// block with BFINAL set (besides the one 0x00 of RFC 7692 §7.2.3.4).
// On an error dst is returned without the partial output.
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
		if err == nil {
			continue
		}
		if r.src.endsCleanly(err) {
			return dst, nil
		}
		return dst[:start], ErrCorrupt
	}
}
