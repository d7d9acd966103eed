// Package reqhead parses HTTP/1.x request heads in place.
//
// Parse reads one request head (request line and header fields, up to the
// empty line) from the front of a byte slice without copying or
// allocating: every []byte in Head aliases the input and is valid only as
// long as the input is (for a gnet Peek slice: until the callback returns
// or Discard is called). A head not yet complete yields ErrIncomplete, so
// the caller waits for more bytes; one longer than the limit yields
// ErrTooLarge. Lines may end in CRLF or a bare LF (RFC 9112 §2.2).
//
// Only the fields a WebSocket front door needs are kept; the rest are
// checked for syntax and skipped.
package reqhead

import (
	"bytes"
	"errors"
)

// ErrIncomplete reports that the input ends before the empty line that
// closes the head. Compare with ==.
var ErrIncomplete = errors.New("reqhead: incomplete request head")

// ErrTooLarge reports a head longer than the limit passed to Parse; the
// server answers 431 (RFC 6585 §5).
var ErrTooLarge = errors.New("reqhead: request head too large")

// Error is a malformed request: the server answers Status with Reason as
// the body, then closes. The package's values are shared; do not modify.
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return e.Reason }

// Syntax errors.
var (
	ErrRequestLine    = &Error{400, "malformed request line"}
	ErrTarget         = &Error{400, "request target must be an absolute path"}
	ErrVersion        = &Error{400, "malformed HTTP version"}
	ErrVersionSupport = &Error{505, "only HTTP/1.0 and HTTP/1.1 are served"}
	ErrHeaderLine     = &Error{400, "malformed header field"}
	ErrObsFold        = &Error{400, "obsolete line folding in header field"}
	ErrDuplicate      = &Error{400, "duplicate header field that must appear once"}
	ErrContentLength  = &Error{400, "invalid Content-Length"}
	ErrNoHost         = &Error{400, "HTTP/1.1 request without a Host header (RFC 9112 section 3.2)"}
	ErrHost           = &Error{400, "invalid Host header: want host or host:port, such as localhost or 10.1.2.3:8080 (RFC 9112 section 3.2)"}
)

// Connection, Upgrade and Sec-WebSocket-Protocol tokens seen in any
// occurrence of the headers.
const (
	ConnClose     = 1 << iota // Connection: close
	ConnKeepAlive             // Connection: keep-alive
	ConnUpgrade               // Connection: upgrade
	UpgradeWS                 // Upgrade: websocket
	ProtoLoopcast             // Sec-WebSocket-Protocol: loopcast.v1 (case-sensitive, RFC 6455 §4.1)
)

// MaxExtensionHeaders is how many Sec-WebSocket-Extensions header lines
// a Head keeps.
const MaxExtensionHeaders = 4

// MaxForwardedFor is how many X-Forwarded-For header lines a Head keeps:
// the last ones, since the list is read from the right (each proxy
// appends what it saw, to the last line or as a line of its own). A chain
// of proxies adding a line each rarely passes 3; more lines cost nothing
// but are not kept (see Head.ForwardedFor).
const MaxForwardedFor = 8

// Subprotocol is the WebSocket subprotocol ProtoLoopcast stands for.
const Subprotocol = "loopcast.v1"

// Head is a parsed request head. Slices alias the input.
type Head struct {
	Method []byte
	Path   []byte // target up to '?', always starting with '/'
	Query  []byte // after '?', without it
	Minor  int    // HTTP/1.Minor: 0 or 1
	Len    int    // bytes of the head, final empty line included

	Host    []byte // required in HTTP/1.1; may be empty; else uri-host[:port] (ValidHost)
	Key     []byte // Sec-WebSocket-Key
	Version []byte // Sec-WebSocket-Version
	Origin  []byte
	// Extensions are the values of the first MaxExtensionHeaders
	// Sec-WebSocket-Extensions headers (a list may be split over
	// several); later ones are ignored.
	Extensions    [MaxExtensionHeaders][]byte
	Authorization []byte
	// ForwardedFor holds the values of the last MaxForwardedFor
	// X-Forwarded-For lines, in order; ForwardedForLines counts every
	// line. RFC 9110 §5.3: lines of one field combine, in order, into one
	// comma-separated list, so the list is ForwardedFor[0], ...,
	// ForwardedFor[n-1] joined by commas (n = min(ForwardedForLines,
	// MaxForwardedFor)). When ForwardedForLines exceeds MaxForwardedFor,
	// the first lines, the left end of the list, are not kept: whoever
	// reads the list from the right must not look past what is kept
	// (ForwardedForTruncated). Use ForwardedForList.
	ForwardedFor      [MaxForwardedFor][]byte
	ForwardedForLines int

	Tokens        int   // Conn* and UpgradeWS bits
	ContentLength int64 // -1 when absent
	Chunked       bool  // Transfer-Encoding present (any value)
}

// ForwardedForList returns the X-Forwarded-For lines kept, in order. It
// aliases h: valid as long as h and its input are.
func (h *Head) ForwardedForList() [][]byte {
	return h.ForwardedFor[:min(h.ForwardedForLines, MaxForwardedFor)]
}

// ForwardedForTruncated reports whether X-Forwarded-For lines were
// dropped from the left of the list (more than MaxForwardedFor lines).
func (h *Head) ForwardedForTruncated() bool { return h.ForwardedForLines > MaxForwardedFor }

// KeepAlive reports whether the connection stays open after the answer:
// HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with keep-alive.
func (h *Head) KeepAlive() bool {
	if h.Tokens&ConnClose != 0 {
		return false
	}
	return h.Minor == 1 || h.Tokens&ConnKeepAlive != 0
}

// Parse parses the request head at the front of b into h. It returns
// ErrIncomplete when b holds no complete head and is at most limit bytes,
// ErrTooLarge when no head ends within limit bytes, or an *Error.
func Parse(b []byte, limit int, h *Head) error {
	end, ok := headEnd(b, limit)
	if !ok {
		if len(b) > limit {
			return ErrTooLarge
		}
		return ErrIncomplete
	}
	*h = Head{Len: end, ContentLength: -1}
	head := b[:end]

	line, rest := nextLine(head[leadingEmptyLine(head):])
	if err := h.parseRequestLine(line); err != nil {
		return err
	}
	for {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			if h.Minor == 1 && h.Host == nil {
				// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad
				// Request) status code to any HTTP/1.1 request message
				// that lacks a Host header field".
				return ErrNoHost
			}
			return nil
		}
		if err := h.parseField(line); err != nil {
			return err
		}
	}
}

// headEnd returns the length of the head including its final empty line,
// looking no further than limit bytes.
func headEnd(b []byte, limit int) (int, bool) {
	search := b[:min(len(b), limit)]
	i := leadingEmptyLine(search)
	for {
		j := bytes.IndexByte(search[i:], '\n')
		if j < 0 {
			return 0, false
		}
		i += j + 1 // start of the next line
		if i < len(search) && search[i] == '\n' {
			return i + 1, true
		}
		if i+1 < len(search) && search[i] == '\r' && search[i+1] == '\n' {
			return i + 2, true
		}
	}
}

// leadingEmptyLine returns the length of one empty line at the front of
// b, which RFC 9112 §2.2 says a server SHOULD ignore, or 0.
func leadingEmptyLine(b []byte) int {
	switch {
	case len(b) >= 1 && b[0] == '\n':
		return 1
	case len(b) >= 2 && b[0] == '\r' && b[1] == '\n':
		return 2
	}
	return 0
}

// nextLine splits off the first line, without its CRLF or LF.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

var rootPath = []byte{'/'}

func (h *Head) parseRequestLine(line []byte) error {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return ErrRequestLine
	}
	method := line[:sp1]
	for _, c := range method {
		if !isToken(c) {
			return ErrRequestLine
		}
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return ErrRequestLine
	}
	target, version := rest[:sp2], rest[sp2+1:]
	if len(version) != 8 || string(version[:5]) != "HTTP/" || version[6] != '.' ||
		!isDigit(version[5]) || !isDigit(version[7]) {
		return ErrVersion
	}
	if version[5] != '1' || version[7] > '1' {
		return ErrVersionSupport
	}
	h.Minor = int(version[7] - '0')
	h.Method = method
	// absolute-form (RFC 9112 §3.2.2): keep the path.
	if hasPrefixFold(target, "http://") || hasPrefixFold(target, "https://") {
		t := target[bytes.Index(target, []byte("//"))+2:]
		slash := bytes.IndexByte(t, '/')
		if slash < 0 {
			target = rootPath
		} else {
			target = t[slash:]
		}
	}
	if len(target) == 0 || target[0] != '/' {
		return ErrTarget
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return ErrTarget
		}
	}
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		h.Path, h.Query = target[:q], target[q+1:]
	} else {
		h.Path = target
	}
	return nil
}

func (h *Head) parseField(line []byte) error {
	if line[0] == ' ' || line[0] == '\t' {
		return ErrObsFold // RFC 9112 §5.2
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return ErrHeaderLine
	}
	name := line[:colon]
	for _, c := range name {
		if !isToken(c) { // also rejects whitespace before the colon (§5.1)
			return ErrHeaderLine
		}
	}
	value := trimOWS(line[colon+1:])
	for _, c := range value {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return ErrHeaderLine
		}
	}
	switch {
	case equalFold(name, "host"):
		// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad
		// Request) status code to any HTTP/1.1 request message that
		// lacks a Host header field and to any request message that
		// contains more than one Host header field line or a Host header
		// field with an invalid field value."
		if !setOnce(&h.Host, value) {
			return ErrDuplicate
		}
		if !ValidHost(value) {
			return ErrHost
		}
	case equalFold(name, "connection"):
		forEachToken(value, func(t []byte) {
			switch {
			case equalFold(t, "close"):
				h.Tokens |= ConnClose
			case equalFold(t, "keep-alive"):
				h.Tokens |= ConnKeepAlive
			case equalFold(t, "upgrade"):
				h.Tokens |= ConnUpgrade
			}
		})
	case equalFold(name, "upgrade"):
		forEachToken(value, func(t []byte) {
			// A protocol may carry a version: "websocket/13" is not
			// RFC 6455's token, so compare the whole token.
			if equalFold(t, "websocket") {
				h.Tokens |= UpgradeWS
			}
		})
	case equalFold(name, "sec-websocket-protocol"):
		forEachToken(value, func(t []byte) {
			if string(t) == Subprotocol {
				h.Tokens |= ProtoLoopcast
			}
		})
	case equalFold(name, "sec-websocket-key"):
		if !setOnce(&h.Key, value) {
			return ErrDuplicate
		}
	case equalFold(name, "sec-websocket-version"):
		if !setOnce(&h.Version, value) {
			return ErrDuplicate
		}
	case equalFold(name, "sec-websocket-extensions"):
		for i := range h.Extensions {
			if h.Extensions[i] == nil {
				h.Extensions[i] = value
				break
			}
		}
	case equalFold(name, "origin"):
		if !setOnce(&h.Origin, value) {
			return ErrDuplicate
		}
	case equalFold(name, "authorization"):
		if !setOnce(&h.Authorization, value) {
			return ErrDuplicate
		}
	case equalFold(name, "x-forwarded-for"):
		// Keep the last MaxForwardedFor lines: the list's right end,
		// which proxies write, rather than its left, which clients do.
		if n := h.ForwardedForLines; n < MaxForwardedFor {
			h.ForwardedFor[n] = value
		} else {
			copy(h.ForwardedFor[:], h.ForwardedFor[1:])
			h.ForwardedFor[MaxForwardedFor-1] = value
		}
		h.ForwardedForLines++
	case equalFold(name, "content-length"):
		n, ok := parseUint(value)
		if !ok || (h.ContentLength >= 0 && h.ContentLength != n) {
			return ErrContentLength
		}
		h.ContentLength = n
	case equalFold(name, "transfer-encoding"):
		h.Chunked = true
	}
	return nil
}

// setOnce stores the value of a header that must appear once; it
// reports false for a second occurrence.
func setOnce(field *[]byte, value []byte) bool {
	if *field != nil {
		return false
	}
	*field = value
	return true
}

// forEachToken calls fn with each element of a comma-separated list,
// trimmed, skipping empty elements (RFC 9110 §5.6.1).
func forEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var t []byte
		if i < 0 {
			t, v = v, nil
		} else {
			t, v = v[:i], v[i+1:]
		}
		if t = trimOWS(t); len(t) > 0 {
			fn(t)
		}
	}
}

func parseUint(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// equalFold compares b with an ASCII lower-case string, ignoring case.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// EqualFold is equalFold for callers outside the package: it reports
// whether b equals the lower-case ASCII string lower, ignoring case.
func EqualFold(b []byte, lower string) bool { return equalFold(b, lower) }

func hasPrefixFold(b []byte, lower string) bool {
	return len(b) >= len(lower) && equalFold(b[:len(lower)], lower)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// IsTokenChar reports whether c may appear in a token (a tchar, RFC 9110
// §5.6.2), for callers outside the package that parse header values.
func IsTokenChar(c byte) bool { return tokenTable[c] }

// isToken reports whether c is a tchar (RFC 9110 §5.6.2).
func isToken(c byte) bool {
	return tokenTable[c]
}

var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// Fields returns the values of the header fields named name (ASCII case
// insensitive) in head, a complete request head that Parse accepted,
// each without surrounding white space, in order. Used once per upgrade
// by the connect hook (the headers it forwards), never per message.
func Fields(head []byte, name string) [][]byte {
	var out [][]byte
	first := true
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimSuffix(head[:i], []byte{'\r'})
		head = head[i+1:]
		if first {
			first = false // the request line
			continue
		}
		k, v, ok := bytes.Cut(line, []byte{':'})
		if ok && len(k) == len(name) && bytes.EqualFold(k, []byte(name)) {
			out = append(out, bytes.TrimSpace(v))
		}
	}
	return out
}
