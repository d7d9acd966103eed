package server

import (
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"
	"github.com/loopcast/loopcast/server/internal/command"
	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/frame"
)

// laneKind is the engine lane of a subscription: base (Raw or Framed),
// compressed when the connection negotiated permessage-deflate.
func laneKind(base fanout.Kind, deflate bool) fanout.Kind {
	if deflate {
		return base | fanout.Compressed
	}
	return base
}

// encodeFrame is the engine's Config.Encode: the WebSocket frame of room
// message m for lane k. Raw: the payload alone. Framed (loopcast.v1):
// the "msg" line, then the payload, in one frame of m's type. Compressed
// lanes get the same message compressed (RSV1, RFC 7692) when it has at
// least CompressionMinSize bytes, else as it is. It runs once per
// message, lane and loop, and does not allocate.
func encodeFrame(dst []byte, k fanout.Kind, r *fanout.Room, m fanout.Message) []byte {
	op := ws.OpCode(m.Op)
	if k&fanout.Framed == 0 {
		dst = frame.AppendHeader(dst, true, op, len(m.Payload))
		return append(dst, m.Payload...)
	}
	name := r.Name()
	dst = frame.AppendHeader(dst, true, op, command.MessageHeaderLen(name, m.Offset)+len(m.Payload))
	dst = command.AppendMessageHeader(dst, name, m.Epoch, m.Offset)
	return append(dst, m.Payload...)
}

// encodeFrame is Config.Encode with compression: see the function above.
func (s *Server) encodeFrame(dst []byte, k fanout.Kind, r *fanout.Room, m fanout.Message) []byte {
	if k&fanout.Compressed == 0 || s.zip == nil || len(m.Payload) < s.cfg.CompressionMinSize {
		if k&fanout.Compressed != 0 {
			s.zstats.plain.Add(1)
		}
		return encodeFrame(dst, k, r, m)
	}
	z := zbufs.Get().(*[]byte)
	// The "msg" line goes at the start of z, the compressed bytes after
	// it (a stack array would escape into the compressor).
	*z = (*z)[:0]
	if k&fanout.Framed != 0 {
		*z = command.AppendMessageHeader(*z, r.Name(), m.Epoch, m.Offset)
	}
	n := len(*z)
	*z = s.zip.Append(*z, (*z)[:n], m.Payload)
	head, compressed := (*z)[:n], (*z)[n:]
	dst = frame.AppendCompressedHeader(dst, ws.OpCode(m.Op), len(compressed))
	dst = append(dst, compressed...)
	s.zstats.compressed.Add(1)
	s.zstats.in.Add(int64(len(head) + len(m.Payload)))
	s.zstats.out.Add(int64(len(compressed)))
	if cap(*z) <= maxEchoScratch {
		zbufs.Put(z)
	}
	return dst
}

// zbufs holds the buffers messages are compressed into before their
// frame header (which needs the compressed length) is written.
var zbufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// compressionStats count what encodeFrame did for compressed lanes:
// messages compressed and sent plain (under CompressionMinSize), and the
// bytes before and after compression. One atomic add per message, lane
// and loop.
type compressionStats struct {
	compressed, plain, in, out atomic.Int64
	inflated                   atomic.Int64 // client messages that came compressed
}
