package fanout

import "time"

// Publication is one message to publish to a room.
type Publication struct {
	// Op is the WebSocket opcode members receive it with.
	Op byte
	// Payload is only read during the call that takes the Publication.
	Payload []byte
	// Key is the publisher's idempotency key ("" for none): a second
	// publication with the same key to the same room within DedupeWindow
	// is answered with the first one's offset (Answer.Duplicate) and
	// reaches nobody again. Unused with an external log (the log
	// de-duplicates).
	Key string
	// Forward hands the message to Config.Forward once it is sequenced:
	// it was published on this instance, not received from another one.
	Forward bool
}

// Ack names who learns where a publication was placed: a member's
// connection (Conn.Published, with ID, on the member's loop), or a
// goroutine waiting on Wait (which must have room for one Answer: it is
// sent to from an event loop, never waited on). The zero Ack asks for
// no answer.
type Ack struct {
	Member *Member
	ID     uint32
	Wait   chan<- Answer
}

// Zero reports whether a asks for no answer.
func (a Ack) Zero() bool { return a.Member == nil && a.Wait == nil }

// Answer is where a publication was placed, or why it was not.
type Answer struct {
	Room string
	// Epoch and Offset are its place in the room's order; both 0 when
	// the room did not exist and history is off (nobody got it).
	Epoch, Offset uint64
	// Duplicate: its key was seen; Epoch and Offset are the first
	// publication's, and this one reached nobody.
	Duplicate bool
	// Err is set when it was not published (or its outcome is unknown):
	// an external log's answer.
	Err error
	// NotForwarded is set when it was published here but Config.Forward
	// could not hand it to the other instances (they see the loss).
	NotForwarded error
}

// DedupeWindow is how long a publication's key is remembered, like
// JetStream's default duplicate window; maxDedupeKeys bounds the keys an
// event loop remembers for the rooms it owns (about 150 bytes each): past
// it the oldest are forgotten first, counted as Counters.DedupeEvicted.
const (
	DedupeWindow  = 2 * time.Minute
	maxDedupeKeys = 1 << 16
)

// Publish sends one message to every subscription of r, in the room's
// order: sequenced here when this loop owns r, else handed to the owner.
// a learns the outcome once the owner sequenced it. p.Payload is only
// read during the call.
func (l *Loop) Publish(r *Room, p Publication, a Ack) {
	f := newSharedMsg(p.Op, p.Payload)
	if r.owner == l {
		l.sequence(r, f, p.Key, p.Forward, a)
	} else {
		t := newTask(taskPublish, r, f)
		t.key, t.forward, t.ack = p.Key, p.Forward, a
		handoff(r.owner, t)
	}
	f.release()
}

// PublishTo is Publish to the room named name, created (owned by this
// loop) when history is on and it does not exist. Without such a room
// nobody here gets the message: it is forwarded when asked, and a is
// answered with offset 0. It fails only with ErrTooManyRooms.
func (l *Loop) PublishTo(name []byte, p Publication, a Ack) error {
	r, err := l.Lookup(name)
	switch {
	case err != nil:
		return err
	case r == nil:
		l.engine.nowhere(string(name), p, a)
	default:
		l.Publish(r, p, a)
	}
	return nil
}

// nowhere handles a publication to a room that does not exist (history
// off): forwarded when asked, answered with offset 0.
func (e *Engine) nowhere(name string, p Publication, a Ack) {
	var ferr error
	if p.Forward && e.cfg.Forward != nil {
		ferr = e.cfg.Forward(name, p.Op, p.Payload, Origin{})
	}
	e.Answer(a, Answer{Room: name, NotForwarded: ferr})
}

// Publish is Loop.Publish from any goroutine, for the room named name
// (created when history is on and it does not exist; without it, see
// PublishTo). It returns the room's subscriptions when the message was
// handed to its owner loop. Must not be used with an external log.
func (e *Engine) Publish(name string, p Publication, a Ack) (int, error) {
	r, err := e.lookup([]byte(name), nil)
	if r == nil {
		if err == nil {
			e.nowhere(name, p, a)
		}
		return 0, err
	}
	members := int(r.members.Load())
	f := newSharedMsg(p.Op, p.Payload)
	t := newTask(taskPublish, r, f)
	t.key, t.forward, t.ack = p.Key, p.Forward, a
	handoff(r.owner, t)
	f.release()
	return members, nil
}

// Answer tells a the outcome of its publication: on its member's loop
// (Conn.Published), or through its Wait channel. Safe from any
// goroutine.
func (e *Engine) Answer(a Ack, ans Answer) {
	switch {
	case a.Wait != nil:
		a.Wait <- ans
	case a.Member != nil:
		t := newTask(taskAnswer, nil, nil)
		t.ack, t.ans = a, ans
		handoff(a.Member.loop, t)
	}
}

// answer is Engine.Answer on a loop: a member of this loop is answered
// at once.
func (l *Loop) answer(a Ack, ans Answer) {
	if a.Member != nil && a.Member.loop == l {
		if !a.Member.released() {
			a.Member.conn.Published(a.ID, ans)
		}
		return
	}
	l.engine.Answer(a, ans)
}

// sequence runs on r's owner: it gives f the room's next offset (or the
// external log's), keeps it in history, hands it to every other loop
// with subscriptions, delivers it to its own, forwards it to the other
// instances when asked, and answers a.
func (l *Loop) sequence(r *Room, f *sharedMsg, key string, forward bool, a Ack) {
	if r.gone.Load() {
		// The room was forgotten while f was on its way: sequence f in
		// the room that replaced it, if any.
		name := r.name
		var err error
		if r, err = l.engine.lookup([]byte(name), l); r == nil || err != nil {
			l.answer(a, Answer{Room: name, Err: err})
			return
		}
		if r.owner != l {
			t := newTask(taskPublish, r, f)
			t.key, t.forward, t.ack = key, forward, a
			handoff(r.owner, t)
			return
		}
	}
	var offset uint64
	if l.engine.cfg.External != nil {
		if f.epoch != l.extEpoch || f.offset <= r.top.Load() {
			return // of an epoch the log left behind (Restart), or a duplicate
		}
		offset = f.offset
		l.pos = max(l.pos, offset)
	} else {
		if key != "" {
			if d, ok := l.dedupe.find(l, r, key); ok {
				l.answer(a, Answer{Room: r.name, Epoch: d.epoch, Offset: d.offset, Duplicate: true})
				return
			}
		}
		offset = r.top.Load() + 1
	}
	f.offset, f.epoch, f.at = offset, r.epoch.Load(), l.now
	r.top.Store(offset)
	l.published.Add(1)
	if hc := &l.engine.cfg.History; hc.Messages > 0 {
		l.keep(r, f, hc)
	}
	if key != "" && l.engine.cfg.External == nil {
		l.dedupe.record(l, r, key, f.epoch, offset)
	}
	for _, other := range l.engine.loopList() {
		if other != l && r.shards[other.idx].live.Load() > 0 {
			handoff(other, newTask(taskBatch, r, f))
		}
	}
	l.batch(r, f)
	var ferr error
	if forward && l.engine.cfg.Forward != nil {
		r.forwarded++
		ferr = l.engine.cfg.Forward(r.name, f.op, f.buf.B, Origin{f.epoch, r.forwarded})
	}
	if !a.Zero() {
		l.answer(a, Answer{Room: r.name, Epoch: f.epoch, Offset: offset, NotForwarded: ferr})
	}
}

// Origin is a forwarded message's place in its room's forwarding order
// on this instance: the room's epoch here, and a count from 1 of the
// messages the room forwarded in that epoch. Another instance that sees
// a count skip knows messages were lost on the way. Zero: no order (no
// room here).
type Origin struct {
	Epoch, Offset uint64
}

// PublishAt hands a message numbered by the external log (Config.External)
// to its room's owner, creating the room (history is on). Messages must
// come in the log's order, from one goroutine; a message at or below
// the room's last offset is a duplicate and dropped, and so is one of
// another epoch than the last Restart's. It returns the room's
// subscriptions.
func (e *Engine) PublishAt(name string, op byte, payload []byte, epoch, offset uint64) (int, error) {
	r, err := e.lookupFrom([]byte(name), nil, true)
	if r == nil {
		return 0, err
	}
	members := int(r.members.Load())
	f := newSharedMsg(op, payload)
	f.epoch, f.offset = epoch, offset
	handoff(r.owner, newTask(taskPublish, r, f))
	f.release()
	return members, nil
}
