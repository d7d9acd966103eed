package server

import (
	"context"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// handler is the gnet event handler: the server's front door. Its
// callbacks run on the event loops (OnTick on gnet's ticker goroutine)
// and are not part of the Server's API.
type handler struct {
	gnet.BuiltinEventEngine
	s *Server
}

// OnBoot records the engine and the bound address.
func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	s := h.s
	s.gnet = eng
	fd, err := eng.Dup()
	if err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			s.addr = sockaddrToTCP(sa)
		}
		_ = unix.Close(fd)
	}
	close(s.booted)
	return gnet.None
}

func sockaddrToTCP(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return nil
}

// OnTick asks every loop to advance its timing wheel. It runs on gnet's
// ticker goroutine, so the work is handed to the loops.
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	s := h.s
	for _, l := range s.loopList() {
		if l.tickQueued.CompareAndSwap(false, true) {
			if err := l.el.Execute(context.Background(), l.tickTask); err != nil {
				l.tickQueued.Store(false)
			}
		}
	}
	return s.tick, gnet.None
}

// OnOpen gives a new connection its state and its handshake deadline,
// or, beyond the connection budget, a 503 and an immediate close: it runs
// in the loop turn that accepted the connection (every loop accepts on
// its own listener), so the descriptors connections hold never pass the
// budget by more than one per loop (fdbudget.go).
func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	s := h.s
	l := s.loopFor(c.EventLoop())
	l.stats.accepted.Add(1)
	if s.open.Add(1) > int64(s.connBudget) {
		s.open.Add(-1)
		l.stats.closes[closeOverCapacity].Add(1)
		return rejOverCapacity.resp, gnet.Close
	}
	l.now = s.ticksNow() // a busy loop's last tick may be long past
	cs := &conn{gc: c, fd: c.Fd(), loop: l, since: l.now, wslot: -1}
	cs.member.Init(l.engine, cs)
	c.SetContext(cs)
	l.stats.conns.Add(1)
	l.wheel.add(cs, l.now+l.handshakeTicks)
	return nil, gnet.None
}

// OnClose releases a connection's state and counts why it closed.
func (h *handler) OnClose(c gnet.Conn, _ error) gnet.Action {
	cs, ok := c.Context().(*conn)
	if !ok || cs.state == stateClosed {
		return gnet.None
	}
	l := cs.loop
	r := cs.reason
	if !cs.hasReason {
		r = closeHTTP
		if cs.state == stateOpen {
			r = closeGone
		}
	}
	l.stats.closes[r].Add(1)
	if cs.state == stateOpen || cs.state == stateClosing {
		l.stats.websockets.Add(-1)
		h.s.admit.release(cs.ip)
	}
	if cs.state == stateHooking {
		h.s.admit.release(cs.ip) // admitted, never upgraded
	}
	cs.member.Release() // out of its room; its unwritten frames go with it
	cs.stopWatchingAll()
	cs.leaveAllPresence()
	cs.dropHookedPublishes()
	cs.unindexUser()
	if cs.sess != nil && cs.sess.connSeq != 0 {
		delete(l.byID, cs.sess.connSeq)
	}
	cs.dropMessage()
	l.wheel.remove(cs)
	cs.state = stateClosed
	l.stats.conns.Add(-1)
	h.s.open.Add(-1)
	return gnet.None
}

// OnTraffic serves whatever the connection's state expects. Output is
// written when the poll cycle ends (the engine schedules it).
func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	cs := c.Context().(*conn)
	// Timestamps taken below (request start, last activity) must not
	// lag: on a busy loop the tick that advances now may be queued
	// behind this read. One monotonic clock read per read event.
	l := cs.loop
	l.nowNs = int64(time.Since(h.s.start))
	l.now = l.nowNs / int64(h.s.tick)
	for {
		switch cs.state {
		case stateHTTP:
			if a := cs.serveHTTP(); a != gnet.None || cs.state == stateHTTP {
				return a
			}
			// Upgraded: frames may follow the head in the same read.
		case stateOpen, stateClosing:
			return cs.serveFrames()
		case stateHooking:
			// Waiting for the connect hook: what the client sends stays
			// buffered (a client waits for the 101), within a head's size.
			if c.InboundBuffered() > MaxHeadBytes {
				cs.setReason(closeHTTP)
				return gnet.Close
			}
			return gnet.None
		default: // lingering or closed: drop input
			_, _ = c.Discard(-1)
			return gnet.None
		}
	}
}
