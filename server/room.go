package server

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"

	"github.com/loopcast/loopcast/server/frame"
)

// room is a set of members sharded by event loop. Shard i is touched only
// on loop i, so delivering to it needs no lock. The owner loop sequences
// every message of the room: a member on another loop, or Publish, hands
// the message to the owner first, and the owner hands it to each other
// loop with members. Each loop's task queue is FIFO, so every member sees
// the room's messages in the owner's order.
type room struct {
	name  string
	owner *loop
	// members counts members on all loops. It goes up under
	// rooms.mu, so a room found in the registry is never deleted
	// under a joining member.
	members atomic.Int64
	shards  []shard // indexed by loop idx
}

// shard is a room's members on one loop.
type shard struct {
	members []*conn
	live    atomic.Int32 // len(members) minus holes; read by the owner loop
	// While flushing, leaving members leave a nil hole instead of
	// moving others; the holes are compacted afterwards.
	delivering bool
	holes      int

	// batch holds the frames delivered to this shard in the current
	// loop turn, back to back (nil when none; listed in loop.batched).
	// At the end of the turn each member is written its part,
	// batch.B[member.batchFrom:], straight from this one buffer: the
	// frames are not copied per member. frames counts them. The buffer
	// goes back to the loop's free list after the flush.
	batch  *bytebufferpool.ByteBuffer
	frames int32
}

// rooms is the registry of rooms that have members. Its lock is taken on
// join and on the last leave of a room, never per message.
type rooms struct {
	mu     sync.Mutex
	m      map[string]*room
	nloops int
	broker Broker // nil: rooms are in-process only
}

func (rs *rooms) count() int64 {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return int64(len(rs.m))
}

// lookup returns the room named name, or nil.
func (rs *rooms) lookup(name string) *room {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.m[name]
}

// join makes cs a member of the room named name, creating the room with
// cs's loop as its owner. Runs on cs's loop.
func (rs *rooms) join(cs *conn, name []byte) {
	rs.mu.Lock()
	r := rs.m[string(name)]
	if r == nil {
		r = &room{name: string(name), owner: cs.loop, shards: make([]shard, rs.nloops)}
		rs.m[r.name] = r
		if rs.broker != nil {
			rs.broker.Subscribe(r.name)
		}
	}
	r.members.Add(1)
	rs.mu.Unlock()

	sh := &r.shards[cs.loop.idx]
	cs.room, cs.roomSlot = r, int32(len(sh.members))
	cs.batchFrom, cs.batchFromN = 0, 0
	if sh.batch != nil {
		// Frames delivered earlier in this turn are not for cs.
		cs.batchFrom, cs.batchFromN = int32(len(sh.batch.B)), sh.frames
	}
	sh.members = append(sh.members, cs)
	sh.live.Add(1)
}

// leave removes cs from its room, and the room from the registry when it
// was the last member. Frames of the shard's batch not yet written to cs
// are dropped: conn.leaveRoom takes them first when cs is to get them.
// Runs on cs's loop.
func (rs *rooms) leave(cs *conn) {
	r := cs.room
	cs.room = nil
	sh := &r.shards[cs.loop.idx]
	if sh.delivering {
		sh.members[cs.roomSlot] = nil
		sh.holes++
	} else {
		sh.removeAt(int(cs.roomSlot))
	}
	sh.live.Add(-1)
	if r.members.Add(-1) == 0 {
		rs.mu.Lock()
		if r.members.Load() == 0 && rs.m[r.name] == r {
			delete(rs.m, r.name)
			if rs.broker != nil {
				rs.broker.Unsubscribe(r.name)
			}
		}
		rs.mu.Unlock()
	}
}

func (sh *shard) removeAt(i int) {
	last := len(sh.members) - 1
	if i != last {
		m := sh.members[last]
		sh.members[i], m.roomSlot = m, int32(i)
	}
	sh.members[last] = nil
	sh.members = sh.members[:last]
	sh.shrink()
}

func (sh *shard) compact() {
	j := 0
	for _, m := range sh.members {
		if m != nil {
			sh.members[j], m.roomSlot = m, int32(j)
			j++
		}
	}
	clear(sh.members[j:])
	sh.members = sh.members[:j]
	sh.holes = 0
	sh.shrink()
}

// shrink gives back the memory of a shard that lost most of its members.
func (sh *shard) shrink() {
	if c := cap(sh.members); c > 64 && len(sh.members) < c/4 {
		sh.members = append(make([]*conn, 0, c/2), sh.members...)
	}
}

// sharedFrame is one encoded server frame shared by every member of a
// room, across loops. The bytes live in a pooled buffer; refs counts the
// loops still writing it, and the last release returns it to the pool.
// Members' writes copy into gnet's outbound buffers (or go straight to
// the socket), so nothing references the bytes after a loop is done.
type sharedFrame struct {
	buf  *bytebufferpool.ByteBuffer
	refs atomic.Int32
}

var framePool = sync.Pool{New: func() any { return new(sharedFrame) }}

// newSharedFrame encodes payload once as an unmasked frame, refs = 1.
func newSharedFrame(op ws.OpCode, payload []byte) *sharedFrame {
	f := framePool.Get().(*sharedFrame)
	f.buf = bytebufferpool.Get()
	f.buf.B = frame.AppendHeader(f.buf.B, true, op, len(payload))
	f.buf.B = append(f.buf.B, payload...)
	f.refs.Store(1)
	return f
}

func (f *sharedFrame) retain() { f.refs.Add(1) }

func (f *sharedFrame) release() {
	if f.refs.Add(-1) == 0 {
		bytebufferpool.Put(f.buf)
		f.buf = nil
		framePool.Put(f)
	}
}

// roomTask carries a frame to a loop: publish (sequence it on the owner)
// or deliver (write it to the loop's members). It holds one reference.
type roomTask struct {
	r       *room
	f       *sharedFrame
	publish bool
	next    *roomTask // mailbox link
}

var roomTaskPool = sync.Pool{New: func() any { return new(roomTask) }}

// mailbox is a loop's inbox of room tasks from other goroutines: a
// lock-free stack that producers push onto and the loop takes whole. The
// loop is woken (gnet Execute) only when the mailbox goes from idle to
// busy, so a burst of messages costs one hand-off per loop, not one per
// message or per member.
type mailbox struct {
	head      atomic.Pointer[roomTask] // newest first
	scheduled atomic.Bool              // a drain is queued on the loop
}

// handoff passes f (with a reference taken for the task) to loop to.
// Safe from any goroutine.
func handoff(to *loop, r *room, f *sharedFrame, publish bool) {
	t := roomTaskPool.Get().(*roomTask)
	t.r, t.f, t.publish = r, f, publish
	f.retain()
	for {
		old := to.mbox.head.Load()
		t.next = old
		if to.mbox.head.CompareAndSwap(old, t) {
			break
		}
	}
	if to.mbox.scheduled.CompareAndSwap(false, true) {
		if err := to.el.Execute(context.Background(), to.drainTask); err != nil {
			// The engine is stopping and its members are being
			// closed: the frames go to the garbage collector.
			to.mbox.scheduled.Store(false)
		}
	}
}

// drainMailbox runs on the loop: it takes every queued task, restores
// their order (per producer FIFO, so per room the owner's order) and runs
// them, then flushes the members' corked frames.
func (l *loop) drainMailbox() {
	l.mbox.scheduled.Store(false) // before taking: a later push schedules again
	var fifo *roomTask
	for t := l.mbox.head.Swap(nil); t != nil; {
		next := t.next
		t.next, fifo = fifo, t
		t = next
	}
	for t := fifo; t != nil; {
		next := t.next
		r, f, publish := t.r, t.f, t.publish
		*t = roomTask{}
		roomTaskPool.Put(t)
		if publish {
			l.fanout(r, f)
		} else {
			l.deliver(r, f)
		}
		f.release()
		t = next
	}
	l.flush()
}

// publish sends a message to every member of r, in the room's order.
func (l *loop) publish(r *room, op ws.OpCode, payload []byte) {
	f := newSharedFrame(op, payload)
	if r.owner == l {
		l.fanout(r, f)
	} else {
		handoff(r.owner, r, f, true)
	}
	f.release()
}

// fanout runs on the owner: it hands f to every other loop with members
// and writes it to its own.
func (l *loop) fanout(r *room, f *sharedFrame) {
	l.stats.published.Add(1)
	for _, other := range l.srv.loopList() {
		if other != l && r.shards[other.idx].live.Load() > 0 {
			handoff(other, r, f, false)
		}
	}
	l.deliver(r, f)
}

// deliver appends f to the batch of r's shard on this loop; flush writes
// it to the members at the end of the turn (or at once past corkLimit).
// The cost per frame is one copy, whatever the number of members.
func (l *loop) deliver(r *room, f *sharedFrame) {
	sh := &r.shards[l.idx]
	if sh.live.Load() == 0 {
		return
	}
	if sh.batch == nil {
		sh.batch = l.getCork()
		l.batched = append(l.batched, sh)
	}
	sh.batch.B = append(sh.batch.B, f.buf.B...)
	sh.frames++
	if len(sh.batch.B) >= corkLimit {
		l.flushShard(sh) // stays listed in batched; its batch is empty now
	}
}

// flushShard writes every member of sh its part of the batch (the frames
// delivered since it joined, or since it last took its part) and empties
// the batch. A member whose unsent bytes would pass MaxPending is closed
// with 1013 instead.
func (l *loop) flushShard(sh *shard) {
	b := sh.batch.B
	frames := sh.frames
	sh.delivering = true
	var delivered, sent int64
	for _, m := range sh.members {
		if m == nil {
			continue
		}
		from, fromN := m.batchFrom, m.batchFromN
		// Taken before writing: a write that fails closes m, and
		// leaving must not take the part again.
		m.batchFrom, m.batchFromN = int32(len(b)), frames
		if int(from) < len(b) && m.writeShared(b[from:]) {
			delivered += int64(frames - fromN)
			sent += int64(len(b) - int(from))
		}
		m.batchFrom, m.batchFromN = 0, 0
	}
	sh.delivering = false
	if sh.holes > 0 {
		sh.compact()
	}
	sh.batch.B = sh.batch.B[:0]
	sh.frames = 0
	l.stats.deliveries.Add(delivered)
	l.stats.bytesOut.Add(sent)
}
