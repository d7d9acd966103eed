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
}

// Member is a connection's place in the engine: its room (if any), its
// part of the room shard's batch and its cork. A connection holds one by
// value and calls Init before any other method. A Member is owned by its
// loop: every method must be called there.
type Member struct {
	conn Conn
	loop *Loop

	room *Room // nil when not a member of a room
	slot int32 // index in room.shards[loop.idx].members
	// from is where this member's unwritten part of its shard's batch
	// starts (bytes; 0 at the start of a cycle), fromN the number of
	// frames before it. See shard.batch.
	from, fromN int32

	// cork holds frames for this poll cycle (nil when none; the member
	// is then listed in Loop.dirty). Returned to the free list when
	// written.
	cork *bytebufferpool.ByteBuffer
}

// Init attaches m to its connection and loop.
func (m *Member) Init(l *Loop, c Conn) { m.loop, m.conn = l, c }

// Loop is the loop that owns m.
func (m *Member) Loop() *Loop { return m.loop }

// Room is the room m is a member of, or nil.
func (m *Member) Room() *Room { return m.room }

// Join makes m a member of the room named name (copied when it creates
// the room) and reports true, or false when the room does not exist and
// Config.MaxRooms rooms do. m must not be a member of a room.
func (m *Member) Join(name []byte) bool { return m.loop.eng.join(m, name) }

// Leave takes m out of its room. The room frames delivered to m so far
// in this cycle are kept: they leave before whatever m sends next (its
// close frame). A no-op when m is in no room.
func (m *Member) Leave() {
	if m.room != nil {
		m.takePart()
		m.loop.eng.leave(m)
	}
}

// Release forgets m when its connection is gone: it leaves its room and
// its unwritten bytes are dropped.
func (m *Member) Release() {
	if m.room != nil {
		m.loop.eng.leave(m)
	}
	if m.cork != nil {
		m.loop.putBuf(m.cork)
		m.cork = nil
	}
}

// Admit is the slow-consumer rule, the one place Config.MaxPending is
// applied, for every kind of outbound bytes but the close frame: n more
// bytes may be queued when the connection has nothing unsent (so a
// message larger than MaxPending still reaches a reading peer), or when
// its unsent bytes plus n stay within MaxPending. Otherwise the
// connection is closed as a slow consumer (Conn.Overflow) and Admit
// reports false. Send and Deliver apply it; call it alone to admit bytes
// before a change of state, then Queue them. Corked bytes do not count: they leave at the end of
// this cycle, so a burst within one cycle is not mistaken for a slow
// reader; what counts is what the socket did not take.
func (m *Member) Admit(n int) bool {
	q := m.conn.Queued()
	if q == 0 || q+n <= m.loop.eng.cfg.MaxPending {
		return true
	}
	m.conn.Overflow()
	return false
}

// Send queues p, one of the connection's own frames or answers (a pong,
// a ping, an HTTP response), after everything queued for m before it:
// appended to its cork when it has one, written now otherwise. It
// reports false when the slow-consumer rule closed the connection
// instead.
func (m *Member) Send(p []byte) bool {
	if !m.Admit(len(p)) {
		return false
	}
	m.Queue(p)
	return true
}

// Deliver corks p, a data frame for m alone (an echo), for the end of the
// cycle (or writes the cork at once past Config.CorkLimit), and counts it
// as a delivery. It reports false when the slow-consumer rule closed the
// connection instead.
func (m *Member) Deliver(p []byte) bool {
	if !m.Admit(len(p)) {
		return false
	}
	m.takePart()
	m.corkAppend(p)
	m.loop.deliveries.Add(1)
	m.loop.bytesOut.Add(int64(len(p)))
	if len(m.cork.B) >= m.loop.eng.cfg.CorkLimit {
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

// Queue appends p after m's part of the batch and its cork, or writes it
// now when there is neither, without the slow-consumer rule: for a close
// frame (it ends the connection's output anyway, so it is never refused)
// and for bytes Admit already admitted.
func (m *Member) Queue(p []byte) {
	m.takePart()
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

// takePart moves m's unwritten part of its shard's batch into its cork,
// so that what it queues next follows the room frames delivered before
// it. A no-op unless m has such a part.
func (m *Member) takePart() {
	if m.room == nil {
		return
	}
	sh := &m.room.shards[m.loop.idx]
	if sh.batch == nil || int(m.from) >= len(sh.batch.B) {
		return
	}
	part := sh.batch.B[m.from:]
	m.loop.deliveries.Add(int64(sh.frames - m.fromN))
	m.loop.bytesOut.Add(int64(len(part)))
	m.from, m.fromN = int32(len(sh.batch.B)), sh.frames
	m.corkAppend(part)
}

// writePart writes p, m's part of its shard's batch, unless the
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
