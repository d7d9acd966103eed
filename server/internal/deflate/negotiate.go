// Package deflate is loopcast's permessage-deflate (RFC 7692): the
// negotiation of the extension in the opening handshake (parsing the
// client's offers in place, allocating nothing), and the codec: messages
// compressed once whoever receives them, and inflated within a limit.
//
// Both directions work without context takeover: the server says
// server_no_context_takeover, and client_no_context_takeover in every
// response, which RFC 7692 §7.1.1.2 lets a server do whatever the client
// offered ("A server MAY include the client_no_context_takeover extension
// parameter in an extension negotiation response"; the client then "MUST
// NOT use context takeover"). So no connection keeps a compression window:
// negotiating the extension costs a connection nothing.
package deflate

import "github.com/loopcast/loopcast/server/internal/reqhead"

// Agreement is what the server accepted of a client's permessage-deflate
// offer. The server always compresses without context takeover (each
// message on its own, so one compressed frame serves every member of a
// room); it says so with server_no_context_takeover in every response.
type Agreement struct {
	// ClientNoContextTakeover: the client offered client_no_context_takeover
	// itself. The response forbids client context takeover either way
	// (see the package comment).
	ClientNoContextTakeover bool
}

// Parameters of the extension (RFC 7692 §7.1).
const (
	extensionName           = "permessage-deflate"
	serverNoContextTakeover = "server_no_context_takeover"
	clientNoContextTakeover = "client_no_context_takeover"
	serverMaxWindowBits     = "server_max_window_bits"
	clientMaxWindowBits     = "client_max_window_bits"

	// maxWindowBits is the LZ77 window the server compresses with
	// (2^15 = 32 KiB, DEFLATE's largest). An offer that asks for a
	// smaller server window is declined: honouring it would take another
	// encoding of every message for that member.
	maxWindowBits = 15
	minWindowBits = 8
)

// Negotiate returns the first permessage-deflate offer in the client's
// Sec-WebSocket-Extensions header values (each a comma-separated list; one
// value per header line) that the server can honour, in the client's order
// of preference (RFC 7692 §5). An offer is declined, and the next one
// tried, when RFC 7692 §7 says a server MUST decline it (a parameter not
// defined for an offer, an invalid value, a parameter given twice) or when
// it asks for a server window below 32 KiB. A value that does not parse
// ends the search: what was not accepted by then is declined. ok is false
// when nothing was accepted; the handshake then answers without the
// extension, which is never an error.
func Negotiate(values ...[]byte) (a Agreement, ok bool) {
	for _, v := range values {
		p := parser{b: v}
		for {
			name, more := p.extension()
			if !more {
				break
			}
			a, accept, valid := p.params(reqhead.EqualFold(name, extensionName))
			if !valid {
				return Agreement{}, false // syntax error: decline the rest
			}
			if accept {
				return a, true
			}
		}
	}
	return Agreement{}, false
}

// AppendResponse appends the response header line for an accepted
// agreement, CRLF included: no context takeover on either side.
func AppendResponse(dst []byte, _ Agreement) []byte {
	return append(dst, "Sec-WebSocket-Extensions: "+extensionName+"; "+serverNoContextTakeover+"; "+clientNoContextTakeover+"\r\n"...)
}

// parser walks one header value: extension-list = 1#extension, extension =
// token *( OWS ";" OWS param ), param = token [ OWS "=" OWS ( token /
// quoted-string ) ] (RFC 6455 §9.1, RFC 9110 §5.6).
type parser struct {
	b   []byte
	i   int
	bad bool
}

func (p *parser) ows() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t') {
		p.i++
	}
}

func (p *parser) token() []byte {
	start := p.i
	for p.i < len(p.b) && reqhead.IsTokenChar(p.b[p.i]) {
		p.i++
	}
	return p.b[start:p.i]
}

// extension reads the next extension's name, skipping empty list
// elements; more is false at the end of the value or on a syntax error.
func (p *parser) extension() (name []byte, more bool) {
	for {
		p.ows()
		if p.i < len(p.b) && p.b[p.i] == ',' {
			p.i++
			continue
		}
		break
	}
	if p.i >= len(p.b) || p.bad {
		return nil, false
	}
	name = p.token()
	if len(name) == 0 {
		p.bad = true
		return nil, false
	}
	return name, true
}

// params reads the parameters of the current extension up to the next
// comma (or the end). For permessage-deflate (pmd) it decides whether the
// offer is acceptable; other extensions' parameters are only checked for
// syntax. valid is false on a syntax error.
func (p *parser) params(pmd bool) (a Agreement, accept, valid bool) {
	var seen [4]bool // serverNoCT, clientNoCT, serverBits, clientBits
	acceptable := pmd
	for {
		p.ows()
		if p.i >= len(p.b) || p.b[p.i] == ',' {
			return a, acceptable, true
		}
		if p.b[p.i] != ';' {
			p.bad = true
			return Agreement{}, false, false
		}
		p.i++
		p.ows()
		name := p.token()
		if len(name) == 0 {
			p.bad = true
			return Agreement{}, false, false
		}
		p.ows()
		var value []byte
		hasValue := false
		if p.i < len(p.b) && p.b[p.i] == '=' {
			p.i++
			p.ows()
			v, ok := p.value()
			if !ok {
				p.bad = true
				return Agreement{}, false, false
			}
			value, hasValue = v, true
		}
		if !pmd {
			continue
		}
		k := -1
		switch {
		case reqhead.EqualFold(name, serverNoContextTakeover):
			k = 0
			acceptable = acceptable && !hasValue
		case reqhead.EqualFold(name, clientNoContextTakeover):
			k = 1
			acceptable = acceptable && !hasValue
			a.ClientNoContextTakeover = true
		case reqhead.EqualFold(name, serverMaxWindowBits):
			// A value is required (§7.1.2.1); below 32 KiB the server
			// declines (see maxWindowBits).
			k = 2
			bits, ok := windowBits(value)
			acceptable = acceptable && hasValue && ok && bits == maxWindowBits
		case reqhead.EqualFold(name, clientMaxWindowBits):
			// No value: the client supports the parameter; a value: the
			// client's window, which any inflater handles (§7.1.2.2).
			k = 3
			if hasValue {
				_, ok := windowBits(value)
				acceptable = acceptable && ok
			}
		default:
			acceptable = false // not defined for an offer (§7)
		}
		if k >= 0 {
			if seen[k] {
				acceptable = false // the same parameter twice (§7)
			}
			seen[k] = true
		}
	}
}

// value reads a token or a quoted-string; a quoted value must unescape to
// a token (RFC 6455 §9.1), returned without its quotes (escapes are
// impossible in a token, so a backslash is a syntax error).
func (p *parser) value() ([]byte, bool) {
	if p.i < len(p.b) && p.b[p.i] == '"' {
		p.i++
		start := p.i
		for p.i < len(p.b) && p.b[p.i] != '"' {
			if !reqhead.IsTokenChar(p.b[p.i]) {
				return nil, false
			}
			p.i++
		}
		if p.i >= len(p.b) || p.i == start {
			return nil, false
		}
		v := p.b[start:p.i]
		p.i++
		return v, true
	}
	v := p.token()
	return v, len(v) > 0
}

// windowBits parses a window size: 1*DIGIT without a leading zero, 8 to
// 15 (RFC 7692 §7.1.2.1).
func windowBits(v []byte) (int, bool) {
	if len(v) == 0 || len(v) > 2 || v[0] == '0' {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n >= minWindowBits && n <= maxWindowBits
}
