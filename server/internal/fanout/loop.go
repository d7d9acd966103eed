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
	l := &Loop{idx: idx, eng: e, exec: exec, now: time.Now().UnixNano()}
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
	return l.eng.lookup(name, l)
}

// keep appends f to r's history within its limits: the room's message
// count, then this loop's share of HistoryConfig.MaxBytes, which the
// room holding the most bytes pays: it loses its oldest message, again
// until the share holds. So a room that publishes a lot, or large
// messages, trims its own history, never the others'.
func (l *Loop) keep(r *Room, f *sharedMsg, hc *HistoryConfig) {
	h := &r.hist
	l.own(r)
	for h.n >= hc.Messages {
		l.dropOldest(r)
	}
	h.push(f)
	l.histBytes += f.size()
	l.histMsgs.Add(1)
	l.byBytes.fix(r)
	share := hc.MaxBytes / int64(l.eng.cfg.Loops)
	for l.histBytes > share {
		big := l.byBytes.top()
		if big == nil || big.hist.n == 0 {
			break
		}
		l.dropOldest(big)
	}
	l.histGauge.Store(l.histBytes)
	r.histLen.Store(int64(h.n))
	r.histBytes.Store(h.bytes)
}

// dropOldest drops the oldest message of r's history (r owned here).
func (l *Loop) dropOldest(r *Room) {
	l.histBytes -= r.hist.pop()
	l.histMsgs.Add(-1)
	l.byBytes.fix(r)
	r.histLen.Store(int64(r.hist.n))
	r.histBytes.Store(r.hist.bytes)
}

// dropHistory drops all of r's history (r owned here).
func (l *Loop) dropHistory(r *Room) {
	for r.hist.n > 0 {
		l.dropOldest(r)
	}
	r.hist.ring, r.hist.head = nil, 0
	l.histGauge.Store(l.histBytes)
}

// own lists r, a room this loop owns, for the expiry pass and the byte
// budget.
func (l *Loop) own(r *Room) {
	if !r.listed {
		r.listed = true
		l.owned = append(l.owned, r)
		l.byBytes.push(r)
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
			l.dropOldest(r)
		}
		if h.n == 0 && r.members.Load() == 0 && l.eng.forget(r) {
			h.clear()
			r.listed = false
			l.byBytes.remove(r)
			continue
		}
		kept = append(kept, r)
	}
	clear(l.owned[len(kept):])
	l.owned = kept
	l.histGauge.Store(l.histBytes)
	l.dedupe.expire(l.now)
}

// restart runs Engine.Restart on this loop: every room it owns (listed
// or not yet) takes the log's new epoch with an empty history complete
// after covered; resumes waiting for the old epoch are answered now.
func (l *Loop) restart(epoch, covered uint64) {
	l.extEpoch, l.pos = epoch, covered
	var mine []*Room
	l.eng.mu.Lock()
	for _, r := range l.eng.rooms {
		if r.owner == l {
			mine = append(mine, r)
		}
	}
	l.eng.mu.Unlock()
	for _, r := range mine {
		l.dropHistory(r)
		r.hist.covered = covered
		r.top.Store(0)
		r.epoch.Store(epoch)
	}
	waiting := l.waiting
	l.waiting = nil
	for _, w := range waiting {
		l.placeJoin(w.r, w.s, w.req) // of the old epoch: epoch_changed
	}
}

// renew runs Engine.Renew on r's owner: a new epoch, offsets from 1.
func (l *Loop) renew(r *Room) {
	if r.gone.Load() {
		return // forgotten meanwhile: its next incarnation has a new epoch anyway
	}
	l.dropHistory(r)
	r.hist.covered = 0
	r.top.Store(0)
	r.forwarded = 0
	r.epoch.Store(newEpoch())
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
