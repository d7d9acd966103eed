package wsclient

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReadBuffer is the read buffer size of a connection; a frame larger
// than the buffer grows it once (the only allocation on the read path).
const DefaultReadBuffer = 4096

// maxHandshake bounds the server's response head.
const maxHandshake = 8192

// HandshakeError is a non-101 answer to the upgrade request.
type HandshakeError struct {
	URL    string
	Status int    // HTTP status code, 0 if the response was not HTTP
	Line   string // status line
	Body   string // first line of the body, if it came with the head
}

func (e *HandshakeError) Error() string {
	s := fmt.Sprintf("handshake %s: %s", e.URL, e.Line)
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// CloseError is a close frame from the server.
type CloseError struct {
	Code   int // 1005 when the frame had no code
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("closed by server: %d %s", e.Code, e.Reason)
}

// Options tune Dial.
type Options struct {
	// LocalIP is the source address (nil: chosen by the kernel). Binding
	// different 127.0.0.x addresses gives each its own ephemeral port range.
	LocalIP net.IP
	// ReadBuffer is the read buffer size (0: DefaultReadBuffer).
	ReadBuffer int
	// Timeout bounds dial plus handshake (0: 10 s).
	Timeout time.Duration
	// Protocol, when set, is offered in Sec-WebSocket-Protocol
	// ("loopcast.v1").
	Protocol string
	// Deflate offers permessage-deflate (RFC 7692, no context takeover):
	// compressed messages from the server are inflated before they are
	// handed out. The client itself sends uncompressed.
	Deflate bool
}

// Conn is a client WebSocket connection. Reading is for one goroutine (or
// a Poller); writing is safe from several (a mutex, uncontended in the
// usual case of a reader answering pings while one writer sends).
type Conn struct {
	nc     net.Conn
	rbuf   []byte
	r, w   int  // unread bytes are rbuf[r:w]
	fragOp byte // opcode of the fragmented message being read, 0 if none
	frag   []byte

	// polled says a Poller took the connection over: nc is closed and
	// fd is the socket's own descriptor. closed guards closing it once.
	polled bool
	fd     int
	closed atomic.Bool
	// Tag is the caller's: a Poller hands the Conn back with every
	// message, and Tag says which of the caller's connections it is.
	Tag int

	wmu  sync.Mutex
	wbuf []byte
	rng  uint64

	protocol string // offered in the handshake
	offerZ   bool   // permessage-deflate offered
	// Deflate: the server accepted permessage-deflate. compressed marks
	// the message being assembled; inflated holds the last one.
	Deflate    bool
	compressed bool
	inflated   []byte
	zr         io.ReadCloser
	// BytesRead counts every byte read from the socket (frames and
	// headers): the wire size of what the server sent.
	BytesRead int64
}

// NetConn is the underlying connection; nil once a Poller took it over.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Dial connects to addr (host:port) and upgrades on path.
func Dial(ctx context.Context, addr, path string, o Options) (*Conn, error) {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.ReadBuffer == 0 {
		o.ReadBuffer = DefaultReadBuffer
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	d := net.Dialer{}
	if o.LocalIP != nil {
		d.LocalAddr = &net.TCPAddr{IP: o.LocalIP}
		d.Control = BindNoPort
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	c := &Conn{nc: nc, rbuf: make([]byte, max(o.ReadBuffer, maxHandshake)), protocol: o.Protocol, offerZ: o.Deflate}
	var seed [8]byte
	rand.Read(seed[:])
	c.rng = binary.LittleEndian.Uint64(seed[:]) | 1
	if err := c.handshake(addr, path); err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	if len(c.rbuf) > o.ReadBuffer && c.w-c.r <= o.ReadBuffer {
		// Shrink to the asked size, keeping any early frames.
		b := make([]byte, o.ReadBuffer)
		c.w = copy(b, c.rbuf[c.r:c.w])
		c.r = 0
		c.rbuf = b
	}
	return c, nil
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey is Sec-WebSocket-Accept for key (RFC 6455 §4.2.2).
func AcceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func (c *Conn) handshake(addr, path string) error {
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n"
	if c.protocol != "" {
		req += "Sec-WebSocket-Protocol: " + c.protocol + "\r\n"
	}
	if c.offerZ {
		req += "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n"
	}
	req += "\r\n"
	if _, err := io.WriteString(c.nc, req); err != nil {
		return err
	}
	url := "ws://" + addr + path
	for {
		if i := bytes.Index(c.rbuf[:c.w], []byte("\r\n\r\n")); i >= 0 {
			c.r = i + 4
			c.Deflate = c.offerZ && bytes.Contains(bytes.ToLower(c.rbuf[:i]), []byte("sec-websocket-extensions: permessage-deflate"))
			return checkResponse(url, c.rbuf[:i+2], c.rbuf[i+4:c.w], key)
		}
		if c.w == len(c.rbuf) {
			return &HandshakeError{URL: url, Line: "response head over 8 KiB"}
		}
		n, err := c.nc.Read(c.rbuf[c.w:])
		c.w += n
		if err != nil && n == 0 {
			if c.w > 0 {
				return &HandshakeError{URL: url, Line: "incomplete response: " + firstLine(c.rbuf[:c.w])}
			}
			return fmt.Errorf("handshake %s: %w", url, err)
		}
	}
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(bytes.TrimRight(b, "\r"))
}

// checkResponse validates a response head (status line and headers, each
// line ending in CRLF) against the key sent.
func checkResponse(url string, head, rest []byte, key string) error {
	line := firstLine(head)
	e := &HandshakeError{URL: url, Line: line, Body: firstLine(rest)}
	f := bytes.Fields([]byte(line))
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
		return e
	}
	e.Status, _ = strconv.Atoi(string(f[1]))
	if e.Status != 101 {
		return e
	}
	e.Body = ""
	var upgrade, accept bool
	for _, l := range bytes.Split(head, []byte("\r\n"))[1:] {
		name, val, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		val = bytes.TrimSpace(val)
		switch {
		case bytes.EqualFold(name, []byte("Upgrade")):
			upgrade = bytes.EqualFold(val, []byte("websocket"))
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Accept")):
			accept = string(val) == AcceptKey(key)
		}
	}
	if !upgrade {
		e.Line += " (no Upgrade: websocket)"
		return e
	}
	if !accept {
		e.Line += " (missing or wrong Sec-WebSocket-Accept)"
		return e
	}
	return nil
}

// makeRoom compacts or grows the read buffer so that at least need
// unread bytes fit.
func (c *Conn) makeRoom(need int) {
	if need > len(c.rbuf) {
		b := make([]byte, need)
		c.w = copy(b, c.rbuf[c.r:c.w])
		c.r = 0
		c.rbuf = b
	} else if c.r > 0 && len(c.rbuf)-c.r < need {
		c.w = copy(c.rbuf, c.rbuf[c.r:c.w])
		c.r = 0
	}
}

// fill reads more bytes, making room for at least need unread bytes.
func (c *Conn) fill(need int) error {
	c.makeRoom(need)
	n, err := c.nc.Read(c.rbuf[c.w:])
	c.w += n
	c.BytesRead += int64(n)
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// bufferedFrame returns the next frame if the read buffer holds all of
// it (need 0), or how many unread bytes it needs first (need > 0). The
// payload aliases the read buffer and is valid until the next read.
func (c *Conn) bufferedFrame() (h Header, payload []byte, need int, err error) {
	h, n, err := ParseHeader(c.rbuf[c.r:c.w])
	if err == ErrShort {
		return h, nil, maxHeader, nil
	}
	if h.Masked {
		return h, nil, 0, fmt.Errorf("%w: masked frame from server", ErrProtocol)
	}
	if h.Length > 1<<30 {
		return h, nil, 0, fmt.Errorf("%w: frame length %d", ErrProtocol, h.Length)
	}
	total := n + int(h.Length)
	if c.w-c.r < total {
		return h, nil, total, nil
	}
	payload = c.rbuf[c.r+n : c.r+total]
	c.r += total
	if c.r == c.w {
		c.r, c.w = 0, 0
	}
	return h, payload, 0, nil
}

// ReadFrame returns the next frame. The payload aliases the read buffer and
// is valid until the next read. Control frames are returned too.
func (c *Conn) ReadFrame() (Header, []byte, error) {
	for {
		h, p, need, err := c.bufferedFrame()
		if err != nil || need == 0 {
			return h, p, err
		}
		if err := c.fill(need); err != nil {
			return Header{}, nil, err
		}
	}
}

// ReadMessage returns the next data message, answering pings and closes on
// the way. The payload is valid until the next read. A close from the server
// is returned as *CloseError.
func (c *Conn) ReadMessage() (op byte, payload []byte, err error) {
	for {
		h, p, err := c.ReadFrame()
		if err != nil {
			return 0, nil, err
		}
		if op, msg, ok, err := c.onFrame(h, p); err != nil || ok {
			return op, msg, err
		}
	}
}

// onFrame takes one frame: ok with a complete data message (which
// aliases the frame or the fragment buffer), nothing for a control frame
// or a fragment (a ping is answered), an error for a close (as
// *CloseError, answered) or a protocol violation.
func (c *Conn) onFrame(h Header, p []byte) (op byte, msg []byte, ok bool, err error) {
	if c.Deflate && h.Rsv == 4 && (h.Op == OpText || h.Op == OpBinary) {
		// RSV1 on the first frame: a compressed message (RFC 7692 §6).
		h.Rsv = 0
		c.compressed = true
		if h.Fin {
			m, err := c.inflate(p)
			return h.Op, m, err == nil, err
		}
	}
	if h.Rsv != 0 {
		// RFC 6455 §5.2: RSV bits "MUST be 0 unless an extension is
		// negotiated"; this client negotiates none, so a server that
		// sets them (compression it was not asked for) is wrong.
		return 0, nil, false, fmt.Errorf("%w: reserved bits %#x set without a negotiated extension", ErrProtocol, h.Rsv)
	}
	switch h.Op {
	case OpPing:
		return 0, nil, false, c.WriteFrame(OpPong, p)
	case OpPong:
		return 0, nil, false, nil
	case OpClose:
		ce := &CloseError{Code: 1005}
		if len(p) >= 2 {
			ce.Code = int(binary.BigEndian.Uint16(p))
			ce.Reason = string(p[2:])
		}
		c.WriteClose(ce.Code, "")
		return 0, nil, false, ce
	case OpText, OpBinary:
		if c.fragOp != 0 {
			return 0, nil, false, fmt.Errorf("%w: new message inside a fragmented one", ErrProtocol)
		}
		if h.Fin {
			return h.Op, p, true, nil
		}
		c.fragOp = h.Op
		c.frag = append(c.frag[:0], p...)
		return 0, nil, false, nil
	case OpContinuation:
		if c.fragOp == 0 {
			return 0, nil, false, fmt.Errorf("%w: continuation without a start", ErrProtocol)
		}
		c.frag = append(c.frag, p...)
		if !h.Fin {
			return 0, nil, false, nil
		}
		op := c.fragOp
		c.fragOp = 0
		if c.compressed {
			m, err := c.inflate(c.frag)
			return op, m, err == nil, err
		}
		return op, c.frag, true, nil
	default:
		return 0, nil, false, fmt.Errorf("%w: opcode %#x", ErrProtocol, h.Op)
	}
}

// inflate reverses permessage-deflate (RFC 7692 §7.2.2) into c.inflated,
// valid until the next message.
func (c *Conn) inflate(z []byte) ([]byte, error) {
	c.compressed = false
	src := io.MultiReader(bytes.NewReader(z), bytes.NewReader([]byte{0, 0, 0xff, 0xff}))
	if c.zr == nil {
		c.zr = flate.NewReader(src)
	} else if err := c.zr.(flate.Resetter).Reset(src, nil); err != nil {
		return nil, err
	}
	c.inflated = c.inflated[:0]
	buf := bytes.NewBuffer(c.inflated)
	if _, err := buf.ReadFrom(c.zr); err != nil && err != io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("%w: bad compressed message: %v", ErrProtocol, err)
	}
	c.inflated = buf.Bytes()
	return c.inflated, nil
}

func (c *Conn) maskKey() [4]byte {
	// xorshift64: the key need not be secret here, only not constant.
	x := c.rng
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	c.rng = x
	var k [4]byte
	binary.LittleEndian.PutUint32(k[:], uint32(x))
	return k
}

// WriteFrame writes one masked frame with fin set. It does not allocate once
// the write buffer has grown to the largest frame written.
func (c *Conn) WriteFrame(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	need := maxHeader + len(payload)
	if cap(c.wbuf) < need {
		c.wbuf = make([]byte, need)
	}
	b := c.wbuf[:cap(c.wbuf)]
	h := Header{Fin: true, Op: op, Masked: true, Length: uint64(len(payload)), Mask: c.maskKey()}
	n := PutHeader(b, h)
	copy(b[n:], payload)
	Mask(b[n:n+len(payload)], h.Mask)
	if c.polled {
		return c.writeFd(b[:n+len(payload)])
	}
	_, err := c.nc.Write(b[:n+len(payload)])
	return err
}

// WriteClose sends a close frame with code (and reason).
func (c *Conn) WriteClose(code int, reason string) error {
	var b [125]byte
	binary.BigEndian.PutUint16(b[:], uint16(code))
	n := 2 + copy(b[2:], reason)
	return c.WriteFrame(OpClose, b[:n])
}

// Close closes the TCP connection without a close handshake.
func (c *Conn) Close() error {
	if c.polled {
		return c.closeFd()
	}
	return c.nc.Close()
}

// CloseGracefully sends a 1000 close frame and closes the connection.
func (c *Conn) CloseGracefully() error {
	if !c.polled {
		c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	}
	c.WriteClose(1000, "")
	return c.Close()
}

// IsClosedByPeer reports whether err means the server ended the connection
// (a close frame, EOF or a reset) rather than a local close.
func IsClosedByPeer(err error) bool {
	var ce *CloseError
	return errors.As(err, &ce) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		isReset(err)
}
