package testutil

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// AnswerKind is what became of one attempt to publish.
type AnswerKind int

const (
	// NoAnswer: nothing came back (yet).
	NoAnswer AnswerKind = iota
	// Acked: `pub <id> <room> <epoch> <offset>`.
	Acked
	// Refused: `err <id> <code> …` with a code other than unknown: the
	// attempt had no effect.
	Refused
	// Unknown: `err <id> unknown …`: the outcome cannot be known; retry
	// with the same message id.
	Unknown
	// Dropped: the connection closed before an answer; the outcome is
	// unknown too.
	Dropped
)

func (k AnswerKind) String() string {
	return [...]string{"none", "ack", "refused", "unknown", "dropped"}[k]
}

// Attempt is one `pub` frame sent for a Publish.
type Attempt struct {
	ID       uint32 // the command id, unique within the Publisher
	Via      string // the URL of the connection it went through
	Conn     int    // that connection's number: 1, 2, … (Connects)
	Sent     time.Time
	Answered time.Time // when the answer came (or the connection dropped); zero: none
	Kind     AnswerKind
	Code     string // err code, for Refused and Unknown
	Line     string // the answer's line
	Epoch    string // Acked: the position the server gave it
	Offset   uint64
}

// Publish is one message a Publisher published, with every attempt.
type Publish struct {
	Seq      int    // 1, 2, … in the Publisher's order
	Room     string // rooms are taken round-robin
	MsgID    string // "" when PublisherOptions.MsgIDs is off
	Payload  string // "<name> <seq>": unique across publishers with distinct names
	Attempts []Attempt
}

// Outcome is what a Publish came to.
type Outcome int

const (
	// Unresolved: no attempt was acknowledged, and one of them may have
	// been stored (no answer, unknown, dropped).
	Unresolved Outcome = iota
	// Confirmed: some attempt was acknowledged: the message is in the
	// room's order, at Ack's position, and must be delivered exactly once.
	Confirmed
	// Rejected: every attempt was refused: the message must never be
	// delivered.
	Rejected
)

func (o Outcome) String() string { return [...]string{"unresolved", "acked", "refused"}[o] }

// Outcome is what p came to.
func (p *Publish) Outcome() Outcome {
	if p.Ack() != nil {
		return Confirmed
	}
	for _, a := range p.Attempts {
		if a.Kind != Refused {
			return Unresolved
		}
	}
	if len(p.Attempts) == 0 {
		return Unresolved
	}
	return Rejected
}

// Ack is the first acknowledged attempt, or nil.
func (p *Publish) Ack() *Attempt {
	for i := range p.Attempts {
		if p.Attempts[i].Kind == Acked {
			return &p.Attempts[i]
		}
	}
	return nil
}

// uncertain reports whether an attempt may have been stored without an
// acknowledgement.
func (p *Publish) uncertain() bool {
	for _, a := range p.Attempts {
		if a.Kind == Unknown || a.Kind == Dropped {
			return true
		}
	}
	return false
}

// PublisherOptions configure a Publisher.
type PublisherOptions struct {
	// Name starts every payload and message id: [A-Za-z0-9]+, distinct
	// per publisher of a test.
	Name string
	// URLs are loopcast.v1 endpoints (ws://host/ws) in order of
	// preference: a (re)connection tries them in turn from the first.
	URLs []string
	// Rooms receive the publishes round-robin.
	Rooms []string
	// Interval between two publishes (50/s: 20 ms).
	Interval time.Duration
	// MsgIDs sends `pub <id> <room> <msgid>` and retries the same pub,
	// with the same message id, after an `unknown` answer or a dropped
	// connection (on the connection there is then), until an attempt
	// is acknowledged. A refusal ends the retries only if no earlier
	// attempt's outcome was unknown: otherwise it says only that this
	// attempt was not stored, not the earlier one. Off, a publish is sent
	// once whatever happens (retrying without an id could double it).
	MsgIDs bool
	// RetryWait is the pause before a retry. Default 100 ms.
	RetryWait time.Duration
	// RetryFor stops retrying a publish this long after its first
	// attempt. Default 30 s.
	RetryFor time.Duration
}

// Publisher is a loopcast.v1 client that publishes
// `pub <id> <room>[ <msgid>]\n<name> <seq>` at a fixed rate on one
// connection and records every attempt and its answer, with when it
// came: what a test needs to hold each publish's answer against its fate.
// Start it with StartPublisher; StopPublishing ends the publishing (the
// connection stays for answers and retries), Close ends everything.
type Publisher struct {
	opts PublisherOptions

	mu       sync.Mutex
	pubs     []*Publish
	byID     map[uint32][2]int // command id -> publish index, attempt index
	nextID   uint32
	retries  []retry
	faults   []string
	connects int
	stopped  bool // StopPublishing
	url      string

	closing chan struct{}
	done    chan struct{}
	once    sync.Once
}

type retry struct {
	pub int
	at  time.Time
}

// StartPublisher connects and starts publishing; it runs until Close.
func StartPublisher(opts PublisherOptions) *Publisher {
	if opts.RetryWait <= 0 {
		opts.RetryWait = 100 * time.Millisecond
	}
	if opts.RetryFor <= 0 {
		opts.RetryFor = 30 * time.Second
	}
	p := &Publisher{opts: opts, byID: map[uint32][2]int{}, closing: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

// StopPublishing ends new publishes; answers and retries go on.
func (p *Publisher) StopPublishing() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
}

// Close ends the connection and waits for the Publisher's goroutines.
// Attempts still without an answer stay NoAnswer.
func (p *Publisher) Close() {
	p.once.Do(func() { close(p.closing) })
	<-p.done
}

// Publishes is a copy of every publish so far, in order.
func (p *Publisher) Publishes() []Publish {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Publish, len(p.pubs))
	for i, x := range p.pubs {
		out[i] = *x
		out[i].Attempts = append([]Attempt(nil), x.Attempts...)
	}
	return out
}

// Faults are frames the Publisher could not make sense of (an answer to
// no attempt, a second answer to one, a malformed line).
func (p *Publisher) Faults() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.faults...)
}

// Connects counts successful connections.
func (p *Publisher) Connects() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connects
}

// URL is the endpoint of the current (or last) connection.
func (p *Publisher) URL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.url
}

// Settled reports whether nothing more is to be expected before bound:
// no retry is due, and every attempt was answered or was sent more than
// bound ago.
func (p *Publisher) Settled(bound time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.retries) > 0 {
		return false
	}
	for _, x := range p.pubs {
		for _, a := range x.Attempts {
			if a.Kind == NoAnswer && time.Since(a.Sent) < bound {
				return false
			}
		}
	}
	return true
}

func (p *Publisher) fault(format string, args ...any) {
	p.faults = append(p.faults, fmt.Sprintf(format, args...))
}

func (p *Publisher) run() {
	defer close(p.done)
	for {
		c, url, n := p.dial()
		if c == nil {
			return // closing
		}
		if !p.session(c, url, n) {
			return
		}
	}
}

// dial connects to the first URL that answers, in order, with backoff
// between rounds; nil when closing.
func (p *Publisher) dial() (*gorilla.Conn, string, int) {
	backoff := 20 * time.Millisecond
	for {
		for _, u := range p.opts.URLs {
			select {
			case <-p.closing:
				return nil, "", 0
			default:
			}
			d := gorilla.Dialer{Subprotocols: []string{"loopcast.v1"}, HandshakeTimeout: 5 * time.Second}
			c, _, err := d.Dial(u, nil)
			if err == nil {
				p.mu.Lock()
				p.connects++
				p.url = u
				n := p.connects
				p.mu.Unlock()
				return c, u, n
			}
		}
		select {
		case <-p.closing:
			return nil, "", 0
		case <-time.After(backoff/2 + rand.N(backoff)):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// pconn is one connection of a Publisher; ok turns false when a write
// failed.
type pconn struct {
	c   *gorilla.Conn
	url string
	n   int
	ok  bool
}

// session publishes on c until it drops (true: reconnect) or the
// Publisher closes (false).
func (p *Publisher) session(c *gorilla.Conn, url string, n int) bool {
	pc := &pconn{c: c, url: url, n: n, ok: true}
	readDone := make(chan struct{})
	go p.read(c, readDone)
	tick := time.NewTicker(p.opts.Interval)
	defer tick.Stop()
	retryTick := time.NewTicker(10 * time.Millisecond)
	defer retryTick.Stop()
	p.sendRetries(pc) // what the last connection left unknown
	for pc.ok {
		select {
		case <-tick.C:
			p.publishNext(pc)
		case <-retryTick.C:
			p.sendRetries(pc)
		case <-readDone:
			pc.ok = false
		case <-p.closing:
			_ = c.Close()
			<-readDone
			return false
		}
	}
	_ = c.Close()
	<-readDone
	p.dropped(n)
	return true
}

// publishNext sends the next publish, unless publishing stopped.
func (p *Publisher) publishNext(pc *pconn) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	seq := len(p.pubs) + 1
	x := &Publish{Seq: seq, Room: p.opts.Rooms[(seq-1)%len(p.opts.Rooms)], Payload: p.opts.Name + " " + strconv.Itoa(seq)}
	if p.opts.MsgIDs {
		x.MsgID = p.opts.Name + "-" + strconv.Itoa(seq)
	}
	p.pubs = append(p.pubs, x)
	p.mu.Unlock()
	p.send(pc, seq-1)
}

// sendRetries sends the retries that are due.
func (p *Publisher) sendRetries(pc *pconn) {
	p.mu.Lock()
	var due []int
	rest := p.retries[:0]
	for _, r := range p.retries {
		if time.Now().Before(r.at) {
			rest = append(rest, r)
		} else {
			due = append(due, r.pub)
		}
	}
	p.retries = rest
	p.mu.Unlock()
	for _, i := range due {
		if !pc.ok {
			p.mu.Lock()
			p.retries = append(p.retries, retry{i, time.Now()}) // on the next connection
			p.mu.Unlock()
			continue
		}
		p.send(pc, i)
	}
}

// send writes one attempt of publish i on pc.
func (p *Publisher) send(pc *pconn, i int) {
	p.mu.Lock()
	x := p.pubs[i]
	p.nextID++
	id := p.nextID
	line := "pub " + strconv.FormatUint(uint64(id), 10) + " " + x.Room
	if x.MsgID != "" {
		line += " " + x.MsgID
	}
	frame := []byte(line + "\n" + x.Payload)
	x.Attempts = append(x.Attempts, Attempt{ID: id, Via: pc.url, Conn: pc.n, Sent: time.Now()})
	p.byID[id] = [2]int{i, len(x.Attempts) - 1}
	p.mu.Unlock()
	_ = pc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := pc.c.WriteMessage(gorilla.TextMessage, frame); err != nil {
		pc.ok = false // dropped marks this attempt once the reader is done
		_ = pc.c.Close()
	}
}

// read takes the answers on c until it fails.
func (p *Publisher) read(c *gorilla.Conn, done chan<- struct{}) {
	defer close(done)
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return
		}
		p.answer(string(b))
	}
}

// answer records one frame from the server.
func (p *Publisher) answer(frame string) {
	now := time.Now()
	line, _, _ := strings.Cut(frame, "\n")
	f := strings.Fields(line)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(f) < 2 || (f[0] != "pub" && f[0] != "err") {
		p.fault("unexpected frame %q", frame)
		return
	}
	id64, err := strconv.ParseUint(f[1], 10, 32)
	where, found := p.byID[uint32(id64)]
	if err != nil || !found {
		p.fault("answer to no attempt: %q", line)
		return
	}
	x := p.pubs[where[0]]
	a := &x.Attempts[where[1]]
	if a.Kind != NoAnswer {
		p.fault("second answer to attempt %d of %s (%q after %q)", a.ID, x.Payload, line, a.Line)
		return
	}
	a.Answered, a.Line = now, line
	switch {
	case f[0] == "pub" && len(f) == 5 && f[2] == x.Room:
		a.Kind, a.Epoch = Acked, f[3]
		if a.Offset, err = strconv.ParseUint(f[4], 10, 64); err != nil {
			p.fault("bad offset in %q", line)
		}
	case f[0] == "err" && len(f) >= 3 && f[2] == "unknown":
		a.Kind, a.Code = Unknown, f[2]
		p.retryLocked(where[0])
	case f[0] == "err" && len(f) >= 3:
		a.Kind, a.Code = Refused, f[2]
		if x.uncertain() {
			p.retryLocked(where[0]) // an earlier attempt may be stored
		}
	default:
		p.fault("malformed answer %q", line)
	}
}

// dropped marks the attempts connection n left without an answer, and
// schedules their retries.
func (p *Publisher) dropped(n int) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.pubs {
		for j := range x.Attempts {
			if a := &x.Attempts[j]; a.Kind == NoAnswer && a.Conn == n {
				a.Kind, a.Answered = Dropped, now
				if j == len(x.Attempts)-1 {
					p.retryLocked(i)
				}
			}
		}
	}
}

// retryLocked schedules another attempt of publish i, if the options
// allow it and it was not acknowledged; under p.mu.
func (p *Publisher) retryLocked(i int) {
	x := p.pubs[i]
	if !p.opts.MsgIDs || x.Ack() != nil || time.Since(x.Attempts[0].Sent) > p.opts.RetryFor {
		return
	}
	for _, r := range p.retries {
		if r.pub == i {
			return
		}
	}
	// 1, 2, 4, 8, then 16 times RetryWait.
	wait := p.opts.RetryWait << min(len(x.Attempts)-1, 4)
	p.retries = append(p.retries, retry{i, time.Now().Add(wait)})
}
