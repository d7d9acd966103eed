package server

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"
)

// loop is the state loopcast keeps per gnet event loop. Everything except
// stats and tickQueued is touched only on the loop's goroutine.
type loop struct {
	idx int
	el  gnet.EventLoop
	srv *Server

	now             int64 // ticks since the server started, as of the last tick
	wheel           wheel
	pingTicks       int64
	idleTicks       int64
	handshakeTicks  int64
	closeGraceTicks int64

	// scratch builds small frames and answers (pong, close, 101); out
	// builds echo frames. Both are reused: valid until their next use.
	scratch []byte
	out     []byte

	tickQueued atomic.Bool
	tickTask   gnet.Runnable

	mbox      mailbox
	drainTask gnet.Runnable

	// dirty lists the connections with corked frames, written out by
	// flush at the end of the loop turn. corkFree keeps cork and batch
	// buffers for reuse: a loop-local free list, which unlike sync.Pool
	// survives garbage collections, so steady fan-out allocates nothing.
	// It holds at most maxCorkFreeBytes of capacity, and trimCorks gives
	// back, each tick, the buffers no turn needed since the last one.
	dirty         []*conn
	batched       []*shard // room shards with a batch this turn
	corkFree      []*bytebufferpool.ByteBuffer
	corkFreeBytes int  // capacity held by corkFree
	corkFreeLow   int  // fewest buffers corkFree held since the last trim
	flushQueued   bool // a flushTask is queued on the loop
	flushTask     gnet.Runnable

	stats loopStats
}

// closeGrace is how long the server waits for the peer's close frame (or
// lingers on an HTTP connection it is closing) before dropping TCP.
const closeGrace = 2 * time.Second

func newLoop(s *Server, idx int, el gnet.EventLoop) *loop {
	l := &loop{idx: idx, el: el, srv: s, scratch: make([]byte, 0, 256)}
	ticks := func(d time.Duration) int64 { return max(1, int64((d+s.tick-1)/s.tick)) }
	l.pingTicks = ticks(s.cfg.PingInterval)
	l.idleTicks = ticks(s.cfg.IdleTimeout)
	l.handshakeTicks = ticks(s.cfg.HandshakeTimeout)
	l.closeGraceTicks = ticks(min(closeGrace, s.cfg.HandshakeTimeout))
	l.now = s.ticksNow()
	l.wheel.cur = l.now
	l.tickTask = gnet.RunnableFunc(func(context.Context) error {
		l.tickQueued.Store(false)
		l.onTick()
		return nil
	})
	l.flushTask = gnet.RunnableFunc(func(context.Context) error {
		l.flushQueued = false
		l.flush()
		return nil
	})
	l.drainTask = gnet.RunnableFunc(func(context.Context) error {
		l.drainMailbox()
		return nil
	})
	return l
}

// corkLimit is how many bytes a connection corks before they are written
// without waiting for the end of the loop turn.
const corkLimit = 64 << 10

// maxCorkFreeBytes bounds the buffer capacity a loop keeps for reuse:
// with 64-byte messages, enough for a turn's writes to tens of thousands
// of members or rooms.
const maxCorkFreeBytes = 8 << 20

func (l *loop) getCork() *bytebufferpool.ByteBuffer {
	n := len(l.corkFree)
	if n == 0 {
		l.corkFreeLow = 0
		return new(bytebufferpool.ByteBuffer)
	}
	b := l.corkFree[n-1]
	l.corkFree[n-1] = nil
	l.corkFree = l.corkFree[:n-1]
	l.corkFreeBytes -= cap(b.B)
	l.corkFreeLow = min(l.corkFreeLow, n-1)
	return b
}

func (l *loop) putCork(b *bytebufferpool.ByteBuffer) {
	if c := cap(b.B); c > 2*corkLimit || l.corkFreeBytes+c > maxCorkFreeBytes {
		return // let the garbage collector have an oversized or surplus one
	}
	b.B = b.B[:0]
	l.corkFree = append(l.corkFree, b)
	l.corkFreeBytes += cap(b.B)
}

// trimCorks gives the garbage collector the free buffers that stayed
// unused since the last trim (the bottom of the stack, below the
// low-water mark), so the memory of a burst does not stay with an idle
// loop. Runs each tick.
func (l *loop) trimCorks() {
	if drop := l.corkFreeLow; drop > 0 {
		for _, b := range l.corkFree[:drop] {
			l.corkFreeBytes -= cap(b.B)
		}
		n := copy(l.corkFree, l.corkFree[drop:])
		clear(l.corkFree[n:])
		l.corkFree = l.corkFree[:n]
		if c := cap(l.corkFree); c > 64 && n < c/4 {
			l.corkFree = append(make([]*bytebufferpool.ByteBuffer, 0, c/2), l.corkFree...)
		}
	}
	l.corkFreeLow = len(l.corkFree)
}

// flushLater schedules flush after the other events of this poll cycle
// (gnet runs queued tasks once its epoll batch is done), so frames for
// one member from several readers' events, or from consecutive reads,
// leave in one write: uWebSockets' cork-until-the-end-of-the-iteration.
// One hand-off per cycle with output, not per message.
func (l *loop) flushLater() {
	if len(l.dirty) == 0 && len(l.batched) == 0 || l.flushQueued {
		return
	}
	l.flushQueued = true
	if err := l.el.Execute(context.Background(), l.flushTask); err != nil {
		l.flushQueued = false
		l.flush() // engine stopping: write now
	}
}

// flush writes each room shard's batch to its members and every corked
// connection's frames, one write per member (or connection) and turn:
// several messages for one member within a loop turn leave together,
// like uWebSockets' corking. A member with both writes its cork first.
func (l *loop) flush() {
	for i, sh := range l.batched {
		l.batched[i] = nil
		if len(sh.batch.B) > 0 {
			l.flushShard(sh)
		}
		l.putCork(sh.batch)
		sh.batch = nil
	}
	l.batched = l.batched[:0]
	for i, cs := range l.dirty {
		l.dirty[i] = nil
		cs.uncork()
	}
	l.dirty = l.dirty[:0]
}

// onTick advances the wheel: handshake timeouts, pings, idle timeouts and
// close grace periods that are due.
func (l *loop) onTick() {
	l.now = l.srv.ticksNow()
	l.wheel.advance(l.now, l.expire)
	l.trimCorks()
}

// expire handles a connection whose deadline came; it re-arms it when
// activity moved its real deadline.
func (l *loop) expire(cs *conn) {
	switch cs.state {
	case stateHTTP:
		if due := cs.since + l.handshakeTicks; due > l.now {
			l.wheel.add(cs, due)
			return
		}
		if !cs.graced && unreadBytes(cs.fd) > 0 {
			// Bytes came in time but this loop, busy with other
			// events, has not read them yet: read them before judging
			// (one tick, once; a trickling client still times out).
			cs.graced = true
			l.wheel.add(cs, l.now+1)
			return
		}
		cs.setReason(closeHandshakeTimeout)
		_ = l.el.Close(cs.gc)
	case stateOpen:
		if cs.goAway {
			cs.closeWith(closeGoingAway)
			return
		}
		if l.now-cs.seen >= l.idleTicks {
			cs.setReason(closeIdle)
			_ = l.el.Close(cs.gc)
			return
		}
		if l.now >= cs.nextPing {
			cs.nextPing = l.now + l.pingTicks
			if cs.pendingOK(len(pingFrame)) {
				cs.write(pingFrame)
				if cs.state != stateOpen {
					return
				}
			}
		}
		l.wheel.add(cs, min(cs.nextPing, cs.seen+l.idleTicks))
	case stateClosing:
		if cs.peerClosed && cs.gc.OutboundBuffered() > 0 && l.now < cs.closeBy {
			l.wheel.add(cs, l.now+1) // our close frame is still queued
			return
		}
		_ = l.el.Close(cs.gc)
	case stateLinger:
		_ = l.el.Close(cs.gc)
	}
}

// goAway closes every WebSocket of the loop with 1001, each at a random
// moment within spread (jitter), so clients reconnect elsewhere gradually.
func (l *loop) goAway(spread time.Duration) {
	var open []*conn
	for _, head := range l.wheel.slots {
		for cs := head; cs != nil; cs = cs.wnext {
			if cs.state == stateOpen {
				open = append(open, cs)
			}
		}
	}
	spreadTicks := int64(spread / l.srv.tick)
	for _, cs := range open {
		cs.goAway = true
		at := l.now
		if spreadTicks > 0 {
			at += rand.Int64N(spreadTicks + 1)
		}
		l.wheel.add(cs, at)
	}
}
