package server

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/frame"
)

// eventLoop is the state loopcast keeps per gnet event eventLoop besides the
// fan-out engine's (fan). Everything except stats and tickQueued is
// touched only on the eventLoop's goroutine.
type eventLoop struct {
	idx    int
	el     gnet.EventLoop
	srv    *Server
	engine *fanout.Loop

	now   int64 // ticks since the server started, as of the last tick or read
	nowNs int64 // nanoseconds since the server started, as of the last read
	wheel wheel
	// publishInterval is the time one message costs in a member's
	// publish token bucket (ns; 0: no limit), publishTolerance the credit
	// a burst may use: (PublishBurst-1) intervals. See conn.allowPublish.
	publishInterval, publishTolerance int64
	// subscribeInterval and subscribeTolerance: the same for sub and
	// unsub (SubscribeRate, in a bucket of MaxSubscriptions).
	subscribeInterval, subscribeTolerance int64
	pingTicks                             int64
	idleTicks                             int64
	handshakeTicks                        int64
	closeGraceTicks                       int64
	// behindTicks is how long past its handshake deadline a connection
	// whose request waits unread in the socket is kept (the loop is
	// behind, not the client): closeGrace, whatever HandshakeTimeout.
	behindTicks int64

	// scratch builds small frames and answers (pong, close, 101); out
	// builds echo frames. Both are reused: valid until their next use.
	scratch []byte
	out     []byte

	// watchers are this loop's connections watching each room's
	// occupancy (watch.go); nil until the first watch.
	watchers map[string][]watcher
	// users indexes its connections by their token's sub (users.go);
	// byID those the connect hook named, by connSeq, numbered from
	// connSeq.
	users   map[string][]*conn
	byID    map[uint64]*conn
	connSeq uint64
	// presenceWatchers are its connections watching each presence
	// room's joins and leaves (presence.go); nil until the first.
	presenceWatchers map[string][]watcher

	tickQueued atomic.Bool
	tickTask   gnet.Runnable

	stats loopStats
}

// gnetExecutor runs the engine's tasks on a gnet event loop.
type gnetExecutor struct{ el gnet.EventLoop }

func (e gnetExecutor) Execute(ctx context.Context, t fanout.Task) error { return e.el.Execute(ctx, t) }

func newLoop(s *Server, idx int, el gnet.EventLoop) *eventLoop {
	l := &eventLoop{idx: idx, el: el, srv: s, engine: s.engine.AddLoop(gnetExecutor{el}), scratch: make([]byte, 0, scratchBytes)}
	ticks := func(d time.Duration) int64 { return max(1, int64((d+s.tick-1)/s.tick)) }
	if r := s.cfg.PublishRate; r > 0 {
		l.publishInterval = int64(float64(time.Second) / r)
		l.publishTolerance = int64(s.cfg.PublishBurst-1) * l.publishInterval
	}
	if r := s.cfg.SubscribeRate; r > 0 {
		l.subscribeInterval = int64(float64(time.Second) / r)
		l.subscribeTolerance = int64(s.cfg.MaxSubscriptions-1) * l.subscribeInterval
	}
	l.pingTicks = ticks(s.cfg.PingInterval)
	l.idleTicks = ticks(s.cfg.IdleTimeout)
	l.handshakeTicks = ticks(s.cfg.HandshakeTimeout)
	l.closeGraceTicks = ticks(min(closeGrace, s.cfg.HandshakeTimeout))
	l.behindTicks = ticks(closeGrace)
	l.now = s.ticksNow()
	l.wheel.cur = l.now
	l.tickTask = gnet.RunnableFunc(func(context.Context) error {
		l.tickQueued.Store(false)
		l.onTick()
		return nil
	})
	return l
}

// onTick advances the wheel: handshake timeouts, pings, idle timeouts and
// close grace periods that are due.
func (l *eventLoop) onTick() {
	l.now = l.srv.ticksNow()
	l.wheel.advance(l.now, l.expire)
	l.engine.Tick()
}

// expire handles a connection whose deadline came; it re-arms it when
// activity moved its real deadline.
func (l *eventLoop) expire(cs *conn) {
	switch cs.state {
	case stateHTTP:
		if due := cs.since + l.handshakeTicks; due > l.now {
			l.wheel.add(cs, due)
			return
		}
		if unreadBytes(cs.fd) > 0 {
			// Bytes wait in the socket that this loop, busy with other
			// events (an accept storm), has not read yet: the loop is
			// behind, not the client, whose bytes are read as they come
			// when the loop keeps up. Look again each tick, for at most
			// closeGrace (2 s) past the deadline, even with a shorter
			// HandshakeTimeout: a starved loop (a reconnect storm on a
			// busy node) must not close clients that did nothing wrong.
			// Then it is closed anyway.
			if cs.closeBy == 0 {
				cs.closeBy = l.now + l.behindTicks
			}
			if l.now < cs.closeBy {
				l.wheel.add(cs, l.now+1)
				return
			}
		}
		cs.setReason(closeHandshakeTimeout)
		_ = l.el.Close(cs.gc)
	case stateOpen:
		if cs.goAway {
			cs.closeWith(closeGoingAway)
			return
		}
		if l.now-cs.seen >= l.idleTicks && unreadBytes(cs.fd) > 0 {
			// The peer did send (a pong, say) but this loop, busy, has
			// not read it yet: not idle.
			cs.seen = l.now
		}
		if l.now-cs.seen >= l.idleTicks {
			cs.setReason(closeIdle)
			_ = l.el.Close(cs.gc)
			return
		}
		if cs.sess != nil && !cs.sess.expireAt.IsZero() && time.Now().After(cs.sess.expireAt) {
			l.scratch = frame.AppendClose(l.scratch[:0], statusExpired, "session expired (the connect hook's expire_at)")
			cs.startClose(closeExpired, l.scratch)
			return
		}
		if l.now >= cs.nextPing {
			cs.nextPing = l.now + l.pingTicks
			if !cs.member.Send(pingFrame) || cs.state != stateOpen {
				return // closed: as a slow consumer, or by a failed write
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
	case stateHooking:
		// The connect hook answers within HookTimeout; this is the
		// handshake deadline, for a hook slower than the handshake.
		if due := cs.since + l.handshakeTicks; due > l.now {
			l.wheel.add(cs, due)
			return
		}
		cs.setReason(closeHandshakeTimeout)
		_ = l.el.Close(cs.gc)
	}
}

// closeSessions closes every loopcast.v1 session of the loop with r's
// close frame.
func (l *eventLoop) closeSessions(r closeReason) {
	var v1 []*conn
	for _, head := range l.wheel.slots {
		for cs := head; cs != nil; cs = cs.wnext {
			if cs.state == stateOpen && cs.v1 {
				v1 = append(v1, cs)
			}
		}
	}
	for _, cs := range v1 {
		cs.closeWith(r)
	}
}

// goAway closes every WebSocket of the loop with 1001, each at a random
// moment within spread (jitter), so clients reconnect elsewhere gradually.
func (l *eventLoop) goAway(spread time.Duration) {
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
