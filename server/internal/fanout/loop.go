package fanout

import (
	"context"
	"sync/atomic"
	"time"

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

// Message is one room message as Config.Encode sees it. Payload is only
// valid during the call.
type Message struct {
	Op      byte   // the WebSocket opcode it was published with
	Epoch   uint64 // the room's epoch when it was sequenced
	Offset  uint64 // its place in the room's order, from 1
	Payload []byte
}

func (f *sharedMsg) message() Message {
	return Message{Op: f.op, Epoch: f.epoch, Offset: f.offset, Payload: f.buf.B}
}

// Loop is the engine's state for one event loop. Everything except the
// counters and the mailbox is touched only on the loop's goroutine.
type Loop struct {
	idx  int
	eng  *Engine
	exec Executor

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

	// pos is the offset of the last message sequenced here with
	// external offsets: every message of the rooms this loop owns up to
	// it is in order (the log's messages come in its order). waiting are
	// the resumes newer than that, waiting for the log (see
	// External.Handed).
	pos     uint64
	waiting []waitingJoin

	// Counters, written by this loop only; read by Engine.Counters.
	deliveries atomic.Int64
	bytesOut   atomic.Int64
	published  atomic.Int64
	histGauge  atomic.Int64 // histBytes, for Engine.Counters
	histMsgs   atomic.Int64
	_          [64]byte // keep loops' counters off each other's cache lines
}

func newLoop(e *Engine, idx int, exec Executor) *Loop {
	l := &Loop{idx: idx, eng: e, exec: exec, now: time.Now().UnixNano()}
	l.lastExpire = l.now
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

// Publish sends one message (op and payload, encoded once per lane and
// loop by Config.Encode) to every subscription of r, in the room's order:
// sequenced here when this loop owns r, else handed to the owner. When id
// is not 0, from's connection is told the message's offset
// (Conn.Published) once the owner sequenced it. payload is only read
// during the call.
func (l *Loop) Publish(r *Room, op byte, payload []byte, from *Member, id uint32) {
	f := newSharedMsg(op, payload)
	if r.owner == l {
		l.sequence(r, f, from, id, nil)
	} else {
		t := newTask(taskPublish, r, f)
		t.from, t.id = from, id
		handoff(r.owner, t)
	}
	f.release()
}

// Lookup returns the room named name, creating it (owned by this loop)
// when history is on, so that messages published to a room nobody is
// in are kept for those who resume. It returns nil when the room does not
// exist and history is off, or with ErrTooManyRooms.
func (l *Loop) Lookup(name []byte) (*Room, error) {
	return l.eng.lookup(name, l)
}

// sequence runs on r's owner: it gives f the room's next offset, keeps
// it in history, hands it to every other loop with subscriptions and
// delivers it to its own. from/id acknowledge a member's publish, wait
// wakes Engine.Publish.
func (l *Loop) sequence(r *Room, f *sharedMsg, from *Member, id uint32, wait chan<- Sequenced) {
	if r.gone.Load() {
		// The room was forgotten while f was on its way: sequence f in
		// the room that replaced it, if any.
		var err error
		if r, err = l.eng.lookup([]byte(r.name), l); r == nil || err != nil {
			l.ack(nil, from, id, wait, 0)
			return
		}
		if r.owner != l {
			t := newTask(taskPublish, r, f)
			t.from, t.id, t.wait = from, id, wait
			handoff(r.owner, t)
			return
		}
	}
	offset := r.top.Load() + 1
	if l.eng.cfg.External != nil {
		if f.epoch != r.epoch.Load() {
			// The log started again (a JetStream stream recreated): the
			// room's history and offsets belong to the old epoch.
			l.histBytes -= r.hist.clear()
			r.hist.covered = f.offset - 1
			r.top.Store(0)
			r.epoch.Store(f.epoch)
		}
		if f.offset <= r.top.Load() {
			l.ack(r, from, id, wait, 0) // a duplicate
			return
		}
		offset = f.offset
		l.pos = max(l.pos, offset)
	}
	f.offset, f.epoch, f.at = offset, r.epoch.Load(), l.now
	r.top.Store(offset)
	l.published.Add(1)
	if hc := &l.eng.cfg.History; hc.Messages > 0 {
		l.keep(r, f, hc)
	}
	for _, other := range l.eng.loopList() {
		if other != l && r.shards[other.idx].live.Load() > 0 {
			handoff(other, newTask(taskDeliver, r, f))
		}
	}
	l.deliver(r, f)
	l.ack(r, from, id, wait, offset)
}

// ack tells a publisher the offset its message got (0: none).
func (l *Loop) ack(r *Room, from *Member, id uint32, wait chan<- Sequenced, offset uint64) {
	switch {
	case wait != nil:
		var s Sequenced
		if r != nil {
			s = Sequenced{r.name, r.epoch.Load(), offset}
		}
		wait <- s
	case id == 0 || from == nil:
	case from.loop == l:
		if !from.released() {
			from.conn.Published(id, r.name, r.epoch.Load(), offset, nil)
		}
	default:
		t := newTask(taskAck, r, nil)
		t.from, t.id, t.offset = from, id, offset
		handoff(from.loop, t)
	}
}

// keep appends f to r's history within its limits: the room's message
// count, then this loop's share of HistoryConfig.MaxBytes (the room's
// oldest messages go first).
func (l *Loop) keep(r *Room, f *sharedMsg, hc *HistoryConfig) {
	h := &r.hist
	l.own(r)
	for h.n >= hc.Messages {
		l.histBytes -= h.pop()
		l.histMsgs.Add(-1)
	}
	h.push(f)
	l.histBytes += f.size()
	l.histMsgs.Add(1)
	share := hc.MaxBytes / int64(l.eng.cfg.Loops)
	for l.histBytes > share && h.n > 0 {
		l.histBytes -= h.pop()
		l.histMsgs.Add(-1)
	}
	l.histGauge.Store(l.histBytes)
	r.histLen.Store(int64(h.n))
	r.histBytes.Store(h.bytes)
}

// own lists r, a room this loop owns, for the expiry pass.
func (l *Loop) own(r *Room) {
	if !r.listed {
		r.listed = true
		l.owned = append(l.owned, r)
	}
}

// expire drops history older than HistoryConfig.TTL from the rooms this
// loop owns, and forgets the rooms left with neither members nor
// history. Their epoch goes with them: a resume afterwards is told the
// epoch changed.
func (l *Loop) expire() {
	hc := &l.eng.cfg.History
	if hc.Messages == 0 {
		return
	}
	cutoff := l.now - int64(hc.TTL)
	kept := l.owned[:0]
	for _, r := range l.owned {
		h := &r.hist
		for h.n > 0 && h.at(0).at < cutoff {
			l.histBytes -= h.pop()
			l.histMsgs.Add(-1)
		}
		r.histLen.Store(int64(h.n))
		r.histBytes.Store(h.bytes)
		if h.n == 0 && r.members.Load() == 0 && l.eng.forget(r) {
			h.clear()
			r.listed = false
			continue
		}
		kept = append(kept, r)
	}
	clear(l.owned[len(kept):])
	l.owned = kept
	l.histGauge.Store(l.histBytes)
}

// deliver appends f, encoded once per lane, to the batches of r's shard
// on this loop, whatever the number of subscriptions. The flush at the
// end of the cycle (or at CorkLimit) writes them.
func (l *Loop) deliver(r *Room, f *sharedMsg) {
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
		ln.batch.B = l.eng.cfg.Encode(ln.batch.B, Kind(k), r, f.message())
		ln.frames++
		if len(ln.batch.B) >= l.eng.cfg.CorkLimit {
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

func (l *Loop) getBuf() *bytebufferpool.ByteBuffer  { return l.free.get() }
func (l *Loop) putBuf(b *bytebufferpool.ByteBuffer) { l.free.put(b) }
