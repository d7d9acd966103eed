package server

import (
	"context"
	"slices"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/loopcast/loopcast/server/internal/command"
)

// Errors of presence.
var (
	errPresenceOff          = &command.Error{Code: command.CodePresenceOff, Reason: "this room lists no users: it is not one of presence-rooms"}
	errTooManyPresenceRooms = &command.Error{Code: command.CodeTooManyPresenceRooms, Reason: "listed in presence-max-rooms presence rooms already"}
	errAlreadyWatchingPres  = &command.Error{Code: command.CodeAlreadyWatching, Reason: "already watching this room's presence"}
	errNotWatchingPres      = &command.Error{Code: command.CodeNotWatching, Reason: "not watching this room's presence"}
	errPresenceBusy         = &command.Error{Code: command.CodeUnavailable, Reason: "too many presence lists being built: ask again shortly"}
)

// listedIn reports whether a subscription to room lists the connection
// in its presence: a presence room, and a user to list.
func (cs *conn) listedIn(room []byte) bool {
	return cs.sess != nil && cs.sess.user != "" && cs.loop.srv.isPresenceRoom(room)
}

// joinPresence lists the connection in room, when it is a presence room
// and the connection has a user (after its subscription was placed).
func (cs *conn) joinPresence(room string) {
	if !cs.listedIn([]byte(room)) || slices.Contains(cs.sess.present, room) {
		return
	}
	cs.sess.present = append(cs.sess.present, room)
	cs.loop.srv.pres.join(room, cs.sess.user, cs.sess.info)
}

// leavePresence takes the connection off room's list.
func (cs *conn) leavePresence(room string) {
	if cs.sess == nil {
		return
	}
	i := slices.Index(cs.sess.present, room)
	if i < 0 {
		return
	}
	cs.sess.present = slices.Delete(cs.sess.present, i, i+1)
	cs.loop.srv.pres.leave(room, cs.sess.user, time.Now().UnixNano())
}

// leaveAllPresence ends a closing connection's presence and presence
// watches.
func (cs *conn) leaveAllPresence() {
	if cs.sess == nil {
		return
	}
	for len(cs.sess.present) > 0 {
		cs.leavePresence(cs.sess.present[len(cs.sess.present)-1])
	}
	for len(cs.sess.presenceWatching) > 0 {
		cs.stopWatchingPresence(cs.sess.presenceWatching[len(cs.sess.presenceWatching)-1])
	}
}

// presenceCommand answers "presence <id> <room>": its users on every
// instance (at most PresenceMaxList, sorted by user) and their total.
func (cs *conn) presenceCommand(c command.Command) {
	l := cs.loop
	switch {
	case !cs.sess.maySubscribe(c.Room):
		cs.refuse(c.ID, errWatchForbidden)
		return
	case !l.srv.isPresenceRoom(c.Room):
		cs.refuse(c.ID, errPresenceOff)
		return
	}
	// Listing a large room (and sorting it) is work for a goroutine: the
	// reply comes back to the loop as a task; at most presenceListers
	// lists are built at once.
	p := l.srv.pres
	select {
	case p.listers <- struct{}{}:
	default:
		cs.refuse(c.ID, errPresenceBusy)
		return
	}
	id, room := c.ID, string(c.Room)
	go func() {
		defer func() { <-p.listers }()
		reply := appendPresenceReply(nil, "presence", id, []byte(room), p.list(room), l.srv.cfg.PresenceMaxList)
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			cs.reply(reply)
			return nil
		}))
	}()
}

// watchPresence answers "watch <id> <room> presence" with the room's
// users; "pres" frames with the joins and leaves follow.
func (cs *conn) watchPresence(c command.Command) {
	l := cs.loop
	switch {
	case cs.sess != nil && slices.Contains(cs.sess.presenceWatching, string(c.Room)):
		cs.refuse(c.ID, errAlreadyWatchingPres)
		return
	case cs.sess != nil && len(cs.sess.watching)+len(cs.sess.presenceWatching) >= l.srv.cfg.MaxSubscriptions:
		cs.refuse(c.ID, errTooManyWatches)
		return
	case !cs.sess.maySubscribe(c.Room):
		cs.refuse(c.ID, errWatchForbidden)
		return
	case !l.srv.isPresenceRoom(c.Room):
		cs.refuse(c.ID, errPresenceOff)
		return
	}
	if cs.sess == nil {
		cs.sess = &session{}
	}
	room := string(c.Room)
	set, gen := l.srv.pres.watch(room, l.idx)
	cs.sess.presenceWatching = append(cs.sess.presenceWatching, room)
	if l.presenceWatchers == nil {
		l.presenceWatchers = map[string][]watcher{}
	}
	l.presenceWatchers[room] = append(l.presenceWatchers[room], watcher{cs, gen})
	cs.reply(appendPresenceReply(l.scratch[:0], "watch", c.ID, c.Room, set, l.srv.cfg.PresenceMaxList))
}

// unwatchPresence answers "unwatch <id> <room> presence".
func (cs *conn) unwatchPresence(c command.Command) {
	if cs.sess == nil || !slices.Contains(cs.sess.presenceWatching, string(c.Room)) {
		cs.refuse(c.ID, errNotWatchingPres)
		return
	}
	cs.stopWatchingPresence(string(c.Room))
	cs.reply(command.AppendUnwatched(cs.loop.scratch[:0], c.ID, c.Room, command.WhatPresence))
}

// stopWatchingPresence takes the connection off room's presence
// watchers.
func (cs *conn) stopWatchingPresence(room string) {
	l := cs.loop
	x := cs.sess
	if i := slices.Index(x.presenceWatching, room); i >= 0 {
		x.presenceWatching = slices.Delete(x.presenceWatching, i, i+1)
	}
	removeWatcher(l.presenceWatchers, room, cs)
	l.srv.pres.unwatch(room, l.idx)
}
