package server_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// This file is a deliberately small, strict WebSocket client working on a
// raw TCP socket, so the conformance suite controls every byte on the
// wire: masks, reserved bits, declared lengths, fragment boundaries and
// TCP write boundaries. It parses the server's frames itself and fails on
// anything RFC 6455 forbids a server to send (a masked frame, reserved
// bits, a fragmented or oversized control frame).

// Opcodes (RFC 6455 §5.2).
const (
	opCont   byte = 0x0
	opText   byte = 0x1
	opBinary byte = 0x2
	opClose  byte = 0x8
	opPing   byte = 0x9
	opPong   byte = 0xA
)

// ioTimeout bounds every read and write of the raw client, and the waits
// for the server's counters, so a server bug fails a test instead of
// hanging it. It is no claim about speed: far above what a loaded
// machine takes (-race, two cores shared with other work).
const ioTimeout = 15 * time.Second

// wsGUID is appended to the key to compute Sec-WebSocket-Accept (§1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsFrame is a frame as read from the server.
type wsFrame struct {
	fin     bool
	rsv     byte
	op      byte
	payload []byte
}

func (f wsFrame) String() string {
	p := f.payload
	suffix := ""
	if len(p) > 32 {
		p, suffix = p[:32], fmt.Sprintf("...(%d bytes)", len(f.payload))
	}
	return fmt.Sprintf("frame{fin=%v rsv=%d op=%#x payload=%q%s}", f.fin, f.rsv, f.op, p, suffix)
}

// closeCode returns the status code of a close frame, or 1005 for an
// empty body.
func (f wsFrame) closeCode() int {
	if len(f.payload) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(f.payload))
}

// frameSpec describes a client frame to encode, including invalid ones.
type frameSpec struct {
	fin     bool
	rsv     byte // RSV1..RSV3 as the low three bits
	op      byte
	payload []byte
	// unmasked sends the frame without a mask (a protocol violation).
	unmasked bool
	// declared, when set, is written as a 64-bit length instead of
	// len(payload); the payload bytes that follow are payload as is.
	declared *uint64
}

// encode renders the frame as a client sends it: masked with a random,
// non-zero key unless unmasked is set.
func (s frameSpec) encode() []byte {
	b0 := s.op&0x0f | (s.rsv&0x7)<<4
	if s.fin {
		b0 |= 0x80
	}
	var mbit byte = 0x80
	if s.unmasked {
		mbit = 0
	}
	b := make([]byte, 0, 14+len(s.payload))
	n := len(s.payload)
	switch {
	case s.declared != nil:
		b = append(b, b0, mbit|127)
		b = binary.BigEndian.AppendUint64(b, *s.declared)
	case n <= 125:
		b = append(b, b0, mbit|byte(n))
	case n <= 0xffff:
		b = append(b, b0, mbit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, b0, mbit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if s.unmasked {
		return append(b, s.payload...)
	}
	key := randomMask()
	b = append(b, key[:]...)
	for i, c := range s.payload {
		b = append(b, c^key[i&3])
	}
	return b
}

func randomMask() [4]byte {
	var k [4]byte
	for k == [4]byte{} {
		_, _ = rand.Read(k[:])
	}
	return k
}

// frameBytes encodes a valid masked frame.
func frameBytes(fin bool, op byte, payload []byte) []byte {
	return frameSpec{fin: fin, op: op, payload: payload}.encode()
}

// closePayload builds a close frame body.
func closePayload(code int, reason string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(code))
	return append(b, reason...)
}

// concat joins encoded frames into one buffer, for a single TCP write.
func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// rawClient is one raw TCP connection to the server.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
	// deflate: permessage-deflate was negotiated, so RSV1 is allowed.
	deflate bool
}

// dialOpts tunes the TCP socket of a raw client.
type dialOpts struct {
	rcvBuf int // SO_RCVBUF set before connect; 0 keeps the default
}

// dialRaw opens a TCP connection to addr that is closed at cleanup.
func dialRaw(t testing.TB, addr net.Addr, opts ...dialOpts) *rawClient {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout}
	for _, o := range opts {
		if o.rcvBuf > 0 {
			size := o.rcvBuf
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
				})
				return errors.Join(err, serr)
			}
		}
	}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{t: t, conn: c, br: bufio.NewReaderSize(c, 64<<10)}
}

// newKey returns a fresh Sec-WebSocket-Key.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// acceptFor computes the Sec-WebSocket-Accept the server must answer.
func acceptFor(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// upgradeRequest is a valid handshake request for path with key.
func upgradeRequest(path, key string) string {
	return "GET " + path + " HTTP/1.1\r\n" +
		"Host: 127.0.0.1\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Origin: http://localhost\r\n\r\n"
}

// dialWS opens a WebSocket to path and checks the 101 answer.
func dialWS(t testing.TB, addr net.Addr, path string, opts ...dialOpts) *rawClient {
	t.Helper()
	c := dialRaw(t, addr, opts...)
	key := newKey()
	c.write([]byte(upgradeRequest(path, key)))
	c.expectSwitching(key)
	return c
}

// expectSwitching reads the handshake answer and checks it is a valid 101.
func (c *rawClient) expectSwitching(key string) {
	c.t.Helper()
	resp := c.readResponse(false)
	if resp.status != 101 {
		c.t.Fatalf("handshake: status %d, want 101 (body %q)", resp.status, resp.body)
	}
	if got, want := resp.header.Get("Sec-WebSocket-Accept"), acceptFor(key); got != want {
		c.t.Fatalf("handshake: Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if !strings.EqualFold(resp.header.Get("Upgrade"), "websocket") {
		c.t.Fatalf("handshake: Upgrade %q, want websocket", resp.header.Get("Upgrade"))
	}
	if !strings.EqualFold(resp.header.Get("Connection"), "upgrade") {
		c.t.Fatalf("handshake: Connection %q, want Upgrade", resp.header.Get("Connection"))
	}
}

// write sends b in one write call.
func (c *rawClient) write(b []byte) {
	c.t.Helper()
	if err := c.tryWrite(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *rawClient) tryWrite(b []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := c.conn.Write(b)
	return err
}

// writeChunks sends b in writes of size bytes with a short pause between
// them, so the server receives the pieces in separate reads.
func (c *rawClient) writeChunks(b []byte, size int) {
	c.t.Helper()
	if err := c.tryWriteChunks(b, size); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// tryWriteChunks is writeChunks returning the first error; size <= 0
// writes b at once.
func (c *rawClient) tryWriteChunks(b []byte, size int) error {
	if size <= 0 {
		size = len(b)
	}
	for len(b) > 0 {
		n := min(size, len(b))
		if err := c.tryWrite(b[:n]); err != nil {
			return err
		}
		b = b[n:]
		if len(b) > 0 {
			time.Sleep(writePause)
		}
	}
	return nil
}

// writePause separates writes that must reach the server in separate
// reads. Loopback delivers a write within microseconds.
const writePause = 500 * time.Microsecond

// send writes one valid frame.
func (c *rawClient) send(fin bool, op byte, payload []byte) {
	c.t.Helper()
	c.write(frameBytes(fin, op, payload))
}

// readFrame reads one server frame and checks what RFC 6455 requires of
// every server frame.
func (c *rawClient) readFrame() (wsFrame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return wsFrame{}, err
	}
	f := wsFrame{fin: h[0]&0x80 != 0, rsv: h[0] >> 4 & 7, op: h[0] & 0x0f}
	if h[1]&0x80 != 0 {
		return f, errors.New("server frame is masked (RFC 6455 §5.1 forbids it)")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(c.br, e[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
		if n < 126 {
			return f, fmt.Errorf("16-bit length %d is not minimal", n)
		}
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(c.br, e[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(e[:])
		if n <= 0xffff || n>>63 != 0 {
			return f, fmt.Errorf("64-bit length %d is not minimal or has its MSB set", n)
		}
	}
	if n > 64<<20 {
		return f, fmt.Errorf("server frame of %d bytes: larger than any test sends", n)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, f.payload); err != nil {
		return f, err
	}
	switch {
	case f.rsv != 0 && !(c.deflate && f.rsv == 4 && f.op != opCont && f.op < 8):
		// RSV1 means compressed once permessage-deflate is negotiated,
		// on the first frame of a data message only (RFC 7692 §6.1).
		return f, fmt.Errorf("server frame with reserved bits %d: %v", f.rsv, f)
	case f.op >= 3 && f.op <= 7 || f.op >= 0xB:
		return f, fmt.Errorf("server frame with reserved opcode: %v", f)
	case f.op >= 8 && (!f.fin || len(f.payload) > 125):
		return f, fmt.Errorf("server control frame fragmented or over 125 bytes: %v", f)
	case f.op == opClose && len(f.payload) == 1:
		return f, fmt.Errorf("server close frame with a 1-byte body: %v", f)
	case f.op == opClose && !utf8.Valid(f.payload[min(2, len(f.payload)):]):
		return f, fmt.Errorf("server close reason is not UTF-8: %v", f)
	case f.op == opClose && len(f.payload) >= 2 && !sendableCloseCode(f.closeCode()):
		return f, fmt.Errorf("server close code %d may not be sent on the wire: %v", f.closeCode(), f)
	}
	return f, nil
}

// sendableCloseCode reports whether an endpoint may put code in a close
// frame (RFC 6455 §7.4.1, IANA registry, 3000-4999).
func sendableCloseCode(code int) bool {
	return code >= 1000 && code <= 1003 || code >= 1007 && code <= 1014 || code >= 3000 && code <= 4999
}

// mustFrame reads one frame or fails.
func (c *rawClient) mustFrame() wsFrame {
	c.t.Helper()
	f, err := c.readFrame()
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return f
}

// expectFrame reads the next frame and checks it is a complete frame
// with opcode op and exactly payload.
func (c *rawClient) expectFrame(op byte, payload []byte) {
	c.t.Helper()
	f := c.mustFrame()
	if f.op != op || !f.fin || !bytes.Equal(f.payload, payload) {
		want := wsFrame{fin: true, op: op, payload: payload}
		c.t.Fatalf("got %v, want %v", f, want)
	}
}

// expectClose reads the next frame, checks it is a close frame with code
// (1005: empty body), answers it as a client does, and checks that the
// server then closes the TCP connection without sending anything else.
func (c *rawClient) expectClose(code int) {
	c.t.Helper()
	f := c.mustFrame()
	if f.op != opClose {
		c.t.Fatalf("got %v, want a close frame with code %d", f, code)
	}
	if got := f.closeCode(); got != code {
		c.t.Fatalf("close code %d (reason %q), want %d", got, f.payload[min(2, len(f.payload)):], code)
	}
	// Answer the close (§5.5.1); the server may already have closed.
	_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, _ = c.conn.Write(frameBytes(true, opClose, f.payload[:min(2, len(f.payload))]))
	c.expectEOF()
}

// expectEOF checks that the server closes the connection within
// ioTimeout and sends no more bytes before doing so.
func (c *rawClient) expectEOF() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	var buf [512]byte
	n, err := c.br.Read(buf[:])
	switch {
	case n > 0:
		c.t.Fatalf("want the connection closed, got %d more bytes: %q", n, buf[:n])
	case isClosed(err):
	case isTimeout(err):
		c.t.Fatalf("connection still open after %s, want it closed", ioTimeout)
	default:
		c.t.Fatalf("want EOF, got %v", err)
	}
}

// readUntilClosed reads and discards everything until the server closes
// the connection, and returns how long that took. It fails after limit.
func (c *rawClient) readUntilClosed(limit time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	_ = c.conn.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c.br)
	if err != nil && !isClosed(err) {
		c.t.Fatalf("want the connection closed within %s, got %v", limit, err)
	}
	return time.Since(start)
}

// isClosed reports whether err means the peer closed the connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// expectOpen checks the WebSocket still works: an echo round trip on an
// /echo connection.
func (c *rawClient) expectEcho(op byte, payload []byte) {
	c.t.Helper()
	c.send(true, op, payload)
	c.expectFrame(op, payload)
}

// httpResponse is a parsed HTTP/1.1 response.
type httpResponse struct {
	proto  string
	status int
	header httpHeader
	body   string
}

// httpHeader holds header fields by lower-case name.
type httpHeader map[string][]string

func (h httpHeader) Get(name string) string {
	if v := h[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// readResponse reads one HTTP response; headReq means it answers a HEAD
// request and has no body whatever Content-Length says.
func (c *rawClient) readResponse(headReq bool) httpResponse {
	c.t.Helper()
	r, err := c.tryReadResponse(headReq)
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	return r
}

func (c *rawClient) tryReadResponse(headReq bool) (httpResponse, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	var r httpResponse
	line, err := c.br.ReadString('\n')
	if err != nil {
		return r, fmt.Errorf("status line: %w", err)
	}
	if !strings.HasSuffix(line, "\r\n") {
		return r, fmt.Errorf("status line %q does not end in CRLF", line)
	}
	parts := strings.SplitN(strings.TrimSuffix(line, "\r\n"), " ", 3)
	if len(parts) < 2 {
		return r, fmt.Errorf("malformed status line %q", line)
	}
	r.proto = parts[0]
	if r.status, err = strconv.Atoi(parts[1]); err != nil {
		return r, fmt.Errorf("malformed status line %q", line)
	}
	r.header = httpHeader{}
	for {
		line, err = c.br.ReadString('\n')
		if err != nil {
			return r, fmt.Errorf("header: %w", err)
		}
		if !strings.HasSuffix(line, "\r\n") {
			return r, fmt.Errorf("header line %q does not end in CRLF", line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return r, fmt.Errorf("malformed header line %q", line)
		}
		k := strings.ToLower(name)
		r.header[k] = append(r.header[k], strings.TrimSpace(value))
	}
	if headReq || r.status == 101 || r.status == 204 || r.status == 304 {
		return r, nil
	}
	cl := r.header.Get("Content-Length")
	if cl == "" {
		return r, errors.New("response without Content-Length")
	}
	n, err := strconv.Atoi(cl)
	if err != nil || n < 0 || n > 1<<20 {
		return r, fmt.Errorf("bad Content-Length %q", cl)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return r, fmt.Errorf("body: %w", err)
	}
	r.body = string(body)
	return r, nil
}
