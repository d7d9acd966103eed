package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/loopcast/loopcast/server/internal/bus"
)

// Appending to the stream. Every append is answered within bus.AckTimeout,
// whatever NATS does, and every answer is true:
//
//   - refused (bus.ErrRefused): nothing was sent, or JetStream said no
//     (an error reply, or no responders: no server took the subject).
//     Appends are refused at once while NATS is disconnected (the
//     connection keeps no reconnect buffer, so nothing refused is sent
//     later) or while the stream is known not to answer (see below);
//   - acknowledged: the stream's sequence, and whether JetStream found
//     the message's key already (a duplicate: the first one's sequence);
//   - unknown (bus.ErrUnknown): sent, but no acknowledgement came within
//     the deadline. The message may be in the stream. Its publisher
//     retries with the same key (Nats-Msg-Id), which JetStream then
//     de-duplicates.
//
// Acknowledgements come back on one wildcard inbox subscription and are
// matched to their appends by id, in whatever order they come: there is
// no head-of-line wait. An acknowledgement lost with a dead stream
// leader costs its own append an "unknown" answer, nothing more.
//
// After an append went unanswered, the stream is "not answering": the
// next appends are refused at once (true: not sent), except one probe
// append per probeEvery, until an acknowledgement arrives.
//
// Acknowledgements are labelled with the stream's epoch. After a NATS
// reconnect (the stream may have been recreated meanwhile) and when a
// sequence goes backwards, acknowledgements wait until the stream's
// identity was read again (Stream.run), so none carries the old epoch
// with the new stream's sequence.

// Limits of appending.
const (
	// appendQueue is the capacity of the queue of appends waiting to be
	// sent, next to StreamOptions.QueueBytes.
	appendQueue = 1 << 14

	// sweepEvery is how often unanswered appends are looked at; an
	// append is answered unknown within bus.AckTimeout + sweepEvery.
	sweepEvery = 100 * time.Millisecond

	// probeEvery is how often an append is let through while the stream
	// is not answering, to see it come back.
	probeEvery = 500 * time.Millisecond

	// msgIDHeader is JetStream's de-duplication header.
	msgIDHeader = "Nats-Msg-Id"
)

// appendMsg is an append waiting to be sent.
type appendMsg struct {
	room   string
	op     byte
	data   []byte
	key    string
	ticket bus.Ticket
	at     time.Time // when Append took it: its deadline is at + AckTimeout
}

// pendingAppend is an append sent and not yet answered.
type pendingAppend struct {
	room     string
	ticket   bus.Ticket
	deadline time.Time
	// An acknowledgement held until the stream's identity is read again
	// (acked is set; seq and dup are its content).
	acked bool
	seq   uint64
	dup   bool
}

// appender sends appends and answers them. Append is called from event
// loops and never blocks; one goroutine sends, nats.go's subscription
// goroutine matches acknowledgements, and a sweeper answers the ones
// past their deadline.
type appender struct {
	s     *Stream
	inbox string // replies come to inbox.<id>

	out    chan appendMsg
	queued atomic.Int64 // bytes in out

	mu      sync.Mutex
	pending map[uint64]*pendingAppend
	order   []uint64 // ids in sending order (so in deadline order); answered ones are skipped
	next    uint64
	// seqMax is the highest sequence acknowledged in the current epoch;
	// verifiedGen the reconnect count at which the stream's identity was
	// last read (Stream.run). An acknowledgement with a lower sequence,
	// or on a later connection, is held until it is read again.
	seqMax      uint64
	verifiedGen uint64
	verified1   bool // the identity was read once: acknowledgements before carry no epoch yet
	held        bool

	// quiet is set once an append went unanswered, cleared by the next
	// acknowledgement; probeAt is when the next probe may go.
	quiet   atomic.Bool
	probeAt atomic.Int64
}

func newAppender(s *Stream) *appender {
	return &appender{
		s:       s,
		inbox:   nats.NewInbox(),
		out:     make(chan appendMsg, appendQueue),
		pending: map[uint64]*pendingAppend{},
	}
}

// Errors an append is refused with at once (wrapped in bus.ErrRefused).
var (
	errDisconnected = errors.New("NATS disconnected")
	errNotAnswering = errors.New("the stream did not answer the last appends (no leader?)")
)

// refused wraps why into bus.ErrRefused.
func refused(why error) error { return fmt.Errorf("%w: %w", bus.ErrRefused, why) }

// add queues an append: see Stream.Append.
func (a *appender) add(m appendMsg) error {
	s := a.s
	switch {
	case s.closing.Load():
		return refused(ErrClosed)
	case !s.nc.IsConnected():
		return refused(errDisconnected)
	case a.quiet.Load():
		now := time.Now().UnixNano()
		at := a.probeAt.Load()
		if now < at || !a.probeAt.CompareAndSwap(at, now+int64(probeEvery)) {
			return refused(errNotAnswering)
		}
	}
	n := int64(len(m.data))
	if a.queued.Add(n) > int64(s.opts.QueueBytes) {
		a.queued.Add(-n)
		return refused(ErrBacklog)
	}
	m.data = append([]byte(nil), m.data...)
	m.at = time.Now()
	select {
	case a.out <- m:
		return nil
	default:
		a.queued.Add(-n)
		return refused(ErrBacklog)
	}
}

// write is the sending goroutine.
func (a *appender) write(stop <-chan struct{}) {
	for {
		select {
		case m := <-a.out:
			a.queued.Add(-int64(len(m.data)))
			a.send(m)
		case <-stop:
			return
		}
	}
}

func (a *appender) send(m appendMsg) {
	s := a.s
	a.mu.Lock()
	a.next++
	id := a.next
	a.pending[id] = &pendingAppend{room: m.room, ticket: m.ticket, deadline: m.at.Add(bus.AckTimeout)}
	a.order = append(a.order, id)
	a.mu.Unlock()
	msg := &nats.Msg{Subject: subject(m.room, m.op), Reply: a.inbox + "." + strconv.FormatUint(id, 10), Data: m.data}
	if m.key != "" {
		// Per room: the stream's window is shared by every subject.
		msg.Header = nats.Header{msgIDHeader: []string{m.room + "/" + m.key}}
	}
	if err := s.nc.PublishMsg(msg); err != nil {
		// Not handed to the connection (disconnected: no reconnect
		// buffer; closed; over max_payload): nothing was sent.
		if p := a.take(id); p != nil {
			s.stats.refused.Add(1)
			s.answer(p.ticket, p.room, bus.Position{}, false, refused(err))
		}
	}
}

// take removes and returns the pending append id, nil when it was
// answered already.
func (a *appender) take(id uint64) *pendingAppend {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pending[id]
	delete(a.pending, id)
	return p
}

// pubAckReply is JetStream's answer to a publish: an acknowledgement or
// an error.
type pubAckReply struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Error     *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// reply handles an answer on the inbox (nats.go's subscription
// goroutine).
func (a *appender) reply(m *nats.Msg) {
	s := a.s
	i := strings.LastIndexByte(m.Subject, '.')
	id, err := strconv.ParseUint(m.Subject[i+1:], 10, 64)
	if err != nil {
		return
	}
	var r pubAckReply
	var why error
	switch {
	case len(m.Data) == 0 && m.Header.Get("Status") == "503":
		why = errors.New("no responders: no JetStream server took the subject")
	case json.Unmarshal(m.Data, &r) != nil:
		why = fmt.Errorf("unreadable JetStream answer %q", m.Data)
	case r.Error != nil:
		why = fmt.Errorf("JetStream refused the message: %s (%d)", r.Error.Description, r.Error.ErrCode)
	}
	gen := s.nc.Stats().Reconnects
	a.mu.Lock()
	p := a.pending[id]
	if p == nil || p.acked {
		a.mu.Unlock()
		s.stats.lateAcks.Add(1) // answered unknown already (or a second reply)
		return
	}
	if why != nil {
		delete(a.pending, id)
		a.mu.Unlock()
		s.stats.refused.Add(1)
		s.answer(p.ticket, p.room, bus.Position{}, false, refused(why))
		return
	}
	a.quiet.Store(false)
	if !a.verified1 || gen > a.verifiedGen || r.Seq < a.seqMax && !r.Duplicate {
		// Before the stream was first read, on a new connection, or the
		// sequence went backwards (a duplicate's is the first message's):
		// the stream may be another one now. Held until Stream.run read
		// it again.
		p.acked, p.seq, p.dup = true, r.Seq, r.Duplicate
		a.held = true
		a.mu.Unlock()
		s.kick()
		return
	}
	delete(a.pending, id)
	a.seqMax = max(a.seqMax, r.Seq)
	epoch := s.epoch.Load()
	a.mu.Unlock()
	a.acked(p, epoch, r.Seq, r.Duplicate)
}

func (a *appender) acked(p *pendingAppend, epoch, seq uint64, dup bool) {
	s := a.s
	if dup {
		s.stats.duplicates.Add(1)
	}
	s.stats.appended.Add(1)
	s.answer(p.ticket, p.room, bus.Position{Epoch: epoch, Offset: seq}, dup, nil)
}

// verified is called by Stream.run once it read the stream's identity
// on connection gen: held acknowledgements are answered in the current
// epoch (a recreated stream's epoch, if it was recreated).
func (a *appender) verified(gen uint64, epochChanged bool) {
	a.mu.Lock()
	a.verifiedGen = max(a.verifiedGen, gen)
	a.verified1 = true
	if epochChanged {
		a.seqMax = 0
	}
	var release []*pendingAppend
	if a.held {
		a.held = false
		for id, p := range a.pending {
			if p.acked {
				release = append(release, p)
				delete(a.pending, id)
				a.seqMax = max(a.seqMax, p.seq)
			}
		}
	}
	epoch := a.s.epoch.Load()
	a.mu.Unlock()
	for _, p := range release {
		a.acked(p, epoch, p.seq, p.dup)
	}
}

// sweep answers unknown the appends past their deadline (held ones
// too), and notes that the stream is not answering.
func (a *appender) sweep(now time.Time) {
	var late []*pendingAppend
	a.mu.Lock()
	k := 0
	for ; k < len(a.order); k++ {
		p := a.pending[a.order[k]]
		if p == nil {
			continue // answered
		}
		if now.Before(p.deadline) {
			break
		}
		delete(a.pending, a.order[k])
		late = append(late, p)
	}
	a.order = append(a.order[:0], a.order[k:]...)
	a.mu.Unlock()
	if len(late) > 0 && !a.quiet.Swap(true) {
		a.probeAt.Store(now.Add(probeEvery).UnixNano())
		a.s.log.Warn("JetStream did not acknowledge appends in time: their outcome is unknown (publishers retry with the same key); refusing appends until it answers again",
			"unanswered", len(late), "ack_timeout", bus.AckTimeout)
	}
	for _, p := range late {
		a.s.stats.unknown.Add(1)
		a.s.answer(p.ticket, p.room, bus.Position{}, false, bus.ErrUnknown)
	}
}

// holding reports whether acknowledgements wait for the stream's
// identity to be read again.
func (a *appender) holding() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held
}

// oldest is the number of appends waiting for an answer and how long the
// oldest has waited.
func (a *appender) oldest(now time.Time) (n int, age time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range a.order {
		if p := a.pending[id]; p != nil {
			return len(a.pending), now.Sub(p.deadline.Add(-bus.AckTimeout))
		}
	}
	return len(a.pending), 0
}

// drain answers every append still waiting, at Close: unknown for those
// sent, refused for those not sent.
func (a *appender) drain() {
	for {
		select {
		case m := <-a.out:
			a.queued.Add(-int64(len(m.data)))
			a.s.answer(m.ticket, m.room, bus.Position{}, false, refused(ErrClosed))
			continue
		default:
		}
		break
	}
	a.mu.Lock()
	pending := a.pending
	a.pending = map[uint64]*pendingAppend{}
	a.order = nil
	a.mu.Unlock()
	for _, p := range pending {
		a.s.answer(p.ticket, p.room, bus.Position{}, false, bus.ErrUnknown)
	}
}
