package server

import (
	"errors"
	"slices"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/loopcast/loopcast/server/internal/command"
	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/frame"
)

// maxMessage is the largest data message a session accepts: MaxMessage,
// and in loopcast.v1 a pub's line on top of MaxMessage of payload.
func (cs *conn) maxMessage() int64 {
	m := int64(cs.loop.srv.cfg.MaxMessage)
	if cs.v1 {
		m += command.MaxLine + 1
	}
	return m
}

// Errors of commands the parser cannot see (publishing's are in
// publish.go, shared by every door).
var (
	errAlreadySubscribed    = &command.Error{Code: command.CodeAlreadySubscribed, Reason: "already subscribed to this room"}
	errNotSubscribed        = &command.Error{Code: command.CodeNotSubscribed, Reason: "not subscribed to this room"}
	errTooManySubscriptions = &command.Error{Code: command.CodeTooManySubscriptions, Reason: "subscriptions over max-subscriptions"}
	errTooManyRooms         = &command.Error{Code: command.CodeTooManyRooms, Reason: "rooms over max-rooms"}
	errSubForbidden         = &command.Error{Code: command.CodeForbidden, Reason: "the token's rooms claim does not allow this room"}
	errSubRateLimited       = &command.Error{Code: command.CodeRateLimited, Reason: "sub, unsub, occupancy, watch and unwatch over subscribe-rate"}
	errOffsetAhead          = &command.Error{Code: command.CodeOffsetAhead, Reason: "offset is ahead of the room's offset in this epoch"}
	errNotReady             = &command.Error{Code: command.CodeUnavailable, Reason: "this instance has not reached the cluster log yet: subscribe again, or on another instance"}
)

// command handles one data message of a loopcast.v1 session. payload is
// only valid during the call.
func (cs *conn) command(op ws.OpCode, payload []byte) gnet.Action {
	c, perr := command.Parse(payload)
	if perr != nil {
		cs.refuse(c.ID, perr)
		return gnet.None
	}
	switch c.Op {
	case command.OpSub:
		var resume *fanout.Resume
		if c.Resume {
			resume = &fanout.Resume{Epoch: c.Epoch, Offset: c.Offset}
		}
		if !cs.allowSubscribe(cs.loop.nowNs) {
			cs.refuse(c.ID, errSubRateLimited)
			return gnet.None
		}
		cs.subscribe(c.ID, c.Room, resume)
	case command.OpUnsub:
		if !cs.allowSubscribe(cs.loop.nowNs) {
			cs.refuse(c.ID, errSubRateLimited)
			return gnet.None
		}
		s := cs.member.Sub(c.Room)
		if s == nil {
			cs.refuse(c.ID, errNotSubscribed)
			return gnet.None
		}
		s.Unsubscribe() // the room's frames delivered so far leave first
		cs.leavePresence(string(c.Room))
		cs.reply(command.AppendUnsubscribed(cs.loop.scratch[:0], c.ID, c.Room))
	case command.OpPub:
		cs.publish(op, c)
	case command.OpOccupancy, command.OpPresence, command.OpWatch, command.OpUnwatch:
		if !cs.allowSubscribe(cs.loop.nowNs) {
			cs.refuse(c.ID, errSubRateLimited)
			return gnet.None
		}
		switch {
		case c.Op == command.OpOccupancy:
			cs.occupancyCommand(c)
		case c.Op == command.OpPresence:
			cs.presenceCommand(c)
		case c.Op == command.OpWatch && c.What == command.WhatPresence:
			cs.watchPresence(c)
		case c.Op == command.OpWatch:
			cs.watch(c)
		case c.What == command.WhatPresence:
			cs.unwatchPresence(c)
		default:
			cs.unwatch(c)
		}
	}
	return gnet.None
}

// subscribe starts a subscription; the reply comes through Subscribed.
func (cs *conn) subscribe(id uint32, room []byte, resume *fanout.Resume) {
	cs.subscribeAs(id, room, resume, false)
}

// subscribeAs is subscribe; byToken says the token's subs claim asks
// (its rooms claim does not apply).
func (cs *conn) subscribeAs(id uint32, room []byte, resume *fanout.Resume, byToken bool) {
	l := cs.loop
	pending := 0
	if cs.sess != nil {
		pending = len(cs.sess.pendingSubs)
	}
	switch {
	case cs.member.Sub(room) != nil || pending > 0 && slices.Contains(cs.sess.pendingSubs, string(room)):
		cs.refuse(id, errAlreadySubscribed)
		return
	case len(cs.member.Subs())+pending >= l.srv.cfg.MaxSubscriptions:
		cs.refuse(id, errTooManySubscriptions)
		return
	case !byToken && !cs.sess.maySubscribe(room):
		cs.refuse(id, errSubForbidden)
		return
	case cs.listedIn(room) && len(cs.sess.present) >= l.srv.cfg.PresenceMaxRooms:
		cs.refuse(id, errTooManyPresenceRooms)
		return
	}
	if l.srv.hooks.subscribe != nil && !byToken {
		cs.subscribeViaHook(id, room, resume)
		return
	}
	cs.place(id, room, resume)
}

// place starts a subscription the checks (and the subscribe hook)
// allowed; the reply comes through Subscribed.
func (cs *conn) place(id uint32, room []byte, resume *fanout.Resume) {
	if _, err := cs.member.Subscribe(room, laneKind(fanout.Framed, cs.deflate), resume, id); err != nil {
		cs.refuse(id, errTooManyRooms)
		return
	}
	cs.loop.stats.subscribes.Add(1)
}

// Subscribed implements fanout.Conn: the owner placed the subscription
// in the room's order. The reply goes out before the replay and the
// live messages.
func (cs *conn) Subscribed(s *fanout.Sub, res fanout.JoinResult) {
	l := cs.loop
	r := s.Room()
	switch {
	case errors.Is(res.Err, fanout.ErrOffsetAhead):
		cs.refuse(res.Tag, errOffsetAhead)
		return
	case errors.Is(res.Err, fanout.ErrNotReady):
		cs.refuse(res.Tag, errNotReady)
		return
	}
	status := command.StatusLive
	switch {
	case !res.Resumed:
	case res.Recovered():
		status = command.StatusRecovered
		l.stats.resumes[resumeRecovered].Add(1)
	case res.Why == fanout.EpochChanged:
		status = command.StatusEpochChanged
		l.stats.resumes[resumeEpochChanged].Add(1)
	default:
		status = command.StatusHistoryPassed
		l.stats.resumes[resumeHistoryPassed].Add(1)
	}
	cs.reply(command.AppendSubscribed(l.scratch[:0], res.Tag, r.Name(), res.Epoch, res.Offset, status))
	cs.joinPresence(r.Name())
}

// publish handles a pub command: the v1 door onto the one publishing
// path (publish.go).
func (cs *conn) publish(op ws.OpCode, c command.Command) {
	l := cs.loop
	if perr := l.srv.mayPublish(publisher{member: cs, checked: true}, c.Room, MessageType(op), c.Body, c.MsgID); perr != nil {
		cs.refuse(c.ID, perr.v1)
		return
	}
	if l.srv.hooks.publish != nil {
		cs.publishViaHook(hookedPublish{id: c.ID, op: op, room: string(c.Room), body: c.Body, key: string(c.MsgID)})
		return
	}
	var r *fanout.Room
	if s := cs.member.Sub(c.Room); s != nil {
		r = s.Room() // no registry lookup
	}
	p := fanout.Publication{Op: byte(op), Payload: c.Body}
	if c.MsgID != nil {
		p.Key = string(c.MsgID)
	}
	// Every pub is answered: an ack, or an err (id 0: only the err).
	// Without the log an id 0 asks for nothing: the owner loop refuses
	// nothing later.
	a := fanout.Ack{Member: &cs.member, ID: c.ID}
	if c.ID == 0 && l.srv.clog == nil {
		a = fanout.Ack{}
	}
	if perr := l.srv.route(l, c.Room, r, p, a); perr != nil {
		cs.refuse(c.ID, perr.v1)
	}
}

// Published implements fanout.Conn: the answer to a pub, once the room's
// owner or the cluster log placed it (a duplicate msgid: the first one's
// place), or why it was not published.
func (cs *conn) Published(id uint32, a fanout.Answer) {
	if cs.state != stateOpen {
		return
	}
	if perr := answerError(a.Err); perr != nil {
		cs.refuse(id, perr.v1)
		return
	}
	if id != 0 {
		cs.reply(command.AppendPublished(cs.loop.scratch[:0], id, a.Room, a.Epoch, a.Offset))
	}
}

// refuse sends an "err" reply for command id and counts it by code.
func (cs *conn) refuse(id uint32, e *command.Error) {
	cs.loop.stats.countCommandError(e.Code)
	cs.reply(command.AppendError(cs.loop.scratch[:0], id, e))
}

// reply sends p, built in the loop's scratch buffer, as a text frame
// (or the connection is closed as a slow consumer).
func (cs *conn) reply(p []byte) {
	if cs.state != stateOpen {
		return
	}
	l := cs.loop
	n := len(p)
	// Move the reply up to make room for the frame header in front.
	var head [frame.MaxHeaderLen]byte
	h := frame.AppendHeader(head[:0], true, ws.OpText, n)
	l.scratch = append(p, h...) // grow if needed
	copy(l.scratch[len(h):], l.scratch[:n])
	copy(l.scratch, h)
	cs.member.Send(l.scratch[:len(h)+n])
}

// allowSubscribe applies Config.SubscribeRate to one sub or unsub at now
// (ns since start), as allowPublish does, in a bucket of
// MaxSubscriptions.
func (cs *conn) allowSubscribe(now int64) bool {
	return gcra(&cs.subscribeAt, now, cs.loop.subscribeInterval, cs.loop.subscribeTolerance)
}
