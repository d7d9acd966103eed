package reqhead

import "net/netip"

// This file checks the two header values that carry addresses: Host
// (RFC 9110 §7.2) and the entries of X-Forwarded-For. Both work on the
// bytes in place: net/netip parses strings, and converting a Peek slice
// to one would allocate on every request.

// ValidHost reports whether v is a valid Host field value (RFC 9110 §7.2,
// RFC 9112 §3.2): empty (a request whose target has no authority), or
//
//	uri-host [ ":" port ]
//	uri-host    = IP-literal / IPv4address / reg-name   (RFC 3986 §3.2.2)
//	IP-literal  = "[" ( IPv6address / IPvFuture ) "]"
//	reg-name    = *( unreserved / pct-encoded / sub-delims )
//	port        = *DIGIT                                 (RFC 3986 §3.2.3)
//
// An IPv4address is also a reg-name, so dotted digits need no test of
// their own ("999.1.1.1" is a valid, if useless, name). Decisions where
// the grammar leaves room: a port without a host (":80") is refused,
// since RFC 9110 §4.2.1 makes an empty host invalid in an http URI; zone
// identifiers in an IP-literal ("[fe80::1%25en0]", RFC 6874) are refused,
// as RFC 3986 and HTTP have none; the port may be empty ("host:"), as
// the grammar says, and is not checked against 65535. Raw UTF-8 is not a
// reg-name character: internationalized names travel as A-labels
// ("xn--..."). It does not allocate.
func ValidHost(v []byte) bool {
	if len(v) == 0 {
		return true
	}
	var port []byte
	if v[0] == '[' {
		end := indexByte(v, ']')
		if end < 0 || !validIPLiteral(v[1:end]) {
			return false
		}
		port = v[end+1:]
		if len(port) > 0 {
			if port[0] != ':' {
				return false
			}
			port = port[1:]
		}
	} else {
		host := v
		if i := indexByte(v, ':'); i >= 0 {
			host, port = v[:i], v[i+1:]
		}
		if len(host) == 0 || !validRegName(host) {
			return false
		}
	}
	for _, c := range port {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// validIPLiteral checks what is between the brackets of an IP-literal:
// an IPv6address, or IPvFuture = "v" 1*HEXDIG "." 1*( unreserved /
// sub-delims / ":" ).
func validIPLiteral(b []byte) bool {
	if len(b) > 0 && (b[0] == 'v' || b[0] == 'V') {
		i := 1
		for i < len(b) && isHex(b[i]) {
			i++
		}
		if i == 1 || i >= len(b)-1 || b[i] != '.' {
			return false
		}
		for _, c := range b[i+1:] {
			if !hostTable[c] || c == '%' {
				return false
			}
		}
		return true
	}
	_, ok := parseIPv6(b)
	return ok
}

// validRegName checks a reg-name: unreserved, sub-delims and
// pct-encoded octets only.
func validRegName(b []byte) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '%':
			if i+2 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
				return false
			}
			i += 2
		case c == ':' || !hostTable[c]:
			return false
		}
	}
	return true
}

// ParseForwardedAddr parses one entry of an X-Forwarded-For list: an IPv4
// or IPv6 address, optionally with a port as proxies such as Application
// Gateway add it ("203.0.113.7:50123", "[2001:db8::1]:443"). IPv4-mapped
// IPv6 addresses are returned as IPv4. Anything else (a name, "unknown",
// an RFC 7239 obfuscated identifier, a zone, a port over 65535) is not
// an address: ok is false. It does not allocate.
func ParseForwardedAddr(e []byte) (a netip.Addr, ok bool) {
	if len(e) > 0 && e[0] == '[' {
		end := indexByte(e, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		if rest := e[end+1:]; len(rest) > 0 && (rest[0] != ':' || !validPort(rest[1:])) {
			return netip.Addr{}, false
		}
		a, ok = parseIPv6(e[1:end])
		return a.Unmap(), ok && a.Is6()
	}
	colons := 0
	for _, c := range e {
		if c == ':' {
			colons++
		}
	}
	switch colons {
	case 0:
		return parseIPv4(e)
	case 1: // IPv4 with a port
		i := indexByte(e, ':')
		if !validPort(e[i+1:]) {
			return netip.Addr{}, false
		}
		return parseIPv4(e[:i])
	}
	a, ok = parseIPv6(e)
	return a.Unmap(), ok
}

// validPort reports whether b is a port number from 0 to 65535.
func validPort(b []byte) bool {
	if len(b) == 0 || len(b) > 5 {
		return false
	}
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

// parseIPv4 parses dotted-decimal IPv4 as net/netip does: four decimal
// fields of 0 to 255 without leading zeros.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	if !parseIPv4Fields(b, ip[:]) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

func parseIPv4Fields(b []byte, fields []byte) bool {
	pos, val, digits := 0, 0, 0
	for i, c := range b {
		switch {
		case isDigit(c):
			if digits == 1 && val == 0 {
				return false // leading zero: octal to some parsers
			}
			val = val*10 + int(c-'0')
			digits++
			if val > 255 {
				return false
			}
		case c == '.':
			if digits == 0 || i == len(b)-1 || pos == 3 {
				return false
			}
			fields[pos] = byte(val)
			pos, val, digits = pos+1, 0, 0
		default:
			return false
		}
	}
	if pos != 3 || digits == 0 {
		return false
	}
	fields[3] = byte(val)
	return true
}

// parseIPv6 parses an IPv6 address without a zone as net/netip's
// parseIPv6 does (RFC 4291 §2.2: up to eight groups of at most four hex
// digits, one "::", an IPv4 address in place of the last two groups).
func parseIPv6(s []byte) (netip.Addr, bool) {
	var ip [16]byte
	ellipsis := -1 // position of the "::" in ip
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis = 0
		s = s[2:]
		if len(s) == 0 {
			return netip.IPv6Unspecified(), true
		}
	}
	i := 0
	for i < 16 {
		off, acc := 0, 0
		for ; off < len(s) && isHex(s[off]); off++ {
			if off > 3 {
				return netip.Addr{}, false // more than four digits
			}
			acc = acc<<4 | int(unhex(s[off]))
		}
		if off == 0 {
			return netip.Addr{}, false
		}
		if off < len(s) && s[off] == '.' { // the trailing IPv4 address
			if ellipsis < 0 && i != 12 || i+4 > 16 {
				return netip.Addr{}, false
			}
			if !parseIPv4Fields(s, ip[i:i+4]) {
				return netip.Addr{}, false
			}
			s = nil
			i += 4
			break
		}
		ip[i], ip[i+1] = byte(acc>>8), byte(acc)
		i += 2
		s = s[off:]
		if len(s) == 0 {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return netip.Addr{}, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false // a second "::"
			}
			ellipsis = i
			s = s[1:]
			if len(s) == 0 {
				break
			}
		}
	}
	if len(s) != 0 {
		return netip.Addr{}, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		n := 16 - i
		for j := i - 1; j >= ellipsis; j-- {
			ip[j+n] = ip[j]
		}
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false // "::" must stand for at least one group
	}
	return netip.AddrFrom16(ip), true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func isHex(c byte) bool { return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f' }

func unhex(c byte) byte {
	if isDigit(c) {
		return c - '0'
	}
	return (c | 0x20) - 'a' + 10
}

// hostTable marks unreserved and sub-delims characters (RFC 3986 §2.2,
// §2.3), plus '%' and ':' which the callers handle.
var hostTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-._~" + "!$&'()*+,;=" + "%:" {
		t[c] = true
	}
	return t
}()
