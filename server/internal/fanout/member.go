package fanout

import "github.com/valyala/bytebufferpool"

// Conn is the connection under a Member, as the engine uses it. Its
// methods are called on the member's loop only.
type Conn interface {
	// Queued is the number of bytes written earlier that the socket has
	// not taken yet (queued by the transport).
	Queued() int

	// Write writes p now; whatever the socket does not take is queued
	// by the transport. p is only read during the call. A write that
	// fails may close the connection, which then calls Member.Release.
	Write(p []byte)

	// Overflow closes the connection as a slow consumer: unsent bytes
	// would pass Config.MaxPending. A WebSocket sends its 1013 close frame
	// (through Member.Queue) and starts its closing handshake; a
	// connection without a close code is closed. The engine calls it once
	// per refused write and queues nothing of that write.
	Overflow()

	// Subscribed answers Member.Subscribe for a Framed subscription, once
	// the room's owner placed it in the room's order: res.Err is set when
	// it was refused (s is then gone). Otherwise the connection queues
	// its acknowledgement now (Member.Send); the engine then queues the
	// replay (res.Replayed messages) and adds s to the room, so live
	// messages follow.
	Subscribed(s *Sub, res JoinResult)

	// Published answers a publication of this connection's (Ack.ID is
	// id): where it was placed in its room's order, or why not (see
	// Answer). Called on the member's loop, once per publication with an
	// Ack, from Loop.Publish's owner or Engine.Answer.
	Published(id uint32, a Answer)
}

// Member is a connection's place in the engine: its subscriptions, its
// part of each one's batch and its cork. A connection holds one by value
// and calls Init before any other method. A Member is owned by its loop:
// every method must be called there.
type Member struct {
	conn Conn
	loop *Loop

	// subs are the member's subscriptions, in the order they were made.
	// Raw-mode connections have at most one.
	subs []*Sub

	// cork holds frames for this poll cycle (nil when none; the member
	// is then listed in Loop.dirty). Returned to the free list when
	// written.
	cork *bytebufferpool.ByteBuffer
}

// released reports whether Release ran (conn is then nil): tasks still
// on their way to the member (acknowledgements) are dropped.
func (m *Member) released() bool { return m.conn == nil }

// Init attaches m to its connection and loop.
func (m *Member) Init(l *Loop, c Conn) { m.loop, m.conn = l, c }

// Loop is the loop that owns m.
func (m *Member) Loop() *Loop { return m.loop }

// Room is the room of m's first subscription (raw mode has one), or nil.
func (m *Member) Room() *Room {
	if len(m.subs) == 0 {
		return nil
	}
	return m.subs[0].room
}

// Subs are m's subscriptions, pending ones included. The slice is m's:
// read it, do not keep it.
func (m *Member) Subs() []*Sub { return m.subs }

// Sub is m's subscription to the room named name, or nil.
func (m *Member) Sub(name []byte) *Sub {
	for _, s := range m.subs {
		if s.room.name == string(name) {
			return s
		}
	}
	return nil
}

// Join subscribes m to the room named name in a Raw lane (Raw, or
// Raw|Compressed; the name is copied when it creates the room) and
// reports true, or false when the room does not exist and Config.MaxRooms
// rooms do.
func (m *Member) Join(name []byte, k Kind) bool {
	_, err := m.Subscribe(name, k&^Framed, nil, 0)
	return err == nil
}

// Leave ends all of m's subscriptions. The room frames delivered to m so
// far in this cycle are kept: they leave before whatever m sends next
// (its close frame).
func (m *Member) Leave() {
	m.takeParts()
	for len(m.subs) > 0 {
		m.subs[len(m.subs)-1].end()
	}
}

// Release forgets m when its connection is gone: its subscriptions end
// and its unwritten bytes are dropped.
func (m *Member) Release() {
	for len(m.subs) > 0 {
		m.subs[len(m.subs)-1].end()
	}
	if m.cork != nil {
		m.loop.putBuf(m.cork)
		m.cork = nil
	}
	m.conn = nil
}

// Admit is the slow-consumer rule, the one place Config.MaxPending is
// applied, for every kind of outbound bytes but the close frame: n more
// bytes may be queued when the connection has nothing unsent (so a
// message larger than MaxPending still reaches a reading peer), or when
// its unsent bytes plus n stay within MaxPending. Otherwise the
// connection is closed as a slow consumer (Conn.Overflow) and Admit
// reports false. Send and SendData apply it; call it alone to admit bytes
// before a change of state, then Queue them. Corked bytes do not count:
// they leave at the end of this cycle, so a burst within one cycle is
// not mistaken for a slow reader; what counts is what the socket did not
// take.
func (m *Member) Admit(n int) bool {
	q := m.conn.Queued()
	if q == 0 || q+n <= m.loop.engine.cfg.MaxPending {
		return true
	}
	m.conn.Overflow()
	return false
}

// Send queues p, one of the connection's own frames or answers (a pong,
// a ping, an HTTP response, a protocol reply), after everything queued
// for m before it: appended to its cork when it has one, written now
// otherwise. It reports false when the slow-consumer rule closed the
// connection instead.
func (m *Member) Send(p []byte) bool {
	if !m.Admit(len(p)) {
		return false
	}
	m.Queue(p)
	return true
}

// SendData corks p, a data frame for m alone (an echo, a replayed
// message), for the end of the cycle (or writes the cork at once past
// Config.CorkLimit), and counts it as a delivery. It reports false when
// the slow-consumer rule closed the connection instead.
func (m *Member) SendData(p []byte) bool {
	if !m.Admit(len(p)) {
		return false
	}
	m.takeParts()
	m.corkAppend(p)
	m.loop.deliveries.Add(1)
	m.loop.bytesOut.Add(int64(len(p)))
	if len(m.cork.B) >= m.loop.engine.cfg.CorkLimit {
		m.Flush() // stays listed in dirty; the flush skips it
	}
	return true
}

// Flush writes m's corked frames now.
func (m *Member) Flush() {
	b := m.cork
	if b == nil {
		return
	}
	m.cork = nil // before writing: a failed write closes the connection
	m.conn.Write(b.B)
	m.loop.putBuf(b)
}

// Queue appends p after m's parts of its batches and its cork, or writes
// it now when there is none, without the slow-consumer rule: for a close
// frame (it ends the connection's output anyway, so it is never refused)
// and for bytes Admit already admitted.
func (m *Member) Queue(p []byte) {
	m.takeParts()
	if m.cork != nil {
		m.cork.B = append(m.cork.B, p...)
		return
	}
	m.conn.Write(p)
}

// corkAppend appends p to m's cork, taking one (and listing m for the
// end of the cycle) when it has none.
func (m *Member) corkAppend(p []byte) {
	if m.cork == nil {
		m.cork = m.loop.getBuf()
		m.loop.dirty = append(m.loop.dirty, m)
		m.loop.flushLater()
	}
	m.cork.B = append(m.cork.B, p...)
}

// takeParts moves m's unwritten parts of its lanes' batches into its
// cork, so that what it queues next follows the room frames delivered
// before it. One look per subscription; a no-op for those without a
// part.
func (m *Member) takeParts() {
	for _, s := range m.subs {
		s.takePart()
	}
}

// writePart writes p, m's part of a lane's batch, unless the
// slow-consumer rule closes m instead. A member with a cork (its own
// frames sent earlier in the cycle) gets both in one write. It reports
// whether p was written or queued. p is only read during the call.
func (m *Member) writePart(p []byte) bool {
	if !m.Admit(len(p)) {
		return false
	}
	if m.cork != nil {
		m.cork.B = append(m.cork.B, p...)
		m.Flush()
		return true
	}
	m.conn.Write(p)
	return true
}
