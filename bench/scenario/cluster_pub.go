package scenario

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/bench/wsclient"
)

// Pace of a publisher's retries.
const (
	// pubRetryWait is the pause before the first retry of a message; it
	// doubles per attempt, up to 16 times.
	pubRetryWait = 100 * time.Millisecond
	// pubTick is how often due retries and overdue answers are looked at.
	pubTick = 10 * time.Millisecond
	// pubWriteTimeout bounds one write of a pub frame.
	pubWriteTimeout = 5 * time.Second
)

// publisher is a loopcast.v1 client that publishes at a fixed rate, each
// pub with a msgid, and holds every attempt against its answer: what
// PROTOCOL.md tells a publisher to do.
//
//   - acknowledged: done; the room's next message may go.
//   - `err … unknown`, or the connection lost before an answer: the same
//     pub, same msgid, again (after a pause, on the connection there is
//     then) until a retry is acknowledged.
//   - refused (`err … unavailable`), when no attempt with this msgid may
//     have been placed: the message was not published, so it is published
//     anew, with a new msgid (the same payload and sequence); a refusal
//     that was not true shows as a duplicate at the subscribers. When an
//     earlier attempt's outcome is unknown, the refusal says nothing of
//     it: retried with the same msgid.
//   - not answered within AnswerBound: counted (a failure of the server's
//     promise) and retried with the same msgid.
//
// One message per room (per stream) is in flight at a time; a tick whose
// rooms all wait is skipped (counted as deferred).
type publisher struct {
	s     *clusterRun
	id    int
	label string // "p0@lc1": the publisher and its home instance
	home  int
	rooms []*clRoom // the rooms it owns (round robin)
	bcast *clRoom   // the room with everyone, which every publisher publishes to

	mu       sync.Mutex
	conn     *wsclient.Conn
	conns    int // connections made
	inst     int
	nextID   uint32
	nextRoom int
	byID     map[uint32]attRef
	open     map[*clMsg]bool // neither acknowledged nor abandoned
	acks     []ackRec        // every acknowledgement, in arrival order
	stopped  bool
	deferred int
	doubles  int // a message acknowledged at two offsets

	nAcked, nUnknown, nRefused atomic.Int64
}

// attRef locates an attempt by its command id.
type attRef struct {
	m *clMsg
	i int
}

// ackRec is one acknowledgement: when it came and when its attempt was sent.
type ackRec struct{ at, sent time.Time }

// run connects (home instance first, then the others) and publishes until
// ctx ends.
func (p *publisher) run(ctx context.Context) {
	rng := rand.New(rand.NewPCG(uint64(p.id), uint64(time.Now().UnixNano())))
	dialers := p.s.dialers
	delay := p.s.cfg.Backoff
	for ctx.Err() == nil {
		var conn *wsclient.Conn
		inst := p.home
		for k := range dialers {
			inst = (p.home + k) % len(dialers)
			c, err := dialers[inst].dial(ctx, "/ws")
			if err == nil {
				conn = c
				break
			}
		}
		if conn == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(rng.Int64N(int64(delay))) + time.Millisecond):
			}
			delay = min(2*delay, maxBackoff)
			continue
		}
		delay = p.s.cfg.Backoff
		p.session(ctx, conn, inst)
	}
}

// session publishes on conn until it ends or ctx does.
func (p *publisher) session(ctx context.Context, conn *wsclient.Conn, inst int) {
	p.mu.Lock()
	p.conn, p.inst = conn, inst
	p.conns++
	n := p.conns
	p.mu.Unlock()
	readDone := make(chan struct{})
	go p.read(conn, readDone)

	npub := len(p.s.pubs)
	normal := time.NewTicker(time.Duration(float64(time.Second) * float64(npub) / p.s.cfg.Rate))
	defer normal.Stop()
	bcast := time.NewTicker(time.Duration(float64(time.Second) * float64(npub) / p.s.cfg.BroadcastRate))
	defer bcast.Stop()
	tick := time.NewTicker(pubTick)
	defer tick.Stop()
	ok := p.sendDue(conn, n)
	for ok {
		select {
		case <-normal.C:
			if len(p.rooms) > 0 {
				ok = p.publishNext(conn, n, false)
			}
		case <-bcast.C:
			ok = p.publishNext(conn, n, true)
		case <-tick.C:
			p.checkOverdue()
			ok = p.sendDue(conn, n)
		case <-readDone:
			ok = false
		case <-ctx.Done():
			ok = false
		}
	}
	conn.Close()
	<-readDone
	p.dropped(n)
}

// closeConn closes the current connection (a gateway reset, or the end).
func (p *publisher) closeConn() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		p.conn.Close()
	}
}

// publishNext publishes the next message of the broadcast room, or of
// the next owned room whose last message was acknowledged.
func (p *publisher) publishNext(conn *wsclient.Conn, n int, bcast bool) bool {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return true
	}
	var st *msgStream
	if bcast {
		if c := p.bcast.streams[p.id]; !c.busy() {
			st = c
		}
	} else {
		for k := range p.rooms {
			r := p.rooms[(p.nextRoom+k)%len(p.rooms)]
			if !r.streams[0].busy() {
				st = r.streams[0]
				p.nextRoom = (p.nextRoom + k + 1) % len(p.rooms)
				break
			}
		}
	}
	if st == nil {
		p.deferred++
		p.mu.Unlock()
		return true
	}
	m := st.add()
	p.open[m] = true
	frame := p.attemptLocked(m, n)
	p.mu.Unlock()
	return p.write(conn, frame)
}

// attemptLocked records a new attempt of m on connection n and returns
// its frame; under p.mu.
func (p *publisher) attemptLocked(m *clMsg, n int) []byte {
	p.nextID++
	a := clAttempt{id: p.nextID, msgid: m.msgID(), inst: p.inst, conn: n, phase: int(p.s.phase.Load()), sent: time.Now()}
	m.attempts = append(m.attempts, a)
	p.byID[a.id] = attRef{m, len(m.attempts) - 1}
	b := make([]byte, 0, 64+p.s.cfg.Size)
	b = append(b, "pub "...)
	b = strconv.AppendUint(b, uint64(a.id), 10)
	b = append(b, ' ')
	b = append(b, m.stream.room.name...)
	b = append(b, ' ')
	b = append(b, a.msgid...)
	b = append(b, '\n')
	body := len(b)
	b = append(b, 'p')
	b = strconv.AppendInt(b, int64(p.id), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, m.seq, 10)
	b = append(b, ' ')
	for len(b)-body < p.s.cfg.Size {
		b = append(b, 'x')
	}
	return b
}

// write sends one frame; false (and the connection closed) when it failed.
func (p *publisher) write(conn *wsclient.Conn, frame []byte) bool {
	if nc := conn.NetConn(); nc != nil {
		_ = nc.SetWriteDeadline(time.Now().Add(pubWriteTimeout))
	}
	if err := conn.WriteFrame(wsclient.OpText, frame); err != nil {
		conn.Close()
		return false
	}
	return true
}

// read takes the answers on conn until it ends.
func (p *publisher) read(conn *wsclient.Conn, done chan<- struct{}) {
	defer close(done)
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			return
		}
		p.answer(b)
	}
}

// answer records one frame from the server.
func (p *publisher) answer(frame []byte) {
	now := time.Now()
	line, _, _ := bytes.Cut(frame, []byte{'\n'})
	f := bytes.Fields(line)
	if len(f) < 3 || (string(f[0]) != "pub" && string(f[0]) != "err") {
		p.s.oddity("%s: unexpected frame %q", p.label, truncate(frame))
		return
	}
	id, err := strconv.ParseUint(string(f[1]), 10, 32)
	p.mu.Lock()
	defer p.mu.Unlock()
	ref, found := p.byID[uint32(id)]
	if err != nil || !found {
		p.s.oddity("%s: answer to no attempt: %q", p.label, line)
		return
	}
	m, a := ref.m, &ref.m.attempts[ref.i]
	if a.kind != answerNone {
		p.s.oddity("%s: second answer to attempt %d (%q)", p.label, a.id, line)
		return
	}
	a.answered = now
	switch {
	case string(f[0]) == "pub" && len(f) == 5 && string(f[2]) == m.stream.room.name:
		offset, err := strconv.ParseUint(string(f[4]), 10, 64)
		if err != nil {
			p.s.oddity("%s: bad offset in %q", p.label, line)
			return
		}
		a.kind = answerAcked
		p.nAcked.Add(1)
		p.acks = append(p.acks, ackRec{at: now, sent: a.sent})
		if !m.acked {
			m.acked, m.ackEpoch, m.ackOffset, m.ackAt = true, string(f[3]), offset, now
			m.retryAt = time.Time{}
			delete(p.open, m)
			p.s.sawEpoch(m.ackEpoch)
		} else if m.ackOffset != offset || m.ackEpoch != string(f[3]) {
			p.doubles++
			p.s.oddity("%s: %s acknowledged at %s %d, then at %s %d", p.label, m.msgID(), m.ackEpoch, m.ackOffset, f[3], offset)
		}
	case string(f[0]) == "err" && string(f[2]) == "unknown":
		a.kind, a.code = answerUnknown, "unknown"
		p.nUnknown.Add(1)
		p.retryLocked(m)
	case string(f[0]) == "err":
		a.kind, a.code = answerRefused, string(f[2])
		p.nRefused.Add(1)
		p.s.refusal(a.code)
		if !m.acked && !m.uncertain() {
			m.gen++ // not published: publish it anew
		}
		p.retryLocked(m)
	default:
		p.s.oddity("%s: malformed answer %q", p.label, line)
	}
}

// retryLocked schedules m's next attempt, unless it was acknowledged or
// abandoned; under p.mu.
func (p *publisher) retryLocked(m *clMsg) {
	if m.acked || m.abandoned || !m.retryAt.IsZero() {
		return
	}
	m.retryAt = time.Now().Add(pubRetryWait << min(len(m.attempts)-1, 4))
}

// sendDue sends the retries that are due on conn (connection n).
func (p *publisher) sendDue(conn *wsclient.Conn, n int) bool {
	now := time.Now()
	var frames [][]byte
	p.mu.Lock()
	for m := range p.open {
		if m.retryAt.IsZero() || now.Before(m.retryAt) {
			continue
		}
		if now.Sub(m.attempts[0].sent) > p.s.cfg.RetryFor {
			m.abandoned = true
			delete(p.open, m)
			continue
		}
		m.retryAt = time.Time{}
		frames = append(frames, p.attemptLocked(m, n))
	}
	p.mu.Unlock()
	for _, f := range frames {
		if !p.write(conn, f) {
			return false
		}
	}
	return true
}

// checkOverdue marks attempts without an answer past AnswerBound and
// retries their messages (same msgid).
func (p *publisher) checkOverdue() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for m := range p.open {
		for i := range m.attempts {
			if a := &m.attempts[i]; a.kind == answerNone && !a.overdue && now.Sub(a.sent) > p.s.cfg.AnswerBound {
				a.overdue = true
				p.retryLocked(m)
			}
		}
	}
}

// dropped marks the attempts connection n left without an answer and
// retries their messages at once on the next connection.
func (p *publisher) dropped(n int) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conn = nil
	for m := range p.open {
		for i := range m.attempts {
			if a := &m.attempts[i]; a.kind == answerNone && a.conn == n {
				a.kind, a.answered = answerDropped, now
				if m.retryAt.IsZero() {
					m.retryAt = now
				}
			}
		}
	}
}

// stop ends new publishes; answers and retries go on.
func (p *publisher) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
}

// settled reports whether every message was acknowledged or abandoned.
func (p *publisher) settled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.open) == 0
}

// ackedSince reports whether an attempt sent at or after t was
// acknowledged.
func (p *publisher) ackedSince(t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.acks) - 1; i >= 0; i-- {
		if !p.acks[i].sent.Before(t) {
			return true
		}
		if p.acks[i].at.Before(t) {
			break
		}
	}
	return false
}
