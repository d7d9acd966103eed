package fanout

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

// answerJoin runs on r's owner: it reads where r's order stands and, for
// a resume (req, with Resumed set), what history holds after its offset.
// Every message the owner sequences after this answer reaches the
// subscription's loop after the answer does (the mailbox is FIFO per
// producer), and every earlier one before it: replayed and live messages
// meet without a gap or a duplicate.
func (l *Loop) answerJoin(r *Room, req JoinResult) JoinResult {
	res := JoinResult{Epoch: r.epoch.Load(), Offset: r.top.Load(), Tag: req.Tag}
	if l.engine.cfg.External != nil {
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
	if x := l.engine.cfg.External; x != nil && l.extEpoch == 0 {
		// The log's epoch is not known yet (the instance is starting):
		// an answer now would name no epoch, and a resume would be told
		// its epoch changed. Wait for Engine.Restart, at most MaxWait.
		l.waiting = append(l.waiting, waitingJoin{r, s, req, l.now + int64(x.MaxWait)})
		return
	}
	if x := l.engine.cfg.External; x != nil && req.Resumed {
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
	x := l.engine.cfg.External
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
	enc := l.engine.cfg.Encode
	for _, f := range replay {
		var frame []byte
		if s.kind == Framed|Compressed {
			frame = f.replayFrame(enc, s.room)
		} else {
			l.scratch = enc(l.scratch[:0], s.kind, s.room, f.message())
			frame = l.scratch
		}
		if !m.SendData(frame) || s.state == subGone {
			return // closed as a slow consumer
		}
		l.replayed.Add(1)
	}
	s.state = subLive
	s.lane().add(s)
}
