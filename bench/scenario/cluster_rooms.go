package scenario

import (
	"fmt"
	"sync"
	"time"
)

// clRoom is one room of a cluster run.
type clRoom struct {
	idx     int
	name    string
	members int
	// owner is the one publisher of the room, or -1: every publisher
	// publishes to it (the room with everyone).
	owner int
	// streams are the messages each of its publishers published to it:
	// streams[0] for an owned room, streams[publisher] for the broadcast
	// one.
	streams []*msgStream
}

// pos is publisher pub's stream in r, -1 when pub does not publish there.
func (r *clRoom) pos(pub int) int {
	switch {
	case r.owner < 0 && pub < len(r.streams):
		return pub
	case r.owner == pub:
		return 0
	}
	return -1
}

// msgStream is what one publisher published to one room: message seq is
// msgs[seq-1]. One message at a time is in flight per stream (the next
// is published once the last one was acknowledged), so that a stream's
// sequence order is its order in the room: every subscriber must see
// seq 1, 2, 3, … of each stream, each once.
type msgStream struct {
	room *clRoom
	pub  int

	// last is the publisher's latest message; the publisher's own (its
	// mu), never touched by subscribers.
	last *clMsg

	mu   sync.Mutex
	msgs []*clMsg
	// missing and dups count, per seq, the subscribers that missed the
	// message or got it twice (from the subscribers' checks and the end's).
	missing map[uint64]int
	dups    map[uint64]int
}

// busy reports whether the stream's last message is not acknowledged
// yet (or was abandoned): no next one until it is. Under the publisher's mu.
func (st *msgStream) busy() bool { return st.last != nil && !st.last.acked }

// add appends the stream's next message.
func (st *msgStream) add() *clMsg {
	st.mu.Lock()
	defer st.mu.Unlock()
	m := &clMsg{seq: uint64(len(st.msgs) + 1), stream: st}
	st.msgs = append(st.msgs, m)
	st.last = m
	return m
}

// delivered records one delivery of seq at offset: false when no such
// message was published (yet).
func (st *msgStream) delivered(seq, offset uint64) (misplaced, ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if seq == 0 || seq > uint64(len(st.msgs)) {
		return false, false
	}
	m := st.msgs[seq-1]
	m.deliveries++
	if m.seenOffset == 0 {
		m.seenOffset = offset
		return false, true
	}
	if m.seenOffset != offset {
		m.misplaced++
		return true, true
	}
	return false, true
}

// mark counts n subscribers missing (or, dup, doubling) seqs from..to.
func (st *msgStream) mark(dup bool, from, to uint64, n int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	m := &st.missing
	if dup {
		m = &st.dups
	}
	if *m == nil {
		*m = map[uint64]int{}
	}
	for s := from; s <= to; s++ {
		(*m)[s] += n
		if (*m)[s] == 0 {
			delete(*m, s)
		}
	}
}

// clMsg is one message (one seq of a stream) and every attempt to
// publish it.
type clMsg struct {
	seq    uint64
	stream *msgStream

	// The publisher's (under its mu).
	attempts  []clAttempt
	gen       int // msgid generation: raised when every attempt of the last was refused
	acked     bool
	ackEpoch  string
	ackOffset uint64
	ackAt     time.Time
	abandoned bool // retried for RetryFor without an acknowledgement
	retryAt   time.Time

	// The subscribers' (under stream.mu).
	seenOffset uint64 // the offset the first delivery carried
	misplaced  int    // deliveries at another offset than the first
	deliveries int
}

// msgID is the message's idempotency key for its current generation.
func (m *clMsg) msgID() string {
	id := fmt.Sprintf("p%d-r%d-%d", m.stream.pub, m.stream.room.idx, m.seq)
	if m.gen > 0 {
		id += fmt.Sprintf("-g%d", m.gen)
	}
	return id
}

// uncertain reports whether an attempt with the current msgid may have
// been placed (answered unknown, dropped, or not answered yet): then a
// refusal of a retry says nothing of it, and retries keep the msgid.
func (m *clMsg) uncertain() bool {
	id := m.msgID()
	for _, a := range m.attempts {
		if a.msgid == id && a.kind != answerRefused {
			return true
		}
	}
	return false
}

// answerKind is what became of one pub frame.
type answerKind uint8

const (
	answerNone    answerKind = iota // nothing (yet)
	answerAcked                     // pub <id> <room> <epoch> <offset>
	answerUnknown                   // err <id> unknown
	answerRefused                   // any other err (unavailable): not published
	answerDropped                   // the connection ended first
)

// clAttempt is one pub frame.
type clAttempt struct {
	id       uint32
	msgid    string
	inst     int // instance of the connection
	conn     int // the publisher's connection number
	phase    int // when it was sent
	sent     time.Time
	answered time.Time
	kind     answerKind
	code     string
	overdue  bool // not answered within AnswerBound
}

// layout makes the rooms, the publishers and the subscribers (not
// connected yet). Client i is on instance i % Instances and subscribes
// to the broadcast room, medium room i / MediumMembers and, per layer l
// of small rooms, room ((i + 7l) % Conns) / SmallMembers.
func (s *clusterRun) layout() {
	cfg := &s.cfg
	npub := cfg.Instances * cfg.PublishersPerInstance
	add := func(name string, owner int) *clRoom {
		r := &clRoom{idx: len(s.rooms), name: name, owner: owner}
		n := 1
		if owner < 0 {
			n = npub
		}
		for j := range n {
			pub := owner
			if owner < 0 {
				pub = j
			}
			r.streams = append(r.streams, &msgStream{room: r, pub: pub})
		}
		s.rooms = append(s.rooms, r)
		s.byName[name] = r
		return r
	}
	owner := func() int { return (len(s.rooms) - 1) % npub } // rooms after the broadcast one, in turn
	everyone := add("everyone", -1)
	var medium []*clRoom
	if cfg.RoomsPerConn >= 2 {
		for k := range (cfg.Conns + cfg.MediumMembers - 1) / cfg.MediumMembers {
			medium = append(medium, add(fmt.Sprintf("medium-%d", k), owner()))
		}
	}
	layers := max(0, cfg.RoomsPerConn-2)
	small := make([][]*clRoom, layers)
	for l := range small {
		for k := range (cfg.Conns + cfg.SmallMembers - 1) / cfg.SmallMembers {
			small[l] = append(small[l], add(fmt.Sprintf("small-%d-%d", l, k), owner()))
		}
	}
	for i := range cfg.Conns {
		c := &subscriber{s: s, id: i, home: i % cfg.Instances}
		rooms := []*clRoom{everyone}
		if medium != nil {
			rooms = append(rooms, medium[i/cfg.MediumMembers])
		}
		for l := range small {
			rooms = append(rooms, small[l][((i+7*l)%cfg.Conns)/cfg.SmallMembers])
		}
		for _, r := range rooms {
			r.members++
			c.rooms = append(c.rooms, newClientRoom(r))
		}
		s.subs = append(s.subs, c)
	}
	for j := range npub {
		p := &publisher{s: s, id: j, home: j % cfg.Instances, bcast: everyone, byID: map[uint32]attRef{}, open: map[*clMsg]bool{}}
		p.label = fmt.Sprintf("p%d@%s", j, s.fleet.inst[p.home].name)
		for _, r := range s.rooms[1:] {
			if r.owner == j {
				p.rooms = append(p.rooms, r)
			}
		}
		s.pubs = append(s.pubs, p)
	}
}
