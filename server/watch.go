package server

import (
	"slices"

	"github.com/loopcast/loopcast/server/internal/command"
)

// Errors of the occupancy commands.
var (
	errAlreadyWatching = &command.Error{Code: command.CodeAlreadyWatching, Reason: "already watching this room's occupancy"}
	errNotWatching     = &command.Error{Code: command.CodeNotWatching, Reason: "not watching this room's occupancy"}
	errTooManyWatches  = &command.Error{Code: command.CodeTooManyWatches, Reason: "watches (occupancy and presence) over max-subscriptions"}
	errWatchForbidden  = &command.Error{Code: command.CodeForbidden, Reason: "the token's rooms claim does not allow this room"}
)

// occupancyCommand answers "occupancy <id> <room>": the room's
// occupancy on every instance now.
func (cs *conn) occupancyCommand(c command.Command) {
	if !cs.sess.maySubscribe(c.Room) {
		cs.refuse(c.ID, errWatchForbidden)
		return
	}
	n := cs.loop.srv.occ.count(string(c.Room))
	cs.reply(command.AppendOccupancy(cs.loop.scratch[:0], c.ID, c.Room, n))
}

// watch answers "watch <id> <room> occupancy" with the room's
// occupancy; "occ" frames follow when it changes (at most one per
// occupancyInterval).
func (cs *conn) watch(c command.Command) {
	l := cs.loop
	switch {
	case cs.watches(c.Room):
		cs.refuse(c.ID, errAlreadyWatching)
		return
	case cs.sess != nil && len(cs.sess.watching)+len(cs.sess.presenceWatching) >= l.srv.cfg.MaxSubscriptions:
		cs.refuse(c.ID, errTooManyWatches)
		return
	case !cs.sess.maySubscribe(c.Room):
		cs.refuse(c.ID, errWatchForbidden)
		return
	}
	if cs.sess == nil {
		cs.sess = &session{} // no token: its nil claims allow everything
	}
	room := string(c.Room)
	cs.sess.watching = append(cs.sess.watching, room)
	n, gen := l.srv.occ.watch(room, l.idx)
	if l.watchers == nil {
		l.watchers = map[string][]watcher{}
	}
	l.watchers[room] = append(l.watchers[room], watcher{cs, gen})
	cs.reply(command.AppendWatching(l.scratch[:0], c.ID, c.Room, n))
}

// unwatch answers "unwatch <id> <room> occupancy"; no "occ" frame of
// the room follows the reply.
func (cs *conn) unwatch(c command.Command) {
	if !cs.watches(c.Room) {
		cs.refuse(c.ID, errNotWatching)
		return
	}
	cs.stopWatching(string(c.Room))
	cs.reply(command.AppendUnwatched(cs.loop.scratch[:0], c.ID, c.Room, command.WhatOccupancy))
}

// watches reports whether the connection watches room's occupancy.
func (cs *conn) watches(room []byte) bool {
	return cs.sess != nil && slices.Contains(cs.sess.watching, string(room))
}

// stopWatching takes the connection off room's watchers.
func (cs *conn) stopWatching(room string) {
	l := cs.loop
	x := cs.sess
	if i := slices.Index(x.watching, room); i >= 0 {
		x.watching = slices.Delete(x.watching, i, i+1)
	}
	removeWatcher(l.watchers, room, cs)
	l.srv.occ.unwatch(room, l.idx)
}

// removeWatcher takes cs off room's watchers in m (a loop's).
func removeWatcher(m map[string][]watcher, room string, cs *conn) {
	ws := m[room]
	if i := slices.IndexFunc(ws, func(w watcher) bool { return w.cs == cs }); i >= 0 {
		ws[i] = ws[len(ws)-1]
		ws[len(ws)-1] = watcher{}
		ws = ws[:len(ws)-1]
	}
	if len(ws) == 0 {
		delete(m, room)
	} else {
		m[room] = ws
	}
}

// stopWatchingAll ends every watch of a closing connection.
func (cs *conn) stopWatchingAll() {
	if cs.sess == nil {
		return
	}
	for len(cs.sess.watching) > 0 {
		cs.stopWatching(cs.sess.watching[len(cs.sess.watching)-1])
	}
}
