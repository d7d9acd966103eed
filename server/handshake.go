package server

import (
	"crypto/sha1"
	"encoding/base64"
	"net/url"
	"strings"

	"github.com/loopcast/loopcast/server/internal/command"
	"github.com/loopcast/loopcast/server/internal/deflate"
	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/reqhead"
)

// acceptGUID is appended to the client's key (RFC 6455 §1.3).
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// keyLen is the length of a valid Sec-WebSocket-Key: base64 of 16 bytes.
const keyLen = 24

// validKey reports whether key is the base64 encoding of exactly 16
// bytes (RFC 6455 §4.2.1 item 5). It does not allocate.
func validKey(key []byte) bool {
	if len(key) != keyLen {
		return false
	}
	var dst [18]byte
	n, err := base64.StdEncoding.Decode(dst[:], key)
	return err == nil && n == 16
}

// appendAccept appends the Sec-WebSocket-Accept value for a valid key.
func appendAccept(dst, key []byte) []byte {
	var in [keyLen + len(acceptGUID)]byte
	copy(in[:], key)
	copy(in[keyLen:], acceptGUID)
	sum := sha1.Sum(in[:])
	var out [28]byte
	base64.StdEncoding.Encode(out[:], sum[:])
	return append(dst, out[:]...)
}

// appendSwitching appends the 101 answer to a valid handshake for t:
// selecting loopcast.v1 when t.v1 (RFC 6455 §4.2.2: the one subprotocol
// chosen among the client's offers), and permessage-deflate when
// t.deflate.
func appendSwitching(dst, key []byte, t target) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = appendAccept(dst, key)
	if t.v1 {
		dst = append(dst, "\r\nSec-WebSocket-Protocol: "+reqhead.Subprotocol...)
	}
	dst = append(dst, "\r\n"...)
	if t.deflate {
		dst = deflate.AppendResponse(dst, deflate.Agreement{})
	}
	return append(dst, "\r\n"...)
}

// isUpgradeAttempt reports whether a request tries to open a WebSocket:
// it asks to upgrade to websocket, or carries a WebSocket key. Other
// upgrade offers (h2c) are ignored, as RFC 9110 §7.8 allows.
func isUpgradeAttempt(h *reqhead.Head) bool {
	return h.Tokens&reqhead.UpgradeWS != 0 || h.Key != nil || h.Version != nil
}

// target is where an upgrade leads.
type target struct {
	echo bool
	// v1: the client offered loopcast.v1 on /ws or /ws/{room}.
	v1   bool
	room []byte // aliases the request; copy before keeping. v1: nil on /ws
	// sess is what the client's token allows (nil: everything).
	sess *session
	// deflate: permessage-deflate was offered and is accepted.
	deflate bool
	// since are the positions a loopcast.v1 client resumes its token's
	// subs rooms from (?since=room:epoch:offset, comma-separated).
	since map[string]fanout.Resume
}

// route maps an upgrade path to its target: raw mode, unless v1.
func route(path []byte, v1 bool) (target, *rejection) {
	switch string(path) {
	case "/echo":
		return target{echo: true}, nil
	case "/ws":
		if v1 {
			return target{v1: true}, nil // subscriptions come as commands
		}
		return target{room: defaultRoom}, nil
	}
	if len(path) > 4 && string(path[:4]) == "/ws/" {
		name := path[4:]
		if !ValidRoomName(name) {
			return target{}, rejRoomName
		}
		return target{room: name, v1: v1}, nil
	}
	if string(path) == "/ws/" {
		return target{}, rejRoomName
	}
	return target{}, rejNotFound
}

var defaultRoom = []byte("default")

// checkUpgrade validates an upgrade request (RFC 6455 §4.2.1) and returns
// where it leads, or the answer that refuses it.
func (s *Server) checkUpgrade(h *reqhead.Head) (target, *rejection) {
	if string(h.Method) != "GET" {
		return target{}, rejUpgradeMethod
	}
	t, rej := route(h.Path, h.Tokens&reqhead.ProtoLoopcast != 0)
	if rej != nil {
		return t, rej
	}
	switch {
	case h.Minor < 1:
		return t, rejUpgradeHTTP10
	case h.Tokens&reqhead.UpgradeWS == 0:
		return t, rejUpgradeToken
	case h.Tokens&reqhead.ConnUpgrade == 0:
		return t, rejConnToken
	case string(h.Version) != "13":
		return t, rejVersion
	case h.Key == nil:
		return t, rejNoKey
	case !validKey(h.Key):
		return t, rejKey
	case !s.originAllowed(h.Origin):
		return t, rejOrigin
	case s.draining.Load():
		return t, rejDraining
	}
	if s.auth != nil {
		if t.sess, rej = s.auth.check(h, t); rej != nil {
			return t, rej
		}
	}
	if t.v1 && strings.Contains(string(h.Query), "since=") {
		// For the token's subs, or those the connect hook will give.
		if t.since, rej = parseSince(h.Query, s.cfg.MaxSubscriptions); rej != nil {
			return t, rej
		}
	}
	if s.zip != nil {
		_, t.deflate = deflate.Negotiate(h.Extensions[:]...)
	}
	return t, nil
}

// rejSince refuses a malformed ?since=.
var rejSince = newRejection(400, "since: want room:epoch:offset, comma-separated (epoch 16 lower-case hex digits)", "")

// parseSince reads the since parameters of a query: where to resume the
// token's subs rooms. Once per upgrade that has subs, never per message.
func parseSince(query []byte, max int) (map[string]fanout.Resume, *rejection) {
	q, _ := url.ParseQuery(string(query)) // other parameters are not ours to judge
	var out map[string]fanout.Resume
	for _, v := range q["since"] {
		for _, e := range strings.Split(v, ",") {
			room, rest, ok1 := strings.Cut(e, ":")
			ep, off, ok2 := strings.Cut(rest, ":")
			c, perr := command.Parse([]byte("sub 0 " + room + " " + ep + " " + off))
			if !ok1 || !ok2 || perr != nil {
				return nil, rejSince
			}
			if len(out) >= max {
				return out, nil // more than max-subscriptions: the rest start live
			}
			if out == nil {
				out = map[string]fanout.Resume{}
			}
			out[room] = fanout.Resume{Epoch: c.Epoch, Offset: c.Offset}
		}
	}
	return out, nil
}

// originAllowed applies Config.AllowedOrigins (empty: any) and
// AllowNoOrigin.
func (s *Server) originAllowed(origin []byte) bool {
	if len(s.cfg.AllowedOrigins) == 0 {
		return true
	}
	if origin == nil {
		return s.cfg.AllowNoOrigin
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || equalFoldString(origin, o) || subdomainOf(origin, o) {
			return true
		}
	}
	return false
}

// subdomainOf reports whether origin matches pattern of the form
// scheme://*.domain[:port]: the same scheme and port, and a host that is
// a subdomain of domain (one label or more; not domain itself).
func subdomainOf(origin []byte, pattern string) bool {
	scheme, rest, ok := strings.Cut(pattern, "://*.")
	if !ok {
		return false
	}
	suffix := "." + rest
	o := string(origin)
	if len(o) <= len(scheme)+3+len(suffix) || !strings.EqualFold(o[:len(scheme)+3], scheme+"://") || !strings.EqualFold(o[len(o)-len(suffix):], suffix) {
		return false
	}
	sub := o[len(scheme)+3 : len(o)-len(suffix)]
	if sub[0] == '.' || sub[len(sub)-1] == '.' {
		return false
	}
	for _, c := range []byte(sub) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func equalFoldString(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
