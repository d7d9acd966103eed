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

// maxSlackBytes bounds how much larger than twice its payload a
// message's pooled buffer may be: a small message that gets a buffer a
// large one grew (pooled buffers are reused) is copied into a buffer of
// its own size instead, so that what history charges (the buffer's
// capacity) is what the message holds.
const maxSlackBytes = 256

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
	if cap(f.buf.B) > 2*len(payload)+maxSlackBytes {
		f.buf.B = make([]byte, 0, len(payload)) // the large array goes to the collector
	}
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
	taskAnswer                  // on ack's member's loop: the outcome of its publication
	taskRestart                 // on every loop: the external log started a new epoch
	taskRenew                   // on r's owner: r starts a new epoch (messages were lost)
)

// roomTask carries work between loops. It holds one reference to f when
// f is set.
type roomTask struct {
	kind taskKind
	r    *Room
	f    *sharedMsg
	// Publish: the publication's key, whether to forward it, and who
	// learns the outcome. Answer: ack and its outcome.
	key     string
	forward bool
	ack     Ack
	ans     Answer
	// Restart: the external log's new epoch, and where its history
	// starts.
	epoch, covered uint64
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
		l.sequence(t.r, t.f, t.key, t.forward, t.ack)
	case taskDeliver:
		l.deliver(t.r, t.f)
	case taskJoin:
		l.placeJoin(t.r, t.sub, t.res)
	case taskJoined:
		l.joined(t.sub, t.res)
	case taskAnswer:
		if m := t.ack.Member; !m.released() {
			m.conn.Published(t.ack.ID, t.ans)
		}
	case taskRestart:
		l.restart(t.epoch, t.covered)
	case taskRenew:
		l.renew(t.r)
	}
}
