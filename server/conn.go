package server

import (
	"net/netip"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/loopcast/loopcast/server/frame"
)

// connState is where a connection is in its life.
type connState uint8

const (
	stateHTTP    connState = iota // reading request heads
	stateOpen                     // WebSocket session
	stateClosing                  // close frame sent: wait for the peer's, or the grace period
	stateLinger                   // HTTP answer sent before closing: drain input briefly
	stateClosed                   // gnet closed it; ignore everything
)

// conn is the per-connection state, owned by the connection's loop and
// touched only there. It stays small: an idle WebSocket holds no buffer
// of its own (gnet's buffers are allocated on demand).
type conn struct {
	gc    gnet.Conn
	fd    int // gc.Fd(), for the raw write fast path
	loop  *loop
	state connState
	echo  bool // /echo session; otherwise a room member
	// goAway marks a WebSocket that Shutdown closes with 1001 when its
	// wheel deadline comes.
	goAway bool
	// peerClosed marks a closing WebSocket whose peer's close frame came
	// while output was still queued: see closeAfterFlush.
	peerClosed bool
	// graced marks an HTTP connection whose handshake deadline found
	// unread bytes in its socket once: see loop.expire.
	graced bool

	ip       netip.Addr // client address counted by admission (WebSockets only)
	room     *room
	roomSlot int32 // index in room.shards[loop.idx].members
	// batchFrom is where this member's unwritten part of its shard's
	// batch starts (bytes; 0 at the start of a turn), batchFromN the
	// number of frames before it. See shard.batch.
	batchFrom, batchFromN int32

	// A fragmented message in progress: its opcode (0 when none), the
	// fragments so far (nil until the second fragment: the first stays
	// in gnet's buffer if the whole message arrives in one read) and
	// the UTF-8 state of a text message.
	fragOp ws.OpCode
	msg    *bytebufferpool.ByteBuffer
	text   frame.UTF8

	// cork holds frames for this loop turn (nil when none); see
	// loop.flush. Returned to the pool when written.
	cork *bytebufferpool.ByteBuffer

	// reason is why the server is closing the connection; counted once
	// in OnClose. hasReason false there means the peer went away.
	reason    closeReason
	hasReason bool

	// Timing, in loop ticks.
	since    int64 // HTTP: when the current request head started
	seen     int64 // WebSocket: last inbound bytes
	nextPing int64
	closeBy  int64 // peerClosed: close even if output is still queued

	// Timing wheel links.
	deadline     int64
	wslot        int32
	wprev, wnext *conn
}

// pendingOK reports whether a frame of n bytes may be queued: a
// connection whose unsent bytes would pass MaxPending is a slow
// consumer. A frame is always accepted when nothing is queued, so a
// message larger than MaxPending still reaches a reading peer.
//
// Corked bytes do not count: they leave at the end of this loop turn (or
// at corkLimit), so a burst within one turn is not mistaken for a slow
// reader. What counts is what the socket did not take.
func (cs *conn) pendingOK(n int) bool {
	out := cs.gc.OutboundBuffered()
	return out == 0 || out+n <= cs.loop.srv.cfg.MaxPending
}

// write sends b after any corked frames and after the room frames
// delivered to the member this turn: appended to the cork when there is
// one, written at once otherwise. An error closes the connection.
func (cs *conn) write(b []byte) {
	cs.takeBatch()
	if cs.cork != nil {
		cs.cork.B = append(cs.cork.B, b...)
		return
	}
	_, _ = cs.gc.Write(b)
}

// uncork writes the corked frames now.
func (cs *conn) uncork() {
	b := cs.cork
	if b == nil {
		return
	}
	cs.cork = nil // before writing: a failed write closes cs and runs OnClose
	if cs.state == stateOpen || cs.state == stateClosing {
		cs.writeOut(b.B, cs.gc.OutboundBuffered())
	}
	cs.loop.putCork(b)
}

// writeOut writes p now, given the bytes gnet still has queued for the
// connection: straight to the socket when none (the fast path, no
// scheduler hand-off), and what the socket does not take, or everything
// behind a queue, through gnet, which queues it or closes the connection
// on an error. p is only read during the call.
func (cs *conn) writeOut(p []byte, queued int) {
	if queued == 0 {
		p = p[rawWrite(cs.fd, p):]
	}
	if len(p) > 0 {
		_, _ = cs.gc.Write(p)
	}
}

// takeBatch moves the member's unwritten part of its room shard's batch
// into its cork, so that what it writes next (a pong, a close frame)
// follows the room frames delivered before it. A no-op unless the
// member has such a part.
func (cs *conn) takeBatch() {
	if cs.room == nil {
		return
	}
	sh := &cs.room.shards[cs.loop.idx]
	if sh.batch == nil || int(cs.batchFrom) >= len(sh.batch.B) {
		return
	}
	part := sh.batch.B[cs.batchFrom:]
	l := cs.loop
	l.stats.deliveries.Add(int64(sh.frames - cs.batchFromN))
	l.stats.bytesOut.Add(int64(len(part)))
	cs.batchFrom, cs.batchFromN = int32(len(sh.batch.B)), sh.frames
	if cs.cork == nil {
		cs.cork = l.getCork()
		l.dirty = append(l.dirty, cs)
	}
	cs.cork.B = append(cs.cork.B, part...)
}

// writeShared writes p, the member's part of its shard's batch, after
// anything the member has corked: straight to the socket when gnet has
// nothing queued for it, into gnet's outbound buffer otherwise. A member
// whose unsent bytes would pass MaxPending is closed with 1013 instead
// (what the socket did not take counts, not the batch of this turn, so
// a burst is not mistaken for a slow reader). It reports whether p was
// written or queued. p is only read during the call.
func (cs *conn) writeShared(p []byte) bool {
	if cs.cork != nil {
		cs.uncork()
	}
	if cs.state != stateOpen {
		return false
	}
	out := cs.gc.OutboundBuffered()
	if out > 0 && out+len(p) > cs.loop.srv.cfg.MaxPending {
		cs.closeWith(closeSlowConsumer)
		return false
	}
	cs.writeOut(p, out)
	return true
}

// send corks a complete data frame for an echo session; the loop writes
// it at the end of its turn (or sooner past corkLimit). A slow consumer
// is closed with 1013 instead. It reports whether the frame was queued;
// the caller counts deliveries.
func (cs *conn) send(b []byte) bool {
	if cs.state != stateOpen {
		return false
	}
	if !cs.pendingOK(len(b)) {
		cs.closeWith(closeSlowConsumer)
		return false
	}
	if cs.cork == nil {
		cs.cork = cs.loop.getCork()
		cs.loop.dirty = append(cs.loop.dirty, cs)
	}
	cs.cork.B = append(cs.cork.B, b...)
	if len(cs.cork.B) >= corkLimit {
		cs.uncork() // stays in dirty; flush skips it
	}
	return true
}

// closeWith starts the closing handshake from the server's side: it
// sends the reason's close frame and waits up to closeGrace for the
// peer's close frame before dropping the TCP connection.
func (cs *conn) closeWith(r closeReason) {
	cs.startClose(r, closeFrames[r])
}

// failWith closes after a protocol violation: the close frame carries the
// violation's code and reason.
func (cs *conn) failWith(e *frame.CloseError) {
	r := closeProtocol
	switch e.Code {
	case ws.StatusInvalidFramePayloadData:
		r = closeInvalidUTF8
	case ws.StatusMessageTooBig:
		r = closeTooBig
	case ws.StatusPolicyViolation:
		r = closePolicy
	}
	l := cs.loop
	l.scratch = frame.AppendClose(l.scratch[:0], e.Code, e.Reason)
	cs.startClose(r, l.scratch)
}

// startClose leaves the room, queues closeFrame behind anything already
// queued and arms the close grace period. A no-op unless the session is
// open.
func (cs *conn) startClose(r closeReason, closeFrame []byte) {
	if cs.state != stateOpen {
		return
	}
	cs.setReason(r)
	cs.leaveRoom()
	cs.dropMessage()
	cs.state = stateClosing
	cs.write(closeFrame)
	if cs.state == stateClosing {
		l := cs.loop
		l.wheel.add(cs, l.now+l.closeGraceTicks)
	}
}

// setReason records why the server closes the connection; the first
// reason wins.
func (cs *conn) setReason(r closeReason) {
	if !cs.hasReason {
		cs.reason, cs.hasReason = r, true
	}
}

// dropMessage returns a partial message's buffer to the pool.
func (cs *conn) dropMessage() {
	if cs.msg != nil {
		bytebufferpool.Put(cs.msg)
		cs.msg = nil
	}
	cs.fragOp = 0
	cs.text.Reset()
}

// leaveRoom removes a member from its room, keeping the room frames
// delivered to it so far this turn (they leave before its close frame);
// a no-op for others.
func (cs *conn) leaveRoom() {
	if cs.room != nil {
		cs.takeBatch()
		cs.loop.srv.rooms.leave(cs)
	}
}

// Close frames the server sends, built once.
var closeFrames = func() (t [numCloseReasons][]byte) {
	t[closeSlowConsumer] = frame.AppendClose(nil, statusTryAgainLater, "slow consumer: unsent data over max-pending")
	t[closeGoingAway] = frame.AppendClose(nil, ws.StatusGoingAway, "server shutting down")
	t[closePolicy] = frame.AppendClose(nil, ws.StatusPolicyViolation, "clients may not publish")
	t[closeTooBig] = frame.AppendClose(nil, ws.StatusMessageTooBig, "message over max-message")
	return t
}()

// Frames with no payload, shared.
var pingFrame = []byte{0x89, 0x00}

// statusTryAgainLater is close code 1013 (IANA registry, RFC 6455 §11.7):
// the server sends it to a slow consumer.
const statusTryAgainLater ws.StatusCode = 1013
