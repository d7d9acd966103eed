package server

import (
	"net/netip"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/frame"
)

// connState is where a connection is in its life.
type connState uint8

const (
	stateHTTP    connState = iota // reading request heads
	stateOpen                     // WebSocket session
	stateClosing                  // close frame sent: wait for the peer's, or the grace period
	stateLinger                   // HTTP answer sent before closing: drain input briefly
	stateClosed                   // gnet closed it; ignore everything
	stateHooking                  // an upgrade waiting for the connect hook (hooks.go): input stays buffered
)

// conn is the per-connection state, owned by the connection's loop and
// touched only there. It stays small: an idle WebSocket holds no buffer
// of its own (gnet's buffers are allocated on demand).
type conn struct {
	gc   gnet.Conn
	fd   int // gc.Fd(), for the raw write fast path
	loop *eventLoop

	// The small fields together, so the struct stays in a 240-byte
	// allocation class.
	state connState
	// handed marks that bytes were handed to gnet's outbound buffer
	// since it was last seen empty: until then the buffer is empty for
	// sure (every write goes through Write), and the fan-out's per-member
	// checks need not touch gnet's connection at all.
	handed bool
	echo   bool // /echo session; otherwise a room member
	// v1 marks a loopcast.v1 session: data messages are commands
	// (protocol.go), room messages carry their room, epoch and offset.
	v1 bool
	// deflate marks a session that negotiated permessage-deflate;
	// compressed is set while the message in progress is compressed
	// (RSV1 on its first frame).
	deflate, compressed bool
	// goAway marks a WebSocket that Shutdown closes with 1001 when its
	// wheel deadline comes.
	goAway bool
	// peerClosed marks a closing WebSocket whose peer's close frame came
	// while output was still queued: see closeAfterFlush.
	peerClosed bool
	// reason is why the server is closing the connection; counted once
	// in OnClose. hasReason false there means the peer went away.
	reason    closeReason
	hasReason bool
	// A fragmented message in progress: its opcode (0 when none) and the
	// UTF-8 state of a text message; its fragments are in msg.
	fragOp ws.OpCode
	text   frame.UTF8
	// A data frame whose payload is still arriving (see takePayload):
	// whether it ends its message, and its masking key; payloadLeft and
	// payloadPos below.
	payloadFin  bool
	payloadMask [4]byte
	wslot       int32 // timing wheel slot

	ip netip.Addr // client address counted by admission (WebSockets only)

	// member is the connection's place in the fan-member engine: its rooms, and
	// every byte it sends goes through it (and its slow-consumer rule).
	member fanout.Member

	// The fragments of a message so far (nil until the second fragment:
	// the first stays in gnet's buffer if the whole message arrives in
	// one read).
	msg *bytebufferpool.ByteBuffer

	// Bytes of the arriving frame still to come (0 when none), and the
	// position in its payload.
	payloadLeft int64
	payloadPos  int

	// publishAt is the member's publish token bucket as a theoretical
	// arrival time (GCRA): ns since the server started at which its
	// bucket is full again. See allowPublish.
	publishAt int64
	// subscribeAt is the same for sub and unsub commands (loopcast.v1):
	// see allowSubscribe.
	subscribeAt int64

	// sess is what the connection's token allows and what it watches
	// (nil: no token, nothing watched).
	sess *session

	// Timing, in loop ticks.
	since    int64 // HTTP: when the current request head started
	seen     int64 // WebSocket: last inbound bytes
	nextPing int64
	// closeBy is when to close at the latest: in stateHTTP, once the
	// handshake deadline found the request unread in the socket (see
	// loop.expire; 0 until then); with peerClosed, even if output is
	// still queued.
	closeBy int64

	// Timing wheel links.
	deadline     int64
	wprev, wnext *conn
}

// Queued implements fanout.Conn: the bytes gnet still has queued.
func (cs *conn) Queued() int {
	if !cs.handed {
		return 0
	}
	n := cs.gc.OutboundBuffered()
	if n == 0 {
		cs.handed = false
	}
	return n
}

// Write implements fanout.Conn: p goes straight to the socket when gnet
// has nothing queued (the fast path, no scheduler hand-off), and what the
// socket does not take, or everything behind a queue, through gnet, which
// queues it or closes the connection on an error. p is only read during
// the call. Nothing is written once the connection is closed.
func (cs *conn) Write(p []byte) {
	if cs.state == stateClosed {
		return
	}
	if cs.Queued() == 0 {
		p = p[rawWrite(cs.fd, p):]
	}
	if len(p) > 0 {
		cs.handed = true
		_, _ = cs.gc.Write(p)
	}
}

// Overflow implements fanout.Conn, the outcome of the slow-consumer rule:
// a WebSocket is closed with 1013 (its close frame queued behind the
// backlog, dropped after the close grace if the peer never reads it); an
// HTTP connection, which has no close code, is closed. Counted once, as
// slow_consumer.
func (cs *conn) Overflow() {
	switch cs.state {
	case stateOpen:
		cs.closeWith(closeSlowConsumer)
	case stateHTTP, stateLinger:
		cs.setReason(closeSlowConsumer)
		_ = cs.loop.el.Close(cs.gc)
	}
	// stateClosing: its close frame is queued and the close grace runs;
	// the refused bytes are simply not sent.
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
		if e == errRateLimited {
			r = closeRateLimited
		}
	case statusTryAgainLater:
		r = closeNotPublished
		if e == errAssemblyFull {
			r = closeAssemblyFull
		}
	}
	l := cs.loop
	l.scratch = frame.AppendClose(l.scratch[:0], e.Code, e.Reason)
	cs.startClose(r, l.scratch)
}

// startClose leaves the room (keeping the room frames delivered so far,
// which leave first), queues closeFrame and arms the close grace period.
// A no-op unless the session is open.
func (cs *conn) startClose(r closeReason, closeFrame []byte) {
	if cs.state != stateOpen {
		return
	}
	cs.setReason(r)
	cs.member.Leave()
	cs.dropMessage()
	cs.state = stateClosing
	cs.member.Queue(closeFrame)
	if cs.state == stateClosing {
		l := cs.loop
		l.wheel.add(cs, l.now+l.closeGraceTicks)
	}
}

// allowPublish applies Config.PublishRate and PublishBurst to one
// message published at now (ns since start): the generic cell rate
// algorithm, one int64 per connection, no timer. The bucket holds
// PublishBurst messages and refills at PublishRate.
func (cs *conn) allowPublish(now int64) bool {
	return gcra(&cs.publishAt, now, cs.loop.publishInterval, cs.loop.publishTolerance)
}

// gcra is one step of the generic cell rate algorithm: *tat is the
// bucket's theoretical arrival time (ns), interval the cost of one event
// (0: no limit), tolerance the credit a burst may use. It reports whether
// the event at now is allowed and, if so, charges it.
func gcra(tat *int64, now, interval, tolerance int64) bool {
	if interval == 0 {
		return true
	}
	at := max(*tat, now)
	if at-now > tolerance {
		return false
	}
	*tat = at + interval
	return true
}

// setReason records why the server closes the connection; the first
// reason wins.
func (cs *conn) setReason(r closeReason) {
	if !cs.hasReason {
		cs.reason, cs.hasReason = r, true
	}
}

// dropMessage returns a partial message's buffer to the pool. The rest of
// a frame still arriving is skipped (payloadLeft stays).
func (cs *conn) dropMessage() {
	if cs.msg != nil {
		cs.loop.srv.unassemble(cs.msg)
		cs.msg = nil
	}
	cs.fragOp, cs.compressed = 0, false
	cs.text.Reset()
}

// Close frames the server sends for its own reasons, built once.
// Protocol violations (1002, 1007, 1008, 1009) carry the violation's own
// reason and are built by failWith.
var closeFrames = func() (t [numCloseReasons][]byte) {
	t[closeSlowConsumer] = frame.AppendClose(nil, statusTryAgainLater, "slow consumer: unsent data over max-pending")
	t[closeGoingAway] = frame.AppendClose(nil, ws.StatusGoingAway, "server shutting down")
	t[closeLogSkipped] = frame.AppendClose(nil, statusTryAgainLater, "the cluster log dropped messages this server had not read: resume")
	return t
}()

// Frames with no payload, shared.
var pingFrame = []byte{0x89, 0x00}

// statusExpired is the close code of a session whose connect hook's
// expire_at passed (private use, RFC 6455 §7.4.2).
const statusExpired ws.StatusCode = 4001

// statusTryAgainLater is close code 1013 (IANA registry, RFC 6455 §11.7):
// the server sends it to a slow consumer.
const statusTryAgainLater ws.StatusCode = 1013
