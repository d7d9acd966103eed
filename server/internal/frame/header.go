package frame

import (
	"encoding/binary"
	"errors"

	"github.com/gobwas/ws"
)

// Limits of the wire format.
const (
	// MaxHeaderLen is the longest frame header: 2 bytes, 8 bytes of
	// extended length and a 4-byte mask (§5.2).
	MaxHeaderLen = 14

	// MaxControlPayload is the largest payload of a control frame
	// (§5.5: "All control frames MUST have a payload length of 125
	// bytes or less"). Larger ones close the connection with 1002.
	MaxControlPayload = 125
)

// ErrIncomplete reports that the input ends inside a frame header; the
// caller waits for more bytes. It is a sentinel: compare with ==.
var ErrIncomplete = errors.New("frame: incomplete header")

// Header is a decoded frame header.
type Header struct {
	Fin    bool
	Rsv    byte // RSV1..RSV3 as the low three bits (RSV1 = 4)
	Op     ws.OpCode
	Masked bool
	Mask   [4]byte
	// Length is the payload length the peer declared. It is not
	// trusted: nothing is allocated on it.
	Length int64
}

// Parse decodes the frame header at the front of b and returns it with
// its size in bytes. It returns ErrIncomplete when b ends inside the
// header, and ErrLength (a *CloseError, code 1002) when a 64-bit length
// has its most significant bit set (§5.2). It does not allocate.
func Parse(b []byte) (h Header, n int, err error) {
	if len(b) < 2 {
		return h, 0, ErrIncomplete
	}
	b0, b1 := b[0], b[1]
	h.Fin = b0&0x80 != 0
	h.Rsv = (b0 >> 4) & 0x7
	h.Op = ws.OpCode(b0 & 0x0f)
	h.Masked = b1&0x80 != 0
	n = 2
	switch l := b1 & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, ErrIncomplete
		}
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, ErrIncomplete
		}
		v := binary.BigEndian.Uint64(b[2:10])
		if v>>63 != 0 {
			return h, 0, ErrLength
		}
		h.Length = int64(v)
		n = 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		if len(b) < n+4 {
			return h, 0, ErrIncomplete
		}
		copy(h.Mask[:], b[n:n+4])
		n += 4
	}
	return h, n, nil
}

// CheckClient applies the rules of RFC 6455 a server enforces on a frame
// header from a client, given whether a fragmented data message is in
// progress and whether the connection negotiated permessage-deflate
// (RSV1 then marks the first frame of a compressed message, RFC 7692 §6,
// and is a protocol error on a control or continuation frame, §6.1). It
// returns nil or one of the package's *CloseError values (all code
// 1002), never an allocated error.
func CheckClient(h Header, inFragmented, deflate bool) *CloseError {
	rsv := h.Rsv
	if deflate && rsv == RSV1 && !h.Op.IsControl() && h.Op != ws.OpContinuation && !h.Op.IsReserved() {
		rsv = 0
	}
	switch {
	case rsv != 0:
		// §5.2: "MUST be 0 unless an extension is negotiated that
		// defines meanings for non-zero values". We negotiate none.
		return ErrReservedBits
	case h.Op.IsReserved():
		// §5.2: "If an unknown opcode is received, the receiving
		// endpoint MUST _Fail the WebSocket Connection_."
		return ErrReservedOpcode
	case !h.Masked:
		// §5.1: "The server MUST close the connection upon receiving a
		// frame that is not masked."
		return ErrUnmasked
	}
	if h.Op.IsControl() {
		if h.Length > MaxControlPayload {
			return ErrControlTooLong // §5.5
		}
		if !h.Fin {
			return ErrControlFragmented // §5.5: "MUST NOT be fragmented"
		}
		return nil
	}
	if h.Op == ws.OpContinuation && !inFragmented {
		return ErrContinuation // §5.4: continuation needs a started message
	}
	if h.Op != ws.OpContinuation && inFragmented {
		return ErrInterleaved // §5.4: fragments of one message are not interleaved
	}
	return nil
}

// AppendHeader appends an unmasked (server to client) frame header for a
// payload of length bytes to dst and returns the extended slice.
func AppendHeader(dst []byte, fin bool, op ws.OpCode, length int) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	switch {
	case length <= 125:
		return append(dst, b0, byte(length))
	case length <= 0xffff:
		return append(dst, b0, 126, byte(length>>8), byte(length))
	default:
		return append(dst, b0, 127,
			byte(uint64(length)>>56), byte(uint64(length)>>48), byte(uint64(length)>>40), byte(uint64(length)>>32),
			byte(length>>24), byte(length>>16), byte(length>>8), byte(length))
	}
}

// RSV1 is Header.Rsv with RSV1 set: permessage-deflate's "compressed".
const RSV1 = 4

// AppendCompressedHeader appends the header of a whole compressed data
// frame (RSV1 set, RFC 7692 §6) of length bytes.
func AppendCompressedHeader(dst []byte, op ws.OpCode, length int) []byte {
	i := len(dst)
	dst = AppendHeader(dst, true, op, length)
	dst[i] |= 0x40
	return dst
}

// Unmask XORs payload in place with mask; offset is the payload's position
// within the frame when unmasking in pieces.
func Unmask(payload []byte, mask [4]byte, offset int) {
	ws.Cipher(payload, mask, offset)
}
