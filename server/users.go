package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/loopcast/loopcast/server/internal/command"
	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/frame"
	occ "github.com/loopcast/loopcast/server/internal/occupancy"
)

// Users: every connection whose token names a user (its sub claim) is
// indexed by it on its loop, so the admin API and the Go API can act on
// a user's connections: disconnect them, subscribe them to a room or
// unsubscribe them from one. Each loop acts on its own connections (a
// task per loop); across instances the action is shared like occupancy
// batches (every instance acts on its own), at most once.

// DefaultDisconnectCode is the close code of DisconnectUser without one:
// a private-use code (RFC 6455 §7.4.2) the clients reconnect after; to
// keep a user out, also stop signing its tokens.
const DefaultDisconnectCode = 4000

// ErrBadCloseCode refuses a disconnect's close code.
var ErrBadCloseCode = errors.New("close code: want 1000, 1008, or 4000 to 4999")

// maxCloseReason is the longest close reason (a close frame's payload is
// at most 125 bytes, 2 of them the code).
const maxCloseReason = 123

// occMaxUser is the longest user id (a token's sub).
const occMaxUser = occ.MaxUser

// indexUser adds cs to its loop's index when its token names a user.
func (cs *conn) indexUser() {
	if cs.sess == nil || cs.sess.user == "" {
		return
	}
	l := cs.loop
	if l.users == nil {
		l.users = map[string][]*conn{}
	}
	l.users[cs.sess.user] = append(l.users[cs.sess.user], cs)
}

// unindexUser takes a closing connection out of the index.
func (cs *conn) unindexUser() {
	if cs.sess == nil || cs.sess.user == "" {
		return
	}
	l := cs.loop
	list := l.users[cs.sess.user]
	for i, c := range list {
		if c == cs {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			break
		}
	}
	if len(list) == 0 {
		delete(l.users, cs.sess.user)
	} else {
		l.users[cs.sess.user] = list
	}
}

// userAction is what to do to a user's connections.
type userAction struct {
	op     byte // actDisconnect, actSubscribe, actUnsubscribe
	user   string
	room   string
	code   ws.StatusCode
	reason string
}

const (
	actDisconnect     = 'd'
	actSubscribe      = 's'
	actUnsubscribe    = 'u'
	actDisconnectConn = 'c' // user holds the connection's id
)

// connID names a connection: this instance's id, its loop and its number
// there ("3f9c0a71d2e4b865-1-42").
func connID(instance uint64, loop int, seq uint64) string {
	return fmt.Sprintf("%016x-%d-%d", instance, loop, seq)
}

// parseConnID reverses connID.
func parseConnID(id string) (instance uint64, loop int, seq uint64, ok bool) {
	parts := strings.Split(id, "-")
	if len(parts) != 3 || len(parts[0]) != 16 {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	instance, err1 = strconv.ParseUint(parts[0], 16, 64)
	loop, err2 = strconv.Atoi(parts[1])
	seq, err3 = strconv.ParseUint(parts[2], 10, 64)
	return instance, loop, seq, err1 == nil && err2 == nil && err3 == nil && loop >= 0 && seq > 0
}

// ErrNoConnection: DisconnectConnection's id names no connection.
var ErrNoConnection = errors.New("connection id: not a connection the connect hook named (instance-loop-number)")

// DisconnectConnection closes the connection id names (the connect
// hook's "connection"), on whichever instance holds it, with code and
// reason as DisconnectUser. It reports whether this instance held it
// (false for another instance's: asked over the cluster).
func (s *Server) DisconnectConnection(id string, code int, reason string) (bool, error) {
	if code == 0 {
		code = DefaultDisconnectCode
	}
	if code != 1000 && code != 1008 && (code < 4000 || code > 4999) {
		return false, ErrBadCloseCode
	}
	if len(reason) > maxCloseReason {
		return false, fmt.Errorf("close reason: at most %d bytes", maxCloseReason)
	}
	inst, _, _, ok := parseConnID(id)
	if !ok {
		return false, ErrNoConnection
	}
	act := userAction{op: actDisconnectConn, user: id, code: ws.StatusCode(code), reason: reason}
	if inst != s.occ.table.Self {
		_, err := s.userAct(act)
		return false, err
	}
	return s.onEveryLoop(act) > 0, nil
}

// onEveryLoop runs act on every loop's connections of its user and
// returns how many it acted on. It waits for the loops, not for a server
// that stops meanwhile (a stopping engine drops queued tasks). Never call
// it from an event loop.
func (s *Server) onEveryLoop(act userAction) int {
	var mu sync.Mutex
	n := 0
	done := make(chan struct{}, len(s.loopList()))
	queued := 0
	for _, l := range s.loopList() {
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			k := l.act(act)
			mu.Lock()
			n += k
			mu.Unlock()
			done <- struct{}{}
			return nil
		}))
		if err == nil {
			queued++
		}
	}
wait:
	for range queued {
		select {
		case <-done:
		case <-s.done:
			break wait
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return n
}

// act does act to this loop's connections of its user.
func (l *eventLoop) act(act userAction) int {
	if act.op == actDisconnectConn {
		inst, loop, seq, ok := parseConnID(act.user)
		cs := l.byID[seq]
		if !ok || inst != l.srv.occ.table.Self || loop != l.idx || cs == nil || cs.state != stateOpen {
			return 0
		}
		l.scratch = frame.AppendClose(l.scratch[:0], act.code, act.reason)
		cs.startClose(closeDisconnected, l.scratch)
		return 1
	}
	list := append([]*conn(nil), l.users[act.user]...) // closing changes the index
	n := 0
	for _, cs := range list {
		if cs.state != stateOpen {
			continue
		}
		switch act.op {
		case actDisconnect:
			l.scratch = frame.AppendClose(l.scratch[:0], act.code, act.reason)
			cs.startClose(closeDisconnected, l.scratch)
		case actUnsubscribe:
			s := cs.member.Sub([]byte(act.room))
			if s == nil {
				if !cs.unsubscribePending(act.room) {
					continue
				}
				break // counted: its sub will not be placed
			}
			if !cs.v1 {
				// A raw member has one room: leaving it is leaving.
				l.scratch = frame.AppendClose(l.scratch[:0], DefaultDisconnectCode, "unsubscribed by the server")
				cs.startClose(closeDisconnected, l.scratch)
				break
			}
			s.Unsubscribe()
			cs.leavePresence(act.room)
			cs.reply(command.AppendUnsubscribed(l.scratch[:0], 0, []byte(act.room)))
		case actSubscribe:
			if !cs.v1 || cs.member.Sub([]byte(act.room)) != nil || len(cs.member.Subs()) >= l.srv.cfg.MaxSubscriptions ||
				cs.sess != nil && slices.Contains(cs.sess.pendingSubs, act.room) {
				continue // subscribed, or about to be (the subscribe hook is asked)
			}
			if _, err := cs.member.Subscribe([]byte(act.room), laneKind(fanout.Framed, cs.deflate), nil, 0); err != nil {
				continue
			}
			l.stats.subscribes.Add(1)
		}
		n++
	}
	return n
}

// DisconnectUser closes every connection of user (its token's sub) on
// this instance, and asks the other instances to do the same, with code
// (0: DefaultDisconnectCode; 1000, 1008 or 4000-4999) and reason (at
// most 123 bytes). It returns the connections closed here.
func (s *Server) DisconnectUser(user string, code int, reason string) (int, error) {
	if code == 0 {
		code = DefaultDisconnectCode
	}
	if code != 1000 && code != 1008 && (code < 4000 || code > 4999) {
		return 0, ErrBadCloseCode
	}
	if len(reason) > maxCloseReason {
		return 0, fmt.Errorf("close reason: at most %d bytes", maxCloseReason)
	}
	return s.userAct(userAction{op: actDisconnect, user: user, code: ws.StatusCode(code), reason: reason})
}

// SubscribeUser subscribes every loopcast.v1 connection of user to room,
// as a sub with id 0 would (the reply says "sub 0 …"), on this instance
// and the others. For these connections only: it does not survive a
// reconnect (put the room in the token's subs claim for that). It
// returns the connections subscribed here.
func (s *Server) SubscribeUser(user, room string) (int, error) {
	if !command.ValidRoom([]byte(room)) {
		return 0, ErrBadRoom
	}
	return s.userAct(userAction{op: actSubscribe, user: user, room: room})
}

// UnsubscribeUser ends every subscription of user's connections to room
// (loopcast.v1: the reply "unsub 0 <room>"; a raw member of the room is
// disconnected), on this instance and the others. It returns the
// connections unsubscribed here.
func (s *Server) UnsubscribeUser(user, room string) (int, error) {
	if !command.ValidRoom([]byte(room)) {
		return 0, ErrBadRoom
	}
	return s.userAct(userAction{op: actUnsubscribe, user: user, room: room})
}

// userAct does act here and shares it with the other instances.
func (s *Server) userAct(act userAction) (int, error) {
	if act.user == "" {
		return 0, errors.New("user: empty")
	}
	if s.occ.sharer != nil {
		if err := s.occ.sharer.Share(appendUserActionFrom(nil, s.occ.table.Self, act)); err != nil {
			s.log.Warn("user action not shared with the other instances (NATS away): done on this instance only", "op", string(act.op), "user", act.user, "err", err)
		}
	}
	return s.onEveryLoop(act), nil
}

// A user action shared with the other instances (bus.Sharer): the byte
// 'U', the version 1, then uvarints and length-prefixed strings: the
// sender's instance id, the op, the user, the room, the close code and
// the reason.
const (
	userActionKind    = 'U'
	userActionVersion = 1
)

var errBadUserAction = errors.New("user action: malformed")

func appendUserActionFrom(dst []byte, from uint64, act userAction) []byte {
	dst = append(dst, userActionKind, userActionVersion)
	dst = binary.AppendUvarint(dst, from)
	dst = append(dst, act.op)
	for _, f := range []string{act.user, act.room, act.reason} {
		dst = binary.AppendUvarint(dst, uint64(len(f)))
		dst = append(dst, f...)
	}
	return binary.AppendUvarint(dst, uint64(act.code))
}

// parseUserAction reverses appendUserActionFrom, checking every field.
func parseUserAction(b []byte) (from uint64, act userAction, err error) {
	if len(b) < 2 || b[0] != userActionKind || b[1] != userActionVersion {
		return 0, act, errBadUserAction
	}
	b = b[2:]
	from, n := binary.Uvarint(b)
	if n <= 0 || len(b) < n+1 {
		return 0, act, errBadUserAction
	}
	act.op, b = b[n], b[n+1:]
	var fields [3]string
	for i, max := range [3]int{occMaxUser, command.MaxRoom, maxCloseReason} {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(max) || uint64(len(b)-n) < l {
			return 0, act, errBadUserAction
		}
		fields[i], b = string(b[n:n+int(l)]), b[n+int(l):]
	}
	act.user, act.room, act.reason = fields[0], fields[1], fields[2]
	code, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) || code > 4999 {
		return 0, act, errBadUserAction
	}
	act.code = ws.StatusCode(code)
	switch {
	case act.user == "":
		return 0, act, errBadUserAction
	case (act.op == actDisconnect || act.op == actDisconnectConn) && (code != 1000 && code != 1008 && (code < 4000 || code > 4999)):
		return 0, act, errBadUserAction
	case (act.op == actSubscribe || act.op == actUnsubscribe) && !command.ValidRoom([]byte(act.room)):
		return 0, act, errBadUserAction
	case act.op != actDisconnect && act.op != actSubscribe && act.op != actUnsubscribe && act.op != actDisconnectConn:
		return 0, act, errBadUserAction
	}
	return from, act, nil
}
