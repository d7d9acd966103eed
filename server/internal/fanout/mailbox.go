package fanout

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/valyala/bytebufferpool"
)

// msgOverhead is what a message in history costs beyond its payload
// buffer's capacity (the sharedMsg and its ring slot), in bytes, for
// HistoryConfig.MaxBytes.
const msgOverhead = 64

// sharedMsg is one room message shared by every loop and by the room's
// history: its payload in a pooled buffer, its opcode, and the offset and
// time the owner gave it. refs counts the holders (the publisher while it
// hands the message out, each task carrying it, the history), and the
// last release returns it to the pool. Offset and at are written once by
// the owner before the message is handed on, and only read afterwards.
type sharedMsg struct {
	buf    *bytebufferpool.ByteBuffer
	op     byte
	epoch  uint64
	offset uint64
	at     int64 // owner loop's clock (Loop.now) when sequenced
	refs   atomic.Int32
	// replayed caches the Framed|Compressed frame of the message, built
	// by the first replay that needs it (on any loop) and shared by every
	// later one: a reconnect storm compresses each replayed message once,
	// not once per resuming member. Dropped with the message.
	replayed atomic.Pointer[[]byte]
}

var msgPool = sync.Pool{New: func() any { return new(sharedMsg) }}

// newSharedMsg copies payload into a pooled message, refs = 1.
func newSharedMsg(op byte, payload []byte) *sharedMsg {
	f := msgPool.Get().(*sharedMsg)
	f.buf = bytebufferpool.Get()
	f.buf.B = append(f.buf.B, payload...)
	f.op, f.epoch, f.offset, f.at = op, 0, 0, 0
	f.refs.Store(1)
	return f
}

func (f *sharedMsg) retain() { f.refs.Add(1) }

func (f *sharedMsg) release() {
	if f.refs.Add(-1) == 0 {
		bytebufferpool.Put(f.buf)
		f.buf = nil
		f.replayed.Store(nil)
		msgPool.Put(f)
	}
}

func (f *sharedMsg) size() int64 { return int64(cap(f.buf.B)) + msgOverhead }

// taskKind is what a roomTask asks of the loop that runs it.
type taskKind uint8

const (
	taskPublish taskKind = iota // on the owner: sequence f in r
	taskDeliver                 // append f, sequenced, to this loop's shard of r
	taskJoin                    // on the owner: answer sub's join of r (res)
	taskJoined                  // on sub's loop: the owner's answer
	taskAck                     // on from's loop: f was sequenced at offset
)

// roomTask carries work between loops. It holds one reference to f when
// f is set.
type roomTask struct {
	kind taskKind
	r    *Room
	f    *sharedMsg
	// Publish: who to acknowledge (from, id, when id is not 0) or wake
	// (wait). Ack: the same, with the offset.
	from   *Member
	id     uint32
	wait   chan<- Sequenced
	offset uint64
	// An external acknowledgement (Engine.Acknowledge).
	name  string
	epoch uint64
	err   error
	// Join and Joined.
	sub *Sub
	res JoinResult

	next *roomTask // mailbox link
}

var roomTaskPool = sync.Pool{New: func() any { return new(roomTask) }}

func newTask(kind taskKind, r *Room, f *sharedMsg) *roomTask {
	t := roomTaskPool.Get().(*roomTask)
	t.kind, t.r, t.f = kind, r, f
	if f != nil {
		f.retain()
	}
	return t
}

// mailbox is a loop's inbox of room tasks from other goroutines: a
// lock-free stack that producers push onto and the loop takes whole. The
// loop is woken (Executor.Execute) only when the mailbox goes from idle
// to busy, so a burst of messages costs one hand-off per loop, not one
// per message or per member.
type mailbox struct {
	head      atomic.Pointer[roomTask] // newest first
	scheduled atomic.Bool              // a drain is queued on the loop
}

// handoff queues t on loop to. Safe from any goroutine.
func handoff(to *Loop, t *roomTask) {
	for {
		old := to.mbox.head.Load()
		t.next = old
		if to.mbox.head.CompareAndSwap(old, t) {
			break
		}
	}
	if to.mbox.scheduled.CompareAndSwap(false, true) {
		if err := to.exec.Execute(context.Background(), to.drainTask); err != nil {
			// The loop is stopping and its members are being closed:
			// the queued tasks go to the garbage collector.
			to.mbox.scheduled.Store(false)
		}
	}
}

// drainMailbox runs on the loop: it takes every queued task, restores
// their order (FIFO per producer, so per room the owner's order), runs
// them, then flushes. No flush task is queued meanwhile: this one flush
// covers everything the tasks delivered.
func (l *Loop) drainMailbox() {
	l.mbox.scheduled.Store(false) // before taking: a later push schedules again
	var fifo *roomTask
	for t := l.mbox.head.Swap(nil); t != nil; {
		next := t.next
		t.next, fifo = fifo, t
		t = next
	}
	queued := l.flushQueued
	l.flushQueued = true
	for t := fifo; t != nil; {
		next := t.next
		task := *t
		*t = roomTask{}
		roomTaskPool.Put(t)
		l.run(&task)
		if task.f != nil {
			task.f.release()
		}
		t = next
	}
	l.flushQueued = queued
	l.flush()
}

// run does what a task asks.
func (l *Loop) run(t *roomTask) {
	switch t.kind {
	case taskPublish:
		l.sequence(t.r, t.f, t.from, t.id, t.wait)
	case taskDeliver:
		l.deliver(t.r, t.f)
	case taskJoin:
		l.placeJoin(t.r, t.sub, t.res)
	case taskJoined:
		l.joined(t.sub, t.res)
	case taskAck:
		if t.from.released() {
			break
		}
		if t.r != nil {
			t.from.conn.Published(t.id, t.r.name, t.r.epoch.Load(), t.offset, nil)
		} else {
			t.from.conn.Published(t.id, t.name, t.epoch, t.offset, t.err)
		}
	}
}
