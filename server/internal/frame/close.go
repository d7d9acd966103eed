package frame

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// ParseClose validates a close frame body from a peer: empty, or a 2-byte
// status code that may be sent on the wire followed by a UTF-8 reason
// (§5.5.1). An empty body yields code 1005 (no status received, §7.4.1).
func ParseClose(p []byte) (ws.StatusCode, *CloseError) {
	switch len(p) {
	case 0:
		return ws.StatusNoStatusRcvd, nil
	case 1:
		return 0, ErrCloseLength
	}
	code := ws.StatusCode(binary.BigEndian.Uint16(p))
	if !ValidCloseCode(code) {
		return 0, ErrCloseCode
	}
	var v UTF8
	if !v.Write(p[2:]) || !v.Complete() {
		return 0, ErrCloseReason
	}
	return code, nil
}

// ValidCloseCode reports whether a peer may send code in a close frame:
// the codes RFC 6455 §7.4.1 defines for use on the wire, the IANA
// registered 1012–1014, and the 3000–4999 range for libraries and
// applications. 1004, 1005, 1006 and 1015 are never sent.
func ValidCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// AppendClose appends a complete unmasked close frame with code and
// reason to dst. The reason is cut to fit the 125-byte control payload.
func AppendClose(dst []byte, code ws.StatusCode, reason string) []byte {
	if len(reason) > MaxControlPayload-2 {
		reason = reason[:MaxControlPayload-2]
	}
	if code == 0 || code == ws.StatusNoStatusRcvd {
		return AppendHeader(dst, true, ws.OpClose, 0)
	}
	dst = AppendHeader(dst, true, ws.OpClose, 2+len(reason))
	dst = append(dst, byte(code>>8), byte(code))
	return append(dst, reason...)
}
