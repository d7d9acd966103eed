package fanout

import (
	"context"
	"sync"
	"sync/atomic"
)

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
	case taskBatch:
		l.batch(t.r, t.f)
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
	case taskSkipped:
		l.skipped(t.covered)
	}
}

// taskKind is what a roomTask asks of the loop that runs it.
type taskKind uint8

const (
	taskPublish taskKind = iota // on the owner: sequence f in r
	taskBatch                   // append f, sequenced, to this loop's shard of r
	taskJoin                    // on the owner: answer sub's join of r (res)
	taskJoined                  // on sub's loop: the owner's answer
	taskAnswer                  // on ack's member's loop: the outcome of its publication
	taskRestart                 // on every loop: the external log started a new epoch
	taskRenew                   // on r's owner: r starts a new epoch (messages were lost)
	taskSkipped                 // on every loop: the external log removed messages up to covered
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
