package fanout

import "errors"

// Kind is how a lane encodes a room's messages for its subscriptions
// (Config.Encode): every subscription of one Kind on one loop shares one
// encoding of each message.
type Kind uint8

const (
	// Raw is the payload alone (raw mode: one room per connection).
	Raw Kind = 0
	// Framed carries the room, epoch and offset with the payload
	// (loopcast.v1). Framed subscriptions are placed in the room's order
	// by its owner, which makes resuming exact.
	Framed Kind = 1
	// Compressed, added to Raw or Framed, marks the lanes of connections
	// that negotiated compression: Config.Encode compresses their frames
	// (once per message, lane and loop, like every encoding).
	Compressed Kind = 2
)

// numKinds is the number of lanes a shard has: each Kind's.
const numKinds = 4

// Errors of Subscribe and Publish.
var (
	// ErrTooManyRooms: the room does not exist and Config.MaxRooms do.
	ErrTooManyRooms = errors.New("too many rooms")
	// ErrOffsetAhead: a resume asked for an offset the room has not
	// reached in that epoch.
	ErrOffsetAhead = errors.New("offset ahead of the room")
	// ErrNotReady: with an external log, the log's epoch was still not
	// known after External.MaxWait (the instance has not reached the
	// log): a subscription then would name no epoch.
	ErrNotReady = errors.New("the external log's epoch is not known yet")
)

// subState is where a subscription is in its life.
type subState uint8

const (
	subPending subState = iota // waiting for the owner's answer
	subLive                    // in its lane: gets the room's messages
	subGone                    // ended (or refused)
)

// Sub is one subscription of a member to a room. It belongs to the
// member's loop.
type Sub struct {
	m     *Member
	room  *Room
	kind  Kind
	state subState
	slot  int32 // index in its lane's subs
	// from is where this subscription's unwritten part of its lane's
	// batch starts (bytes; 0 at the start of a cycle), fromN the number
	// of frames before it. See lane.batch.
	from, fromN int32
}

// Room is the subscription's room.
func (s *Sub) Room() *Room { return s.room }

// Live reports whether s gets the room's messages (not pending, not
// ended).
func (s *Sub) Live() bool { return s.state == subLive }

func (s *Sub) lane() *lane { return &s.room.shards[s.m.loop.idx].lanes[s.kind] }

// Subscribe adds a subscription of m to the room named name (created,
// with m's loop as its owner, when it does not exist; the name is copied
// then), encoded as k. A Raw subscription is live at once. A Framed one
// is placed in the room's order by the owner, then answered through
// Conn.Subscribed (before Subscribe returns when m's loop is the owner,
// or later in a task); resume, when not nil, asks for the messages after
// its offset. tag is the caller's (Sub.Tag). Subscribe fails only with
// ErrTooManyRooms. The caller checks that m has no subscription to name
// yet.
func (m *Member) Subscribe(name []byte, k Kind, resume *Resume, tag uint32) (*Sub, error) {
	r := m.loop.engine.join(name, m.loop)
	if r == nil {
		return nil, ErrTooManyRooms
	}
	s := &Sub{m: m, room: r, kind: k}
	r.shards[m.loop.idx].live.Add(1)
	if m.subs == nil && k&Framed != 0 {
		m.subs = make([]*Sub, 0, 4) // loopcast.v1 clients take a few
	}
	m.subs = append(m.subs, s)
	if k&Framed == 0 {
		s.state = subLive
		s.lane().add(s)
		return s, nil
	}
	if r.owner == m.loop {
		m.loop.placeJoin(r, s, joinRequest(resume, tag))
		return s, nil
	}
	t := newTask(taskJoin, r, nil)
	t.sub, t.res = s, joinRequest(resume, tag)
	handoff(r.owner, t)
	return s, nil
}

// Unsubscribe ends s. The room frames delivered to it so far in this
// cycle are kept: they leave before whatever m sends next.
func (s *Sub) Unsubscribe() {
	if s.state == subGone {
		return
	}
	s.takePart()
	s.end()
}

// end takes s out of its lane (if live), its room and its member's list.
func (s *Sub) end() {
	m := s.m
	if s.state == subLive {
		s.lane().remove(s)
	}
	s.state = subGone
	for i, x := range m.subs {
		if x == s {
			last := len(m.subs) - 1
			copy(m.subs[i:], m.subs[i+1:])
			m.subs[last] = nil
			m.subs = m.subs[:last]
			break
		}
	}
	s.room.shards[m.loop.idx].live.Add(-1)
	m.loop.engine.leave(s.room)
}

// takePart moves s's unwritten part of its lane's batch into its
// member's cork. A no-op unless s has such a part.
func (s *Sub) takePart() {
	if s.state != subLive {
		return
	}
	ln := s.lane()
	if ln.batch == nil || int(s.from) >= len(ln.batch.B) {
		return
	}
	m := s.m
	part := ln.batch.B[s.from:]
	m.loop.deliveries.Add(int64(ln.frames - s.fromN))
	m.loop.bytesOut.Add(int64(len(part)))
	s.from, s.fromN = int32(len(ln.batch.B)), ln.frames
	m.corkAppend(part)
}
