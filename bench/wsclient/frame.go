package wsclient

import (
	"encoding/binary"
	"errors"
)

// Opcodes (RFC 6455 §5.2).
const (
	OpContinuation byte = 0x0
	OpText         byte = 0x1
	OpBinary       byte = 0x2
	OpClose        byte = 0x8
	OpPing         byte = 0x9
	OpPong         byte = 0xA
)

// maxHeader is the longest frame header: 2 + 8 (length) + 4 (mask key).
const maxHeader = 14

// Header is a decoded frame header.
type Header struct {
	Fin    bool
	Rsv    byte // RSV1..RSV3 as the low three bits (RSV1 = 4)
	Op     byte
	Masked bool
	Length uint64
	Mask   [4]byte
}

// ErrShort means the buffer holds less than a whole header.
var ErrShort = errors.New("wsclient: short header")

// ErrProtocol is wrapped by errors about frames the server must not send.
var ErrProtocol = errors.New("wsclient: protocol error")

// ParseHeader decodes the header at the start of b and returns it with its
// size in bytes. ErrShort means more bytes are needed.
func ParseHeader(b []byte) (Header, int, error) {
	if len(b) < 2 {
		return Header{}, 0, ErrShort
	}
	h := Header{Fin: b[0]&0x80 != 0, Rsv: b[0] >> 4 & 0x7, Op: b[0] & 0x0f, Masked: b[1]&0x80 != 0}
	n := 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return Header{}, 0, ErrShort
		}
		h.Length = uint64(binary.BigEndian.Uint16(b[2:]))
		n = 4
	case 127:
		if len(b) < 10 {
			return Header{}, 0, ErrShort
		}
		h.Length = binary.BigEndian.Uint64(b[2:])
		n = 10
	default:
		h.Length = uint64(l)
	}
	if h.Masked {
		if len(b) < n+4 {
			return Header{}, 0, ErrShort
		}
		copy(h.Mask[:], b[n:n+4])
		n += 4
	}
	return h, n, nil
}

// PutHeader writes h at the start of b (at least maxHeader bytes) and
// returns its size.
func PutHeader(b []byte, h Header) int {
	b[0] = h.Op & 0x0f
	if h.Fin {
		b[0] |= 0x80
	}
	var m byte
	if h.Masked {
		m = 0x80
	}
	n := 2
	switch {
	case h.Length < 126:
		b[1] = m | byte(h.Length)
	case h.Length <= 0xffff:
		b[1] = m | 126
		binary.BigEndian.PutUint16(b[2:], uint16(h.Length))
		n = 4
	default:
		b[1] = m | 127
		binary.BigEndian.PutUint64(b[2:], h.Length)
		n = 10
	}
	if h.Masked {
		copy(b[n:], h.Mask[:])
		n += 4
	}
	return n
}

// Mask XORs b with key in place, as if b started at offset 0 of the payload
// (RFC 6455 §5.3). It works a word at a time and does not allocate.
func Mask(b []byte, key [4]byte) {
	k4 := binary.LittleEndian.Uint32(key[:])
	k8 := uint64(k4) | uint64(k4)<<32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k8)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[i&3]
	}
}
