package fanout

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/valyala/bytebufferpool"
)

// sharedFrame is one encoded frame shared by every member of a room,
// across loops. The bytes live in a pooled buffer; refs counts the
// holders (the publisher while it hands the frame out, and each task
// carrying it), and the last release returns it to the pool. Loops copy
// the bytes into their batches, so nothing references them after that.
type sharedFrame struct {
	buf  *bytebufferpool.ByteBuffer
	refs atomic.Int32
}

var framePool = sync.Pool{New: func() any { return new(sharedFrame) }}

// newSharedFrame copies head and payload into a pooled frame, refs = 1.
func newSharedFrame(head, payload []byte) *sharedFrame {
	f := framePool.Get().(*sharedFrame)
	f.buf = bytebufferpool.Get()
	f.buf.B = append(append(f.buf.B, head...), payload...)
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
// or deliver (append it to the loop's shard). It holds one reference.
type roomTask struct {
	r       *Room
	f       *sharedFrame
	publish bool
	next    *roomTask // mailbox link
}

var roomTaskPool = sync.Pool{New: func() any { return new(roomTask) }}

// mailbox is a loop's inbox of room tasks from other goroutines: a
// lock-free stack that producers push onto and the loop takes whole. The
// loop is woken (Executor.Execute) only when the mailbox goes from idle
// to busy, so a burst of messages costs one hand-off per loop, not one
// per message or per member.
type mailbox struct {
	head      atomic.Pointer[roomTask] // newest first
	scheduled atomic.Bool              // a drain is queued on the loop
}

// handoff passes f (with a reference taken for the task) to loop to.
// Safe from any goroutine.
func handoff(to *Loop, r *Room, f *sharedFrame, publish bool) {
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
	l.flushQueued = queued
	l.flush()
}
