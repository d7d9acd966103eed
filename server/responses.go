package server

import (
	"net/http"
	"strconv"

	"github.com/loopcast/loopcast/server/internal/reqhead"
)

// Every HTTP answer except 101 is built once at start-up, so answering a
// probe costs one write and no allocation.

// healthBody is what a probe reads while the server serves.
const (
	healthOK       = "ok\n"
	healthDraining = "draining\n"
	healthNotReady = "not ready: the cluster log (JetStream) is not read back yet, or NATS is unreachable (the log says which)\n"
)

// keep-alive modes of a health response.
const (
	keepAlive11 = iota // HTTP/1.1 persistent: no Connection header
	keepAlive10        // HTTP/1.0 asked for keep-alive: echo it
	closeAfter         // Connection: close
	numConnModes
)

// Readiness states of the health answer: healthResponses' first index.
const (
	readyState    = 0
	drainingState = 1 // Shutdown began
	notReadyState = 2 // the cluster log is not read back yet (or NATS unreachable)
)

// healthResponses[readiness][head][mode]
var healthResponses = func() (t [3][2][numConnModes][]byte) {
	for state := range 3 {
		status, body := 200, healthOK
		switch state {
		case drainingState:
			status, body = 503, healthDraining
		case notReadyState:
			status, body = 503, healthNotReady
		}
		for head := range 2 {
			for mode := range numConnModes {
				var extra string
				switch mode {
				case keepAlive10:
					extra = "Connection: keep-alive\r\n"
				case closeAfter:
					extra = "Connection: close\r\n"
				}
				t[state][head][mode] = buildResponse(status, extra, body, head == 1)
			}
		}
	}
	return t
}()

// pageResponses are Config.Pages' answers: [head][mode] per path.
type pageResponses map[string]*[2][numConnModes][]byte

func buildPages(pages map[string]Page) pageResponses {
	if len(pages) == 0 {
		return nil
	}
	out := pageResponses{}
	for path, p := range pages {
		if p.Dynamic != nil {
			continue // dynamicPages
		}
		var t [2][numConnModes][]byte
		for head := range 2 {
			for mode := range numConnModes {
				extra := "Content-Type: " + p.ContentType + "\r\n"
				switch mode {
				case keepAlive10:
					extra += "Connection: keep-alive\r\n"
				case closeAfter:
					extra += "Connection: close\r\n"
				}
				t[head][mode] = buildTypedResponse(200, extra, string(p.Body), head == 1, false)
			}
		}
		out[path] = &t
	}
	return out
}

// dynamicPages are Config.Pages' pages with a Dynamic body, by path.
func dynamicPages(pages map[string]Page) map[string]Page {
	var out map[string]Page
	for path, p := range pages {
		if p.Dynamic != nil {
			if out == nil {
				out = map[string]Page{}
			}
			out[path] = p
		}
	}
	return out
}

// dynamicResponse builds a Dynamic page's answer for one request.
func dynamicResponse(p Page, query []byte, headOnly bool, mode int) []byte {
	extra := "Content-Type: " + p.ContentType + "\r\nCache-Control: no-store\r\n"
	switch mode {
	case keepAlive10:
		extra += "Connection: keep-alive\r\n"
	case closeAfter:
		extra += "Connection: close\r\n"
	}
	return buildTypedResponse(200, extra, string(p.Dynamic(query)), headOnly, false)
}

// buildResponse renders a complete response with a text/plain body.
// With headOnly the body is left out but Content-Length still counts it
// (RFC 9110 §9.3.2).
func buildResponse(status int, extraHeaders, body string, headOnly bool) []byte {
	return buildTypedResponse(status, extraHeaders, body, headOnly, true)
}

func buildTypedResponse(status int, extraHeaders, body string, headOnly, plain bool) []byte {
	b := []byte("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	if plain {
		b = append(b, "Content-Type: text/plain; charset=utf-8\r\n"...)
	}
	b = append(b, "Cache-Control: no-store\r\n"...)
	b = append(b, "Content-Length: "+strconv.Itoa(len(body))+"\r\n"...)
	b = append(b, extraHeaders...)
	b = append(b, "\r\n"...)
	if !headOnly {
		b = append(b, body...)
	}
	return b
}

// A rejection is an error answer followed by closing the connection.
type rejection struct {
	status int
	idx    int    // index of status in rejectStatuses, for counting
	resp   []byte // complete response, Connection: close
}

// rejectStatuses are the status codes a refusal can have; counted apart.
var rejectStatuses = [...]int{400, 401, 403, 404, 405, 426, 429, 431, 503, 505}

func newRejection(status int, reason, extraHeaders string) *rejection {
	idx := -1
	for i, st := range rejectStatuses {
		if st == status {
			idx = i
		}
	}
	if idx < 0 {
		panic("loopcast: rejection status not in rejectStatuses")
	}
	return &rejection{status, idx, buildResponse(status, extraHeaders+"Connection: close\r\n", reason+"\n", false)}
}

// exampleKey is RFC 6455's own example of a valid Sec-WebSocket-Key.
const exampleKey = "dGhlIHNhbXBsZSBub25jZQ=="

// Answers the front door gives instead of 101 or a health response.
var (
	rejHeadTooLarge  = newRejection(431, "request head over 8 KiB", "")
	rejMethod        = newRejection(405, "only GET and HEAD are served on this port", "Allow: GET, HEAD\r\n")
	rejUpgradeMethod = newRejection(400, "a WebSocket upgrade must be a GET request (RFC 6455 section 4.1)", "")
	rejUpgradeHTTP10 = newRejection(400, "a WebSocket upgrade needs HTTP/1.1 (RFC 6455 section 4.1)", "")
	rejUpgradeToken  = newRejection(400, "the Upgrade header must contain websocket", "")
	rejConnToken     = newRejection(400, "the Connection header must contain Upgrade", "")
	rejVersion       = newRejection(426, "unsupported Sec-WebSocket-Version: this server speaks version 13", "Sec-WebSocket-Version: 13\r\n")
	rejKey           = newRejection(400, "bad Sec-WebSocket-Key: it must be the base64 encoding of 16 random bytes, 24 characters such as "+exampleKey+" (RFC 6455 section 4.1); clients generate a fresh one per connection", "")
	rejNoKey         = newRejection(400, "missing Sec-WebSocket-Key: send the base64 encoding of 16 random bytes, 24 characters such as "+exampleKey, "")
	rejNotFound      = newRejection(404, "no WebSocket endpoint at this path: use /ws, /ws/{room} or /echo", "")
	rejRoomName      = newRejection(400, "room names are 1 to 64 characters of A-Z a-z 0-9 . _ -, not . or ..", "")
	rejOrigin        = newRejection(403, "origin not allowed", "") // answered by appendOriginRejection
	rejDraining      = newRejection(503, "draining: reconnect to another instance", "Retry-After: 1\r\n")
	rejBody          = newRejection(400, "GET and HEAD requests must not carry a body", "")
	rejAuthMissing   = newRejection(401, "missing token: send Authorization: Bearer <JWT>, or ?token=<JWT> from a browser", "WWW-Authenticate: Bearer realm=\"loopcast\"\r\n")
	rejAuthInvalid   = newRejection(401, "invalid token", "WWW-Authenticate: Bearer realm=\"loopcast\", error=\"invalid_token\"\r\n")
	rejAuthExpired   = newRejection(401, "token expired", "WWW-Authenticate: Bearer realm=\"loopcast\", error=\"invalid_token\", error_description=\"expired\"\r\n")
	rejRoomForbidden = newRejection(403, "the token's rooms claim does not allow this room", "")
	rejAuthNoExp     = newRejection(401, "token has no exp claim (jwt-allow-no-exp accepts such tokens)", "WWW-Authenticate: Bearer realm=\"loopcast\", error=\"invalid_token\"\r\n")
	rejAuthAudience  = newRejection(401, "token's aud or iss is not this server's (jwt-audience, jwt-issuer)", "WWW-Authenticate: Bearer realm=\"loopcast\", error=\"invalid_token\"\r\n")
	rejFull          = newRejection(503, "server full (max-conns): retry on another instance", "Retry-After: 1\r\n")
	rejPerIP         = newRejection(429, "too many connections from this address (max-conns-per-ip)", "Retry-After: 5\r\n")
	rejRoomsFull     = newRejection(503, "room limit reached (max-rooms): join an existing room or retry later", "Retry-After: 5\r\n")
	// rejOverCapacity is written at accept, before the request is read,
	// to a connection beyond the connection budget (see fdbudget.go).
	rejOverCapacity = newRejection(503, "over capacity: the server holds as many connections as its open-file limit allows; retry on another instance", "Retry-After: 1\r\n")
)

// parseRejections maps the request parser's errors to their answers.
var parseRejections = func() map[*reqhead.Error]*rejection {
	m := map[*reqhead.Error]*rejection{}
	for _, e := range []*reqhead.Error{
		reqhead.ErrRequestLine, reqhead.ErrTarget, reqhead.ErrVersion, reqhead.ErrVersionSupport,
		reqhead.ErrHeaderLine, reqhead.ErrObsFold, reqhead.ErrDuplicate, reqhead.ErrContentLength, reqhead.ErrNoHost,
	} {
		m[e] = newRejection(e.Status, e.Reason, "")
	}
	return m
}()

// maxEchoedOrigin bounds how much of a refused Origin the 403 repeats.
const maxEchoedOrigin = 200

// appendOriginRejection appends the 403 for an Origin not in
// AllowedOrigins: its body names the Origin received, or says there was
// none (see Config.AllowNoOrigin). The header value was checked by the
// request parser (no control characters). It does not allocate.
func appendOriginRejection(dst, origin []byte) []byte {
	const none = "origin not allowed: the request has no Origin header (allow-no-origin admits clients that send none)\n"
	const some = "origin not allowed: Origin: "
	bodyLen := len(none)
	if origin != nil {
		origin = origin[:min(len(origin), maxEchoedOrigin)]
		bodyLen = len(some) + len(origin) + 1
	}
	dst = append(dst, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(bodyLen), 10)
	dst = append(dst, "\r\n\r\n"...)
	if origin == nil {
		return append(dst, none...)
	}
	dst = append(append(dst, some...), origin...)
	return append(dst, '\n')
}
