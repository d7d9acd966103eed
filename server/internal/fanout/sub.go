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

// Resume asks a Framed subscription to start after Offset in Epoch: the
// messages the client missed are replayed from history before live ones.
type Resume struct {
	Epoch, Offset uint64
}

// NotRecovered says why a resume could not replay everything missed.
type NotRecovered uint8

const (
	Recovered     NotRecovered = iota // nothing missing
	EpochChanged                      // the room's history was lost (restart, expiry): offsets start again
	HistoryPassed                     // messages after the offset are no longer in history
)

// JoinResult is the owner's answer to a Framed subscription.
type JoinResult struct {
	// Err is set when the subscription was refused (ErrOffsetAhead).
	Err error
	// Epoch and Offset are the room's epoch and the offset of its last
	// message when the subscription took its place: replayed messages
	// end at Offset, live ones start after it.
	Epoch, Offset uint64
	// Resumed is set when a Resume was asked; Recovered says whether
	// every message after its offset follows (Why, when not). Without
	// recovery, live messages follow and nothing is replayed.
	Resumed bool
	Why     NotRecovered
	// Replayed is the number of messages replayed.
	Replayed int
	// Tag is the number given to Subscribe (loopcast.v1: the sub
	// command's id, for the reply).
	Tag uint32

	replay []*sharedMsg
	// handed: with external offsets, the log position read when the
	// request was queued again behind the log's messages (see placeJoin).
	handed uint64
}

// Recovered reports whether a resume replays everything missed.
func (r JoinResult) Recovered() bool { return r.Resumed && r.Why == Recovered }

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
	r := m.loop.eng.join(name, m.loop)
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
	m.loop.eng.leave(s.room)
}

// answerJoin runs on r's owner: it reads where r's order stands and, for
// a resume (req, with Resumed set), what history holds after its offset.
// Every message the owner sequences after this answer reaches the
// subscription's loop after the answer does (the mailbox is FIFO per
// producer), and every earlier one before it: replayed and live messages
// meet without a gap or a duplicate.
func (l *Loop) answerJoin(r *Room, req JoinResult) JoinResult {
	res := JoinResult{Epoch: r.epoch.Load(), Offset: r.top.Load(), Tag: req.Tag}
	if l.eng.cfg.External != nil {
		// Every message of r up to pos is in order here, even if r has
		// none: live messages come after it.
		res.Offset = max(res.Offset, l.pos)
	}
	if !req.Resumed {
		return res
	}
	res.Resumed = true
	switch since := req.Offset; {
	case req.Epoch != res.Epoch:
		res.Why = EpochChanged
	case since > res.Offset:
		res.Err = ErrOffsetAhead
	case since == res.Offset:
		// Nothing was published since: nothing to replay, history or not.
	default:
		var ok bool
		res.replay, ok = r.hist.since(since, nil)
		if !ok {
			res.Why = HistoryPassed
		}
	}
	return res
}

// waitingJoin is a resume newer than its room's messages on the owner,
// waiting for the external log to hand them (see placeJoin).
type waitingJoin struct {
	r        *Room
	s        *Sub
	req      JoinResult
	deadline int64 // Loop.now
}

// placeJoin runs on r's owner: it answers the join of s, on s's loop.
// With external offsets, a resume newer than what this loop has in order
// is either newer than the log handed so far (it waits, retried at each
// Tick, at most External.MaxWait) or already handed: then the request is
// queued again behind those messages, and answered when it comes back.
func (l *Loop) placeJoin(r *Room, s *Sub, req JoinResult) {
	if x := l.eng.cfg.External; x != nil && l.extEpoch == 0 {
		// The log's epoch is not known yet (the instance is starting):
		// an answer now would name no epoch, and a resume would be told
		// its epoch changed. Wait for Engine.Restart, at most MaxWait.
		l.waiting = append(l.waiting, waitingJoin{r, s, req, l.now + int64(x.MaxWait)})
		return
	}
	if x := l.eng.cfg.External; x != nil && req.Resumed {
		l.pos = max(l.pos, req.handed)
		if req.Epoch == r.epoch.Load() && req.Offset > max(r.top.Load(), l.pos) {
			if h := x.Handed(); h >= req.Offset {
				t := newTask(taskJoin, r, nil)
				req.handed = h
				t.sub, t.res = s, req
				handoff(l, t)
			} else {
				l.waiting = append(l.waiting, waitingJoin{r, s, req, l.now + int64(x.MaxWait)})
			}
			return
		}
	}
	res := l.answerJoin(r, req)
	if s.m.loop == l {
		l.joined(s, res)
		return
	}
	back := newTask(taskJoined, r, nil)
	back.sub, back.res = s, res
	handoff(s.m.loop, back)
}

// retryWaiting places the waiting joins the log caught up with, and
// refuses those past their deadline.
func (l *Loop) retryWaiting() {
	x := l.eng.cfg.External
	h := x.Handed()
	kept := l.waiting[:0]
	for _, w := range l.waiting {
		switch {
		case l.extEpoch == 0 && l.now >= w.deadline:
			l.refuseJoin(w, ErrNotReady)
		case l.extEpoch == 0:
			kept = append(kept, w)
		case h >= w.req.Offset || !w.req.Resumed:
			l.placeJoin(w.r, w.s, w.req)
		case l.now >= w.deadline:
			w.req.Offset = ^uint64(0) // answerJoin refuses it
			w.req.handed = 0
			l.refuseJoin(w, nil)
		default:
			kept = append(kept, w)
		}
	}
	clear(l.waiting[len(kept):])
	l.waiting = kept
}

// refuseJoin answers a waiting join that cannot be placed: with err, or
// with answerJoin's own refusal when err is nil.
func (l *Loop) refuseJoin(w waitingJoin, err error) {
	var res JoinResult
	if err != nil {
		res = JoinResult{Err: err, Tag: w.req.Tag}
	} else {
		res = l.answerJoin(w.r, w.req)
	}
	if w.s.m.loop == l {
		l.joined(w.s, res)
		return
	}
	back := newTask(taskJoined, w.r, nil)
	back.sub, back.res = w.s, res
	handoff(w.s.m.loop, back)
}

// joinRequest is answerJoin's request form of a join: its tag, and its
// Resume when there is one.
func joinRequest(r *Resume, tag uint32) JoinResult {
	if r == nil {
		return JoinResult{Tag: tag}
	}
	return JoinResult{Tag: tag, Resumed: true, Epoch: r.Epoch, Offset: r.Offset}
}

// joined runs on s's loop with the owner's answer: acknowledge, replay,
// go live.
func (l *Loop) joined(s *Sub, res JoinResult) {
	replay := res.replay
	res.replay = nil
	l.admitJoin(s, res, replay)
	for _, f := range replay {
		f.release()
	}
}

// admitJoin acknowledges s (Conn.Subscribed), queues replay and adds s
// to its lane, unless s ended meanwhile or was refused.
func (l *Loop) admitJoin(s *Sub, res JoinResult, replay []*sharedMsg) {
	if s.state == subGone {
		return // ended while the answer was on its way
	}
	m := s.m
	if res.Err != nil {
		s.end()
		m.conn.Subscribed(s, res)
		return
	}
	res.Replayed = len(replay)
	m.conn.Subscribed(s, res)
	if s.state == subGone {
		return // the acknowledgement closed the connection
	}
	enc := l.eng.cfg.Encode
	for _, f := range replay {
		var frame []byte
		if s.kind == Framed|Compressed {
			frame = f.replayFrame(enc, s.room)
		} else {
			l.scratch = enc(l.scratch[:0], s.kind, s.room, f.message())
			frame = l.scratch
		}
		if !m.Deliver(frame) || s.state == subGone {
			return // closed as a slow consumer
		}
		l.replayed.Add(1)
	}
	s.state = subLive
	s.lane().add(s)
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

// replayFrame is f's Framed|Compressed frame, encoded once for every
// replay of it (see sharedMsg.replayed). Two loops that race both encode;
// one of the two frames is kept.
func (f *sharedMsg) replayFrame(enc func([]byte, Kind, *Room, Message) []byte, r *Room) []byte {
	if p := f.replayed.Load(); p != nil {
		return *p
	}
	b := enc(nil, Framed|Compressed, r, f.message())
	f.replayed.CompareAndSwap(nil, &b)
	return *f.replayed.Load()
}
