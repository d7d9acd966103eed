package fanout

import (
	"context"
	"sync/atomic"

	"github.com/valyala/bytebufferpool"
)

// Task is work an Executor runs on its loop; the method set of
// gnet.Runnable, so a gnet.EventLoop runs it as it is.
type Task interface {
	Run(context.Context) error
}

// Executor runs tasks on one event loop: gnet.EventLoop.Execute. Execute
// is safe from any goroutine and runs t later on the loop, after the
// events of the current poll cycle; an error means the loop is stopping
// and t will not run.
type Executor interface {
	Execute(ctx context.Context, t Task) error
}

// taskFunc adapts a function to Task.
type taskFunc func()

func (f taskFunc) Run(context.Context) error { f(); return nil }

// Loop is the engine's state for one event loop. Everything except the
// counters and the mailbox is touched only on the loop's goroutine.
type Loop struct {
	idx  int
	eng  *Engine
	exec Executor

	mbox      mailbox
	drainTask Task

	// dirty lists the members with a cork, batched the room shards with
	// a batch: flush writes both at the end of the poll cycle.
	dirty       []*Member
	batched     []*shard
	flushQueued bool // a flushTask is queued (or a drain will flush)
	flushTask   Task

	free freeList

	// Counters, written by this loop only; read by Engine.Counters.
	deliveries atomic.Int64
	bytesOut   atomic.Int64
	published  atomic.Int64
	_          [64]byte // keep loops' counters off each other's cache lines
}

func newLoop(e *Engine, idx int, exec Executor) *Loop {
	l := &Loop{idx: idx, eng: e, exec: exec}
	l.free.maxBytes, l.free.maxCap = e.cfg.MaxFreeBytes, 2*e.cfg.CorkLimit
	l.drainTask = taskFunc(l.drainMailbox)
	l.flushTask = taskFunc(func() {
		l.flushQueued = false
		l.flush()
	})
	return l
}

// Index is the loop's position, 0 to Config.Loops-1.
func (l *Loop) Index() int { return l.idx }

// Tick gives the garbage collector the free buffers no cycle needed
// since the previous Tick. Call it from the loop's timer.
func (l *Loop) Tick() { l.free.trim() }

// Publish sends one message (head followed by payload, encoded once) to
// every member of r, in the room's order: sequenced here when this loop
// owns r, else handed to the owner. head and payload are only read
// during the call.
func (l *Loop) Publish(r *Room, head, payload []byte) {
	f := newSharedFrame(head, payload)
	if r.owner == l {
		l.fanout(r, f)
	} else {
		handoff(r.owner, r, f, true)
	}
	f.release()
}

// fanout runs on the owner: it hands f to every other loop with members
// and delivers it to its own.
func (l *Loop) fanout(r *Room, f *sharedFrame) {
	l.published.Add(1)
	for _, other := range l.eng.loopList() {
		if other != l && r.shards[other.idx].live.Load() > 0 {
			handoff(other, r, f, false)
		}
	}
	l.deliver(r, f)
}

// deliver appends f to the batch of r's shard on this loop: one copy per
// frame, whatever the number of members. The flush at the end of the
// cycle (or at CorkLimit) writes it to the members.
func (l *Loop) deliver(r *Room, f *sharedFrame) {
	sh := &r.shards[l.idx]
	if sh.live.Load() == 0 {
		return
	}
	if sh.batch == nil {
		sh.batch = l.getBuf()
		l.batched = append(l.batched, sh)
		l.flushLater()
	}
	sh.batch.B = append(sh.batch.B, f.buf.B...)
	sh.frames++
	if len(sh.batch.B) >= l.eng.cfg.CorkLimit {
		l.flushShard(sh) // stays listed in batched; its batch is empty now
	}
}

// flushLater schedules flush after the other events of this poll cycle,
// so frames for one member from several events leave in one write:
// uWebSockets' cork-until-the-end-of-the-iteration. One hand-off per
// cycle with output, not per message.
func (l *Loop) flushLater() {
	if l.flushQueued {
		return
	}
	l.flushQueued = true
	if err := l.exec.Execute(context.Background(), l.flushTask); err != nil {
		l.flushQueued = false
		l.flush() // the loop is stopping: write now
	}
}

// flush writes each room shard's batch to its members, then every
// member's cork: one write per member and cycle.
func (l *Loop) flush() {
	for i, sh := range l.batched {
		l.batched[i] = nil
		if len(sh.batch.B) > 0 {
			l.flushShard(sh)
		}
		l.putBuf(sh.batch)
		sh.batch = nil
	}
	l.batched = l.batched[:0]
	for i, m := range l.dirty {
		l.dirty[i] = nil
		m.Flush()
	}
	l.dirty = l.dirty[:0]
}

// flushShard writes every member of sh its part of the batch (the frames
// delivered since it joined, or since it last took its part) and empties
// the batch. A member the slow-consumer rule refuses is closed instead.
func (l *Loop) flushShard(sh *shard) {
	b := sh.batch.B
	frames := sh.frames
	sh.delivering = true
	var delivered, sent int64
	for _, m := range sh.members {
		if m == nil {
			continue
		}
		from, fromN := m.from, m.fromN
		// Taken before writing: a write that fails closes m, and
		// leaving must not take the part again.
		m.from, m.fromN = int32(len(b)), frames
		if int(from) < len(b) && m.writePart(b[from:]) {
			delivered += int64(frames - fromN)
			sent += int64(len(b) - int(from))
		}
		m.from, m.fromN = 0, 0
	}
	sh.delivering = false
	if sh.holes > 0 {
		sh.compact()
	}
	sh.batch.B = sh.batch.B[:0]
	sh.frames = 0
	l.deliveries.Add(delivered)
	l.bytesOut.Add(sent)
}

func (l *Loop) getBuf() *bytebufferpool.ByteBuffer  { return l.free.get() }
func (l *Loop) putBuf(b *bytebufferpool.ByteBuffer) { l.free.put(b) }
