package fanout

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"
)

// Loop is the engine's state for one event loop. Everything except the
// counters and the mailbox is touched only on the loop's goroutine.
type Loop struct {
	idx    int
	engine *Engine
	exec   Executor

	mbox      mailbox
	drainTask Task

	// dirty lists the members with a cork, batched the lanes with a
	// batch: flush writes both at the end of the poll cycle.
	dirty       []*Member
	batched     []*lane
	flushQueued bool // a flushTask is queued (or a drain will flush)
	flushTask   Task

	free    freeList
	scratch []byte // encodes replayed messages

	// now is the loop's clock (Unix ns), read at each Tick: history
	// times and expiry use it, never a clock read per message.
	now        int64
	lastExpire int64
	// owned lists the rooms this loop owns while history is on, for the
	// expiry pass; histBytes is their history's size.
	owned     []*Room
	histBytes int64

	// byBytes orders the rooms this loop owns by history bytes, for
	// HistoryConfig.MaxBytes (history.go).
	byBytes roomHeap

	// pos is the offset of the last message sequenced here with
	// external offsets: every message of the rooms this loop owns up to
	// it is in order (the log's messages come in its order). waiting are
	// the resumes newer than that, waiting for the log (see
	// External.Handed). extEpoch is the log's epoch as of the last
	// Restart: messages of another epoch are dropped.
	pos      uint64
	waiting  []waitingJoin
	extEpoch uint64

	// dedupe remembers publication keys (without an external log).
	dedupe dedupe

	// Counters, written by this loop only; read by Engine.Counters.
	deliveries atomic.Int64
	bytesOut   atomic.Int64
	published  atomic.Int64
	histGauge  atomic.Int64 // histBytes, for Engine.Counters
	histMsgs   atomic.Int64
	replayed   atomic.Int64
	// dedupeEvicted counts keys forgotten early (maxDedupeKeys).
	dedupeEvicted atomic.Int64
	_             [64]byte // keep loops' counters off each other's cache lines
}

func newLoop(e *Engine, idx int, exec Executor) *Loop {
	l := &Loop{idx: idx, engine: e, exec: exec, now: time.Now().UnixNano()}
	l.lastExpire = l.now
	if x := e.cfg.External; x != nil {
		l.extEpoch = x.Epoch()
	}
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

// Tick reads the clock, gives the garbage collector the free buffers no
// cycle needed since the previous Tick and, once per expireEvery, drops
// expired history and forgets rooms left with neither members nor
// history. Call it from the loop's timer.
func (l *Loop) Tick() {
	l.now = time.Now().UnixNano()
	l.free.trim()
	if len(l.waiting) > 0 {
		l.retryWaiting()
	}
	if l.now-l.lastExpire >= int64(expireEvery) {
		l.lastExpire = l.now
		l.expire()
	}
}

// Lookup returns the room named name, creating it (owned by this loop)
// when history is on, so that messages published to a room nobody is
// in are kept for those who resume. It returns nil when the room does not
// exist and history is off, or with ErrTooManyRooms.
func (l *Loop) Lookup(name []byte) (*Room, error) {
	return l.engine.lookup(name, l)
}

// batch appends f, encoded once per lane, to the batches of r's shard
// on this loop, whatever the number of subscriptions. The flush at the
// end of the cycle (or at CorkLimit) writes them.
func (l *Loop) batch(r *Room, f *sharedMsg) {
	sh := &r.shards[l.idx]
	if sh.live.Load() == 0 {
		return
	}
	for k := range sh.lanes {
		ln := &sh.lanes[k]
		if len(ln.subs) == 0 {
			continue
		}
		if ln.batch == nil {
			ln.batch = l.getBuf()
			l.batched = append(l.batched, ln)
			l.flushLater()
		}
		ln.batch.B = l.engine.cfg.Encode(ln.batch.B, Kind(k), r, f.message())
		ln.frames++
		if len(ln.batch.B) >= l.engine.cfg.CorkLimit {
			l.flushLane(ln) // stays listed in batched; its batch is empty now
		}
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

// flush writes each lane's batch to its subscriptions' members, then
// every member's cork: one write per member and lane with output, and
// cycle.
func (l *Loop) flush() {
	for i, ln := range l.batched {
		l.batched[i] = nil
		if len(ln.batch.B) > 0 {
			l.flushLane(ln)
		}
		l.putBuf(ln.batch)
		ln.batch = nil
	}
	l.batched = l.batched[:0]
	for i, m := range l.dirty {
		l.dirty[i] = nil
		m.Flush()
	}
	l.dirty = l.dirty[:0]
}

// flushLane writes every subscription of ln its part of the batch (the
// frames delivered since it joined, or since it last took its part) and
// empties the batch. A member the slow-consumer rule refuses is closed
// instead.
func (l *Loop) flushLane(ln *lane) {
	b := ln.batch.B
	frames := ln.frames
	ln.delivering = true
	var delivered, sent int64
	for _, s := range ln.subs {
		if s == nil {
			continue
		}
		from, fromN := s.from, s.fromN
		// Taken before writing: a write that fails closes the member,
		// and leaving must not take the part again.
		s.from, s.fromN = int32(len(b)), frames
		if int(from) < len(b) && s.m.writePart(b[from:]) {
			delivered += int64(frames - fromN)
			sent += int64(len(b) - int(from))
		}
		s.from, s.fromN = 0, 0
	}
	ln.delivering = false
	if ln.holes > 0 {
		ln.compact()
	}
	ln.batch.B = ln.batch.B[:0]
	ln.frames = 0
	l.deliveries.Add(delivered)
	l.bytesOut.Add(sent)
}

func (l *Loop) getBuf() *bytebufferpool.ByteBuffer { return l.free.get() }

func (l *Loop) putBuf(b *bytebufferpool.ByteBuffer) { l.free.put(b) }
