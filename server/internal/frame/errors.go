package frame

import "github.com/gobwas/ws"

// CloseError is a protocol violation with the close code and reason the
// server sends before closing (§7.4.1). The package's values are shared
// and must not be modified.
type CloseError struct {
	Code   ws.StatusCode
	Reason string
}

func (e *CloseError) Error() string { return e.Reason }

// Protocol errors, each with the close code RFC 6455 asks for.
var (
	ErrLength            = &CloseError{ws.StatusProtocolError, "64-bit payload length has its most significant bit set"}
	ErrReservedBits      = &CloseError{ws.StatusProtocolError, "reserved bits set without a negotiated extension"}
	ErrReservedOpcode    = &CloseError{ws.StatusProtocolError, "reserved opcode"}
	ErrUnmasked          = &CloseError{ws.StatusProtocolError, "client frames must be masked"}
	ErrControlTooLong    = &CloseError{ws.StatusProtocolError, "control frame payload over 125 bytes"}
	ErrControlFragmented = &CloseError{ws.StatusProtocolError, "fragmented control frame"}
	ErrContinuation      = &CloseError{ws.StatusProtocolError, "continuation frame without a started message"}
	ErrInterleaved       = &CloseError{ws.StatusProtocolError, "new data frame inside a fragmented message"}
	ErrCloseLength       = &CloseError{ws.StatusProtocolError, "close frame body of one byte"}
	ErrCloseCode         = &CloseError{ws.StatusProtocolError, "invalid close code"}
	ErrCloseReason       = &CloseError{ws.StatusInvalidFramePayloadData, "close reason is not valid UTF-8"}
	ErrInvalidUTF8       = &CloseError{ws.StatusInvalidFramePayloadData, "text message is not valid UTF-8"}
)
