package server

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/loopcast/loopcast/server/internal/frame"
	occ "github.com/loopcast/loopcast/server/internal/occupancy"
)

// Presence: who is in a presence room (Config.PresenceRooms), one entry
// per user (a token's sub) however many connections it holds, on every
// instance. A connection joins the list when its subscription to the
// room is placed, and leaves it when the subscription ends; a user whose
// last connection left stays listed for PresenceGrace, so a reconnect
// (on any instance) is not a leave and a join. Once per
// occupancyInterval, on the occupancy goroutine, each instance shares
// its users of every presence room (package occupancy, Users batches:
// the changes, and a rolling refresh), and each watched room whose set
// of users changed since its last announcement gets one "pres" frame
// with the joins and leaves, encoded once per room.
type presence struct {
	s *Server

	// Tick's state, under occupancy.tickMu.
	table  occ.Table
	rep    occ.Reporter
	values map[string]occ.Value
	batch  []byte
	byLoop [][]presFrame

	mu sync.Mutex
	// local holds this instance's users per presence room.
	local map[string]map[string]*presentUser
	// watched are the rooms whose joins and leaves some connection
	// watches, with the set last announced to them.
	watched map[string]*presenceWatch
	// gen counts the announcements: a watcher registered at gen g gets
	// the frames of later ones only (its reply listed the set as of g).
	gen uint64
	// dirty are the rooms whose local set of users changed since the
	// last announcement: only those (and the rooms whose remote users
	// changed) are compared with what was announced.
	dirty map[string]struct{}

	// listers bounds the presence lists built at once (off the loops).
	listers chan struct{}

	shared, shareErrors, badBatches, announcements atomic.Int64
}

// presenceListers is how many presence lists are built at once.
const presenceListers = 16

// presentUser is one user in one room on this instance.
type presentUser struct {
	conns int
	info  []byte
	// goneAt is when conns fell to 0 (the clock of tick, ns); the user
	// is forgotten PresenceGrace later unless a connection comes back.
	goneAt int64
}

// presenceWatch is a watched presence room.
type presenceWatch struct {
	announced map[string][]byte // user -> info, as last announced
	total     int               // watchers
	perLoop   []int32           // watchers per loop
}

// presFrame is one room's announcement, shared by every loop (read only).
type presFrame struct {
	room  string
	gen   uint64
	frame []byte
}

func newPresence(s *Server, id uint64) *presence {
	p := &presence{s: s, values: map[string]occ.Value{}, local: map[string]map[string]*presentUser{}, watched: map[string]*presenceWatch{},
		listers: make(chan struct{}, presenceListers)}
	p.table.Kind, p.table.Self = occ.Users, id
	p.rep = occ.Reporter{Kind: occ.Users, ID: id, MaxBytes: occupancyBatchBytes, RefreshShare: occupancyRefreshShare}
	p.byLoop = make([][]presFrame, s.nloops)
	return p
}

// isPresenceRoom reports whether room lists its users.
func (s *Server) isPresenceRoom(room []byte) bool {
	return len(s.cfg.PresenceRooms) > 0 && roomAllowed(s.cfg.PresenceRooms, string(room))
}

// join counts one more connection of user in room.
func (p *presence) join(room, user string, info []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	users := p.local[room]
	if users == nil {
		users = map[string]*presentUser{}
		p.local[room] = users
	}
	u := users[user]
	if u == nil {
		u = &presentUser{info: info}
		users[user] = u
		p.markDirty(room)
	}
	u.conns++
	u.goneAt = 0
}

// leave counts one connection of user in room less, at now (ns).
func (p *presence) leave(room, user string, now int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u := p.local[room][user]; u != nil && u.conns > 0 {
		if u.conns--; u.conns == 0 {
			u.goneAt = now
		}
	}
}

// report runs on the occupancy goroutine (under occupancy.tickMu): it
// forgets users past their grace and, with build, returns this
// instance's Users batch for the others (valid until the next report).
func (p *presence) report(now int64, build bool) []byte {
	grace := int64(p.s.cfg.PresenceGrace)
	clear(p.values)
	p.mu.Lock()
	for room, users := range p.local {
		for user, u := range users {
			if u.conns == 0 && now-u.goneAt >= grace {
				delete(users, user)
				p.markDirty(room)
				continue
			}
			p.values[occ.UserKey(room, user)] = occ.Value{Count: int64(max(u.conns, 1)), Data: u.info}
		}
		if len(users) == 0 {
			delete(p.local, room)
		}
	}
	p.mu.Unlock()
	if !build {
		return nil
	}
	p.batch = p.rep.Report(p.batch[:0], p.values)
	return p.batch
}

// tick, after report, drops silent instances and announces each
// watched room's joins and leaves.
func (p *presence) tick(now int64) {
	p.table.Expire(now, int64(occupancyTTL))
	p.announce()
}

// current is room's set of users now, on every instance: user -> info.
// Called with p.mu held.
func (p *presence) current(room string) map[string][]byte {
	set := map[string][]byte{}
	for user, u := range p.local[room] {
		set[user] = u.info
	}
	p.table.Users(room, func(user string, info []byte) {
		if _, ok := set[user]; !ok {
			set[user] = slices.Clone(info) // the table's buffers are its own
		}
	})
	return set
}

// announce sends each watched room whose users changed since its last
// announcement one "pres" frame: who joined (with their info) and who
// left. Only rooms whose users changed here or on another instance are
// compared (a quiet room costs nothing).
func (p *presence) announce() {
	p.mu.Lock()
	p.table.TakeDirtyRooms(func(room string) { p.markDirty(room) })
	var frames int
	for room := range p.dirty {
		w := p.watched[room]
		if w == nil {
			continue
		}
		now := p.current(room)
		var joins, leaves []string
		for user := range now {
			if _, ok := w.announced[user]; !ok {
				joins = append(joins, user)
			}
		}
		for user := range w.announced {
			if _, ok := now[user]; !ok {
				leaves = append(leaves, user)
			}
		}
		if len(joins) == 0 && len(leaves) == 0 {
			continue
		}
		if frames == 0 {
			p.gen++
		}
		frames++
		f := presFrame{room: room, gen: p.gen, frame: appendPresenceFrame(nil, room, joins, leaves, now)}
		w.announced = now
		for i, n := range w.perLoop {
			if n > 0 {
				p.byLoop[i] = append(p.byLoop[i], f)
			}
		}
	}
	clear(p.dirty)
	p.mu.Unlock()
	p.announcements.Add(int64(frames))
	loops := p.s.loopList()
	for i, fs := range p.byLoop {
		if len(fs) == 0 || i >= len(loops) {
			continue
		}
		l := loops[i]
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			l.sendPresence(fs)
			return nil
		}))
		p.byLoop[i] = nil
	}
}

// watch registers a watcher of room on loop idx and returns the set of
// users it starts from (as last announced) and the announcement count
// it has seen.
func (p *presence) watch(room string, idx int) (map[string][]byte, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.watched[room]
	if w == nil {
		w = &presenceWatch{announced: p.current(room), perLoop: make([]int32, p.s.nloops)}
		p.watched[room] = w
	}
	w.perLoop[idx]++
	w.total++
	return w.announced, p.gen
}

// unwatch undoes one watch.
func (p *presence) unwatch(room string, idx int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.watched[room]; w != nil {
		w.perLoop[idx]--
		if w.total--; w.total == 0 {
			delete(p.watched, room)
		}
	}
}

// markDirty notes that room's local users changed; p.mu held.
func (p *presence) markDirty(room string) {
	if p.dirty == nil {
		p.dirty = map[string]struct{}{}
	}
	p.dirty[room] = struct{}{}
}

// localUsers counts this instance's (room, user) entries.
func (p *presence) localUsers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, users := range p.local {
		n += len(users)
	}
	return n
}

// list is room's users now, on every instance.
func (p *presence) list(room string) map[string][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current(room)
}

// sendPresence runs on the loop: each frame to this loop's watchers of
// its room that registered before it.
func (l *eventLoop) sendPresence(frames []presFrame) {
	for _, f := range frames {
		// A copy: a write that fails closes its connection at once, which
		// takes it out of this very list.
		for _, w := range slices.Clone(l.presenceWatchers[f.room]) {
			if w.since < f.gen && w.cs.state == stateOpen {
				w.cs.member.SendData(f.frame)
			}
		}
	}
}

// presenceEntry is one user in a presence list or a join.
type presenceEntry struct {
	User string          `json:"user"`
	Info json.RawMessage `json:"info,omitempty"`
}

// presenceJSON is a list of users, sorted, at most max: the JSON array
// of presence replies.
func presenceJSON(set map[string][]byte, max int) ([]byte, int) {
	users := make([]string, 0, len(set))
	for u := range set {
		users = append(users, u)
	}
	slices.Sort(users)
	if len(users) > max {
		users = users[:max]
	}
	list := make([]presenceEntry, len(users))
	for i, u := range users {
		list[i] = presenceEntry{u, set[u]}
	}
	b, _ := json.Marshal(list)
	return b, len(users)
}

// appendPresenceFrame appends the text frame "pres <room>\n" and
// {"join":[{"user":…,"info":…}],"leave":[…]}, users sorted.
func appendPresenceFrame(dst []byte, room string, joins, leaves []string, set map[string][]byte) []byte {
	slices.Sort(joins)
	slices.Sort(leaves)
	ev := struct {
		Join  []presenceEntry `json:"join"`
		Leave []string        `json:"leave"`
	}{Join: make([]presenceEntry, len(joins)), Leave: leaves}
	for i, u := range joins {
		ev.Join[i] = presenceEntry{u, set[u]}
	}
	if ev.Leave == nil {
		ev.Leave = []string{}
	}
	body, _ := json.Marshal(ev)
	n := len("pres ") + len(room) + 1 + len(body)
	dst = frame.AppendHeader(dst, true, ws.OpText, n)
	dst = append(append(append(dst, "pres "...), room...), '\n')
	return append(dst, body...)
}

// appendPresenceReply appends "<op> <id> <room> [presence ]<total>
// <listed>\n<JSON list>": the answer to presence (op "presence") and to
// watch … presence (op "watch").
func appendPresenceReply(dst []byte, op string, id uint32, room []byte, set map[string][]byte, max int) []byte {
	list, listed := presenceJSON(set, max)
	dst = append(dst, op...)
	dst = append(append(dst, ' '), strconv.FormatUint(uint64(id), 10)...)
	dst = append(append(dst, ' '), room...)
	if op == "watch" {
		dst = append(dst, " presence"...)
	}
	dst = append(append(dst, ' '), strconv.Itoa(len(set))...)
	dst = append(append(dst, ' '), strconv.Itoa(listed)...)
	return append(append(dst, '\n'), list...)
}
