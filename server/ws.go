package server

import (
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/loopcast/loopcast/server/internal/deflate"
	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/frame"
)

// errTooBig closes a message over Config.MaxMessage (RFC 6455 §7.4.1).
var errTooBig = &frame.CloseError{Code: ws.StatusMessageTooBig, Reason: "message over max-message"}

// errNoPublish closes a raw member that sends a data frame when
// ClientPublish is off, as soon as the frame starts.
var errNoPublish = errPubOff.close

// serveFrames handles every frame buffered on a WebSocket, in place: Peek
// the header, unmask the payload in the buffer when the whole frame is
// there, act, Discard. A data frame that is not whole yet is taken out of
// gnet's buffer as its bytes arrive (takePayload), so text is checked for
// UTF-8 at the first invalid byte, not when the frame ends. Nothing is
// allocated on the declared length: a frame over MaxMessage is refused
// from its header. In stateClosing only the peer's close frame matters.
func (cs *conn) serveFrames() gnet.Action {
	c, l := cs.gc, cs.loop
	maxMsg := cs.maxMessage()
	for {
		avail := c.InboundBuffered()
		if avail == 0 {
			return gnet.None
		}
		if cs.peerClosed {
			_, _ = c.Discard(-1) // nothing after the peer's close matters
			return gnet.None
		}
		if cs.state == stateOpen {
			cs.seen = l.now
		}
		if cs.payloadLeft > 0 {
			if a := cs.takePayload(avail); a != gnet.None || cs.state == stateClosed {
				return a
			}
			continue
		}
		hb, _ := c.Peek(min(avail, frame.MaxHeaderLen))
		h, n, err := frame.Parse(hb)
		if err == frame.ErrIncomplete {
			return gnet.None
		}
		if err != nil {
			return cs.protocolError(err.(*frame.CloseError))
		}
		if ce := frame.CheckClient(h, cs.fragOp != 0, cs.deflate); ce != nil {
			return cs.protocolError(ce)
		}
		if !h.Op.IsControl() && h.Length > maxMsg-int64(cs.msgLen()) {
			return cs.protocolError(errTooBig)
		}
		total := n + int(h.Length)
		if avail < total {
			if h.Op.IsControl() || cs.state != stateOpen {
				return gnet.None // wait for the rest: at most 139 bytes, or a frame to skip
			}
			if a := cs.startPayload(h, n); a != gnet.None || cs.state != stateOpen {
				return a
			}
			continue
		}
		fb, _ := c.Peek(total)
		payload := fb[n:total]
		frame.Unmask(payload, h.Mask, 0)

		if cs.state == stateClosing {
			if h.Op == ws.OpClose {
				return cs.closeAfterFlush() // the peer answered our close: done
			}
			_, _ = c.Discard(total)
			continue
		}
		if a := cs.handleFrame(h, payload); a != gnet.None || cs.state == stateClosed {
			return a
		}
		_, _ = c.Discard(total)
	}
}

// closeAfterFlush closes the connection once the peer's close frame came
// (§7.1.1: the server closes TCP first). Corked frames (our own close
// frame among them) are written first. gnet drops the output the socket
// does not take at close, so while frames are still queued the
// connection stays in stateClosing, ignoring input, until the loop's
// tick finds them written or closeGrace passed.
func (cs *conn) closeAfterFlush() gnet.Action {
	cs.member.Flush()
	if cs.state == stateClosed {
		return gnet.None // the write failed and closed it
	}
	if cs.gc.OutboundBuffered() == 0 {
		return gnet.Close
	}
	l := cs.loop
	if cs.state == stateOpen {
		cs.member.Leave()
		cs.dropMessage()
		cs.state = stateClosing
	}
	cs.peerClosed = true
	cs.closeBy = l.now + l.closeGraceTicks
	_, _ = cs.gc.Discard(-1)
	l.wheel.add(cs, l.now+1)
	return gnet.None
}

// protocolError fails the connection (RFC 6455 §7.1.7) with e's close
// code: the close frame is sent and TCP closed as soon as it is written,
// without waiting for the peer's close frame or reading anything more
// from the peer. It just drops a connection already closing.
func (cs *conn) protocolError(e *frame.CloseError) gnet.Action {
	if cs.state != stateOpen {
		return gnet.Close
	}
	cs.failWith(e)
	return cs.closeAfterFlush()
}

// startPayload begins a data frame whose payload is not all buffered: the
// header is consumed and the payload is taken as it arrives into the
// message buffer (see takePayload). The frame checks that come before the
// payload (publishing allowed) come first, as for a whole frame.
func (cs *conn) startPayload(h frame.Header, n int) gnet.Action {
	if !cs.loop.srv.cfg.ClientPublish && !cs.echo && !cs.v1 {
		return cs.protocolError(errNoPublish)
	}
	if cs.fragOp == 0 {
		cs.fragOp = h.Op // a message is in progress, even a single frame's
		cs.compressed = h.Rsv == frame.RSV1
		cs.msg = bytebufferpool.Get()
	}
	cs.payloadLeft, cs.payloadPos, cs.payloadFin, cs.payloadMask = h.Length, 0, h.Fin, h.Mask
	_, _ = cs.gc.Discard(n)
	return gnet.None
}

// takePayload moves the buffered bytes of the frame in progress (at most
// what it has left) into the message buffer, unmasks them there and
// checks text as UTF-8, so the connection fails at the first invalid
// byte even if the rest of the frame never comes (RFC 6455 §8.1). Each
// byte is copied once: gnet's buffer holds only the bytes of this read.
// When the frame is complete it ends the message if the frame was its
// last. A connection that started closing meanwhile skips the rest.
func (cs *conn) takePayload(avail int) gnet.Action {
	c := cs.gc
	k := int(min(int64(avail), cs.payloadLeft))
	cs.payloadLeft -= int64(k)
	if cs.state != stateOpen || cs.msg == nil {
		_, _ = c.Discard(k)
		return gnet.None
	}
	if !cs.assemble(k) {
		return cs.protocolError(errAssemblyFull)
	}
	b, _ := c.Peek(k)
	start := len(cs.msg.B)
	cs.msg.B = append(cs.msg.B, b...)
	_, _ = c.Discard(k)
	p := cs.msg.B[start:]
	frame.Unmask(p, cs.payloadMask, cs.payloadPos)
	cs.payloadPos += k
	text := cs.fragOp == ws.OpText && !cs.compressed // compressed text is checked once inflated
	if text && !cs.text.Write(p) {
		return cs.protocolError(frame.ErrInvalidUTF8)
	}
	if cs.payloadLeft > 0 || !cs.payloadFin {
		return gnet.None
	}
	if text && !cs.text.Complete() {
		return cs.protocolError(frame.ErrInvalidUTF8)
	}
	msg, op := cs.msg, cs.fragOp
	cs.msg, cs.fragOp = nil, 0
	cs.text.Reset()
	a := cs.complete(op, msg.B)
	cs.loop.srv.unassemble(msg)
	return a
}

func (cs *conn) msgLen() int {
	if cs.msg != nil {
		return len(cs.msg.B)
	}
	return 0
}

// handleFrame acts on one complete, unmasked frame. payload aliases
// gnet's buffer and is valid only until the caller's Discard.
func (cs *conn) handleFrame(h frame.Header, payload []byte) gnet.Action {
	l := cs.loop
	switch h.Op {
	case ws.OpPing:
		// §5.5.3: a Pong with the same Application data.
		l.scratch = frame.AppendHeader(l.scratch[:0], true, ws.OpPong, len(payload))
		l.scratch = append(l.scratch, payload...)
		cs.member.Send(l.scratch) // or closed as a slow consumer
		return gnet.None
	case ws.OpPong:
		return gnet.None // seen is already updated
	case ws.OpClose:
		code, ce := frame.ParseClose(payload)
		if ce != nil {
			return cs.protocolError(ce)
		}
		// §5.5.1: echo the status code, then the server closes TCP.
		cs.setReason(closePeer)
		l.scratch = frame.AppendClose(l.scratch[:0], code, "")
		cs.member.Queue(l.scratch)
		return cs.closeAfterFlush()
	}

	// Data: text, binary or continuation.
	if !l.srv.cfg.ClientPublish && !cs.echo && !cs.v1 {
		return cs.protocolError(errNoPublish)
	}
	op := h.Op
	if op == ws.OpContinuation {
		op = cs.fragOp
	} else {
		cs.compressed = h.Rsv == frame.RSV1
	}
	if op == ws.OpText && !cs.compressed { // compressed text is checked once inflated
		if !cs.text.Write(payload) || (h.Fin && !cs.text.Complete()) {
			return cs.protocolError(frame.ErrInvalidUTF8)
		}
	}
	switch {
	case h.Fin && cs.fragOp == 0:
		// A whole message in one frame: straight from gnet's buffer.
		cs.text.Reset()
		return cs.complete(op, payload)
	case !h.Fin && cs.fragOp == 0:
		if !cs.assemble(len(payload)) {
			return cs.protocolError(errAssemblyFull)
		}
		cs.fragOp = op
		cs.msg = bytebufferpool.Get()
		cs.msg.B = append(cs.msg.B, payload...)
	default:
		if !cs.assemble(len(payload)) {
			return cs.protocolError(errAssemblyFull)
		}
		cs.msg.B = append(cs.msg.B, payload...)
		if h.Fin {
			msg := cs.msg
			cs.msg = nil
			cs.fragOp = 0
			cs.text.Reset()
			a := cs.complete(op, msg.B)
			l.srv.unassemble(msg)
			return a
		}
	}
	return gnet.None
}

// errAssemblyFull closes a connection whose message in progress would
// pass the bytes all messages in progress may hold together
// (maxAssembling): 1013, try again later.
var errAssemblyFull = &frame.CloseError{Code: statusTryAgainLater, Reason: "server busy: too many large messages in progress"}

// assemble charges n more bytes of the connection's message in
// progress (fragments, or a frame still arriving) to the server-wide
// budget for messages being assembled, and reports false past it: many
// connections each sending most of a max-size message must not hold
// unbounded memory between them. Not charged: whole messages in one read
// (they never leave gnet's buffer).
func (cs *conn) assemble(n int) bool {
	s := cs.loop.srv
	if s.assembling.Add(int64(n)) > s.maxAssembling.Load() {
		s.assembling.Add(-int64(n))
		s.assemblyRefused.Add(1)
		return false
	}
	return true
}

// unassemble returns a message buffer to the pool and its bytes to the
// budget (assemble charged every byte it holds).
func (s *Server) unassemble(msg *bytebufferpool.ByteBuffer) {
	s.assembling.Add(-int64(len(msg.B)))
	bytebufferpool.Put(msg)
}

// errBadDeflate fails a connection whose compressed message is not valid
// DEFLATE data (RFC 7692 §8.2.3.3 has no code of its own; 1007, data
// inconsistent with the message type, is what other servers send).
var errBadDeflate = &frame.CloseError{Code: ws.StatusInvalidFramePayloadData, Reason: "invalid permessage-deflate data"}

// complete handles a complete data message, inflated first when it came
// compressed: within MaxMessage (1009 as soon as it would pass it, so a
// small bomb never takes more), invalid data 1007, text then checked as
// UTF-8 (1007). payload is only valid during the call.
func (cs *conn) complete(op ws.OpCode, payload []byte) gnet.Action {
	if !cs.compressed {
		return cs.message(op, payload)
	}
	cs.compressed = false
	b := bytebufferpool.Get()
	out, err := deflate.Inflate(b.B[:0], payload, int(cs.maxMessage()))
	b.B = out
	defer bytebufferpool.Put(b)
	switch err {
	case nil:
	case deflate.ErrTooLarge:
		return cs.protocolError(errTooBig)
	default:
		return cs.protocolError(errBadDeflate)
	}
	if op == ws.OpText {
		var v frame.UTF8
		if !v.Write(out) || !v.Complete() {
			return cs.protocolError(frame.ErrInvalidUTF8)
		}
	}
	cs.loop.srv.zstats.inflated.Add(1)
	return cs.message(op, out)
}

// message handles a complete data message: echo it, run it as a
// loopcast.v1 command, or publish it to the member's room.
func (cs *conn) message(op ws.OpCode, payload []byte) gnet.Action {
	l := cs.loop
	l.stats.msgsIn.Add(1)
	l.stats.bytesIn.Add(int64(len(payload)))
	if cs.v1 {
		return cs.command(op, payload)
	}
	if cs.echo {
		l.out = frame.AppendHeader(l.out[:0], true, op, len(payload))
		l.out = append(l.out, payload...)
		cs.member.SendData(l.out) // or closed as a slow consumer
		if cap(l.out) > maxEchoScratch {
			l.out = nil // do not pin a large echo buffer per loop
		}
		return gnet.None
	}
	if r := cs.member.Room(); r != nil {
		return cs.publishRaw(r, op, payload)
	}
	return gnet.None
}

// publishRaw is the raw-mode door onto the one publishing path
// (publish.go): a member's message to its room. Raw mode has no replies:
// a refusal closes the connection with its code (1008 policy, 1013 when
// the cluster log did not take the message), and a later failure of the
// log is counted (the log's errors).
func (cs *conn) publishRaw(r *fanout.Room, op ws.OpCode, payload []byte) gnet.Action {
	l := cs.loop
	name := readOnlyBytes(r.Name())
	if perr := l.srv.mayPublish(publisher{member: cs, checked: true}, name, MessageType(op), payload, nil); perr != nil {
		return cs.protocolError(perr.close)
	}
	if l.srv.hooks.publish != nil {
		return cs.publishViaHook(hookedPublish{op: op, room: r.Name(), body: payload, raw: true})
	}
	if perr := l.srv.route(l, name, r, fanout.Publication{Op: byte(op), Payload: payload}, fanout.Ack{}); perr != nil {
		return cs.protocolError(perr.close)
	}
	return gnet.None
}

// readOnlyBytes views s's bytes without copying them, for functions
// that take a name as []byte and only read it (a room's name per raw
// message, without an allocation). Never write to the result.
func readOnlyBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
