package server

import (
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/reqhead"
)

// serveHTTP answers the request heads buffered on an HTTP connection:
// health responses (kept alive as HTTP/1.x allows, pipelined requests
// answered in order), rejections, or the 101 that turns the connection
// into a WebSocket. It returns with state still stateHTTP when it needs
// more bytes.
func (cs *conn) serveHTTP() gnet.Action {
	c, l := cs.gc, cs.loop
	for cs.state == stateHTTP {
		avail := c.InboundBuffered()
		if avail == 0 {
			return gnet.None
		}
		b, _ := c.Peek(min(avail, MaxHeadBytes+1))
		var h reqhead.Head
		switch err := reqhead.Parse(b, MaxHeadBytes, &h); err {
		case nil:
		case reqhead.ErrIncomplete:
			return gnet.None
		case reqhead.ErrTooLarge:
			return cs.reject(rejHeadTooLarge)
		case reqhead.ErrHost:
			// An invalid Host: 400 and close (RFC 9112 §3.2), for health
			// requests as for upgrades. A missing or repeated Host is
			// caught by the parser too (ErrNoHost, ErrDuplicate).
			return cs.reject(rejHost)
		default:
			return cs.reject(parseRejections[err.(*reqhead.Error)])
		}

		get, head := string(h.Method) == "GET", string(h.Method) == "HEAD"
		if !get && !head {
			return cs.reject(rejMethod)
		}
		if isUpgradeAttempt(&h) {
			t, rej := l.srv.checkUpgrade(&h)
			if rej == rejOrigin {
				return cs.rejectOrigin(h.Origin)
			}
			if rej != nil {
				return cs.reject(rej)
			}
			if h.ContentLength > 0 || h.Chunked {
				return cs.reject(rejBody)
			}
			ip := l.srv.admit.clientIP(c.RemoteAddr(), &h)
			if rej := l.srv.admit.admit(ip); rej != nil {
				return cs.reject(rej)
			}
			cs.ip = ip
			if hs := l.srv.hooks; hs.connect != nil || hs.subscribe != nil && !t.v1 && !t.echo {
				return cs.awaitHooks(&h, t, b[:h.Len])
			}
			return cs.upgrade(&h, t)
		}

		// Health responder: every other GET or HEAD. /livez stays 200
		// while draining (liveness); everything else reports readiness.
		readiness := readyState
		switch {
		case string(h.Path) == "/livez":
		case l.srv.draining.Load():
			readiness = drainingState
		case l.srv.clog != nil && !l.srv.clog.Ready():
			readiness = notReadyState // the cluster log not caught up yet
		}
		headOnly := 0
		if head {
			headOnly = 1
		}
		mode := keepAlive11
		keep := h.KeepAlive() && h.ContentLength <= 0 && !h.Chunked
		switch {
		case !keep:
			mode = closeAfter
		case h.Minor == 0:
			mode = keepAlive10
		}
		l.stats.health.Add(1) // before the write: a reader of Stats after the answer sees it
		// A client that pipelines requests and never reads the answers
		// would have them queued without bound (gnet keeps reading): the
		// slow-consumer rule closes it instead.
		if p := l.srv.pages[string(h.Path)]; p != nil && readiness == readyState {
			cs.member.Send(p[headOnly][mode])
		} else if d, ok := l.srv.dynPages[string(h.Path)]; ok && readiness == readyState {
			cs.member.Send(dynamicResponse(d, h.Query, head, mode))
		} else {
			cs.member.Send(healthResponses[readiness][headOnly][mode])
		}
		if cs.state != stateHTTP {
			return gnet.None // closed: as a slow consumer, or by a failed write
		}
		_, _ = c.Discard(h.Len)
		if !keep {
			return cs.linger()
		}
		cs.since, cs.closeBy = l.now, 0 // the next request gets its own timeout
	}
	return gnet.None
}

// rejHost answers reqhead.ErrHost, whose reason names the rule broken.
var rejHost = newRejection(reqhead.ErrHost.Status, reqhead.ErrHost.Reason, "")

// reject answers with rej and closes the connection.
func (cs *conn) reject(rej *rejection) gnet.Action {
	cs.loop.stats.rejected.Add(1)
	cs.loop.stats.rejects[rej.idx].Add(1)
	cs.member.Send(rej.resp)
	if cs.state != stateHTTP {
		return gnet.None
	}
	return cs.linger()
}

// rejectOrigin answers 403 to an upgrade whose Origin is not allowed,
// saying which Origin it received (or that it had none), and closes.
func (cs *conn) rejectOrigin(origin []byte) gnet.Action {
	l := cs.loop
	l.stats.rejected.Add(1)
	l.stats.rejects[rejOrigin.idx].Add(1)
	l.scratch = appendOriginRejection(l.scratch[:0], origin)
	cs.member.Send(l.scratch)
	if cs.state != stateHTTP {
		return gnet.None
	}
	return cs.linger()
}

// linger closes an HTTP connection after its last answer. Closing a
// socket with unread input makes the kernel send RST, which can destroy
// the answer in flight; so unless the input is fully read, the server
// shuts down its sending side and drops the peer's bytes until the peer
// closes or closeGrace passes.
func (cs *conn) linger() gnet.Action {
	c, l := cs.gc, cs.loop
	_, _ = c.Discard(-1)
	if c.OutboundBuffered() == 0 {
		_ = unix.Shutdown(c.Fd(), unix.SHUT_WR)
	}
	cs.state = stateLinger
	l.wheel.add(cs, l.now+l.closeGraceTicks)
	return gnet.None
}

// upgrade completes a valid handshake: it writes 101 and makes the
// connection a WebSocket of its target.
func (cs *conn) upgrade(h *reqhead.Head, t target) gnet.Action {
	c, l := cs.gc, cs.loop
	l.scratch = appendSwitching(l.scratch[:0], h.Key, t)
	if !cs.member.Admit(len(l.scratch)) {
		l.srv.admit.release(cs.ip)
		return gnet.None // closed as a slow consumer, before it became a WebSocket
	}
	if !t.echo && !t.v1 && !cs.member.Join(t.room, laneKind(fanout.Raw, t.deflate)) { // copies the name when it creates the room
		l.srv.admit.release(cs.ip)
		return cs.reject(rejRoomsFull)
	}
	// Become a WebSocket (and count it) before the 101 leaves, so that
	// whoever sees the 101 sees the counters move, and a failed write
	// is cleaned up by OnClose like any session.
	cs.state = stateOpen
	cs.echo, cs.v1, cs.sess, cs.deflate = t.echo, t.v1, t.sess, t.deflate
	l.stats.upgrades.Add(1)
	l.stats.websockets.Add(1)
	cs.seen = l.now
	cs.nextPing = l.now + l.pingTicks
	l.wheel.add(cs, cs.nextPing)
	cs.member.Queue(l.scratch) // admitted above
	if cs.state == stateClosed {
		return gnet.None
	}
	cs.indexUser()
	if !t.echo && !t.v1 {
		cs.joinPresence(string(t.room)) // a raw member is listed as a v1 subscriber is
	}
	if t.v1 && cs.sess != nil {
		// The token's personal rooms, subscribed as by "sub 0 {room}"
		// (resumed from ?since= when the client says where it was).
		for _, room := range cs.sess.subs {
			var resume *fanout.Resume
			if r, ok := t.since[room]; ok {
				resume = &r
			}
			cs.subscribeAs(0, []byte(room), resume, true)
		}
	}
	if t.v1 && t.room != nil {
		// /ws/{room} in loopcast.v1: subscribed as by "sub 0 {room}"
		// (t.room aliases the request: before the Discard).
		cs.subscribe(0, t.room, nil)
	}
	_, _ = c.Discard(h.Len)
	return gnet.None
}
