package scenario

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/loopcast/loopcast/bench/seqcheck"
	"github.com/loopcast/loopcast/bench/wsclient"
)

// Bounds of a subscriber's resume.
const (
	// resumeRetryWait is the pause before a resume answered err
	// (offset_ahead: the instance has not read the stream that far yet)
	// is sent again.
	resumeRetryWait = 500 * time.Millisecond
	// resumeRetries: after this many refused resumes of a room the client
	// subscribes without a position (and the messages between count as
	// missing).
	resumeRetries = 20
)

// subscriber is one loopcast.v1 client: a goroutine that connects,
// subscribes to its rooms (resuming after the first time) and checks
// every message until the connection ends, then reconnects to another
// instance.
type subscriber struct {
	s     *clusterRun
	id    int
	home  int // instance of the first connection
	rooms []*clientRoom

	mu       sync.Mutex
	conn     *wsclient.Conn
	inst     int // instance of the current (or last) connection
	conns    int // connections made
	answered int // subscriptions answered on the current connection
	ready    bool
	tries    []int // refused resumes per room, on the current connection
}

// clientRoom is a subscriber's view of one room. Only the subscriber's
// goroutine touches it while the run goes on.
type clientRoom struct {
	room       *clRoom
	epoch      string // "" until the first sub reply
	start      uint64 // offset of the first sub reply
	last       uint64 // offset of the last message (start before any)
	subscribed bool   // on the current connection
	trk        []seqcheck.Tracker
	first      []uint64 // first seq seen per stream, 0: none
}

func newClientRoom(r *clRoom) *clientRoom {
	return &clientRoom{room: r, trk: make([]seqcheck.Tracker, len(r.streams)), first: make([]uint64, len(r.streams))}
}

// run connects and reconnects until ctx ends. gate bounds the first
// handshakes in flight (a token is taken before the first dial and given
// back after it).
func (c *subscriber) run(ctx context.Context, gate chan struct{}, dialers []*dialer) {
	rng := rand.New(rand.NewPCG(uint64(c.id), uint64(time.Now().UnixNano())))
	delay := c.s.cfg.Backoff
	inst := c.home
	first := true
	for ctx.Err() == nil && !c.s.stopping.Load() {
		if first {
			select {
			case gate <- struct{}{}:
			case <-ctx.Done():
				return
			}
		} else {
			// Full jitter before every reconnect: a client library does
			// not reconnect in lockstep.
			select {
			case <-time.After(time.Duration(rng.Int64N(int64(delay))) + time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
		conn, err := dialers[inst].dial(ctx, "/ws")
		if first {
			<-gate
		}
		if err != nil {
			delay = min(2*delay, maxBackoff)
			inst = (inst + 1) % len(dialers)
			first = false
			continue
		}
		if !first {
			c.s.current().reconnects.Add(1)
		}
		first, delay = false, c.s.cfg.Backoff
		c.session(conn, inst)
		// Another instance next: where the gateway sends a reconnect.
		inst = (inst + 1) % len(dialers)
	}
}

// session subscribes on conn and reads until it ends.
func (c *subscriber) session(conn *wsclient.Conn, inst int) {
	c.mu.Lock()
	if c.s.stopping.Load() {
		c.mu.Unlock()
		conn.Close()
		return
	}
	c.conn, c.inst, c.answered, c.ready = conn, inst, 0, false
	c.conns++
	c.tries = make([]int, len(c.rooms))
	c.mu.Unlock()
	for k, cr := range c.rooms {
		cr.subscribed = false
		if err := c.subscribe(conn, k, cr, true); err != nil {
			break
		}
	}
	for {
		_, p, err := conn.ReadMessage()
		if err != nil {
			break
		}
		c.handle(conn, p)
	}
	c.mu.Lock()
	if c.ready {
		c.s.ready.Add(-1)
	}
	c.conn, c.ready = nil, false
	c.mu.Unlock()
	conn.Close()
}

// subscribe sends room k's sub: with the last position once there is
// one (a resume), unless resume is false.
func (c *subscriber) subscribe(conn *wsclient.Conn, k int, cr *clientRoom, resume bool) error {
	return conn.WriteFrame(wsclient.OpText, c.subCommand(k, cr, resume))
}

// subCommand is room k's sub command.
func (c *subscriber) subCommand(k int, cr *clientRoom, resume bool) []byte {
	cmd := "sub " + strconv.Itoa(k+1) + " " + cr.room.name
	if cr.epoch != "" && resume {
		cmd += " " + cr.epoch + " " + strconv.FormatUint(cr.last, 10)
	}
	return []byte(cmd)
}

// closeConn closes the current connection (a gateway reset, or the end);
// the session's reader sees it end.
func (c *subscriber) closeConn() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
	}
}

// handle takes one frame from the server.
func (c *subscriber) handle(conn *wsclient.Conn, p []byte) {
	line, payload, _ := bytes.Cut(p, []byte{'\n'})
	var f [6][]byte
	n := 0
	for len(line) > 0 && n < len(f) {
		w, rest, _ := bytes.Cut(line, []byte{' '})
		f[n], line, n = w, rest, n+1
	}
	switch {
	case n == 4 && string(f[0]) == "msg":
		c.message(f[1], f[2], f[3], payload)
	case n == 6 && string(f[0]) == "sub":
		c.subReply(f[1], f[2], f[3], f[4], f[5])
	case n >= 3 && string(f[0]) == "err":
		c.subRefused(conn, f[1], f[2], p)
	default:
		c.s.oddity("client %d: unexpected frame %q", c.id, truncate(p))
	}
}

// roomOf is the subscriber's room called name, or nil.
func (c *subscriber) roomOf(name []byte) (int, *clientRoom) {
	for k, cr := range c.rooms {
		if cr.room.name == string(name) {
			return k, cr
		}
	}
	return -1, nil
}

// message checks one room message: epoch, offset, the publisher's
// sequence, and the place the message was acknowledged at.
func (c *subscriber) message(room, epoch, offsetB, payload []byte) {
	ph := c.s.current()
	ph.deliveries.Add(1)
	_, cr := c.roomOf(room)
	offset, err := strconv.ParseUint(string(offsetB), 10, 64)
	if cr == nil || err != nil {
		c.s.oddity("client %d: msg of room %q (offset %q) it is not in", c.id, room, offsetB)
		return
	}
	if !cr.subscribed {
		c.s.oddity("client %d: msg of %s before its sub reply", c.id, cr.room.name)
	}
	if string(epoch) != cr.epoch {
		ph.epochChanges.Add(1)
		c.s.sawEpoch(string(epoch))
		cr.epoch = string(epoch)
	}
	backwards := offset <= cr.last
	cr.last = max(cr.last, offset)
	pub, seq, ok := parsePayload(payload)
	pos := -1
	if ok {
		pos = cr.room.pos(pub)
	}
	if pos < 0 {
		ph.unpublished.Add(1)
		c.s.oddity("client %d: msg in %s with a payload no publisher sent there: %q", c.id, cr.room.name, truncate(payload))
		return
	}
	st := cr.room.streams[pos]
	t := &cr.trk[pos]
	if cr.first[pos] == 0 {
		cr.first[pos] = seq
		t.Start(seq)
	}
	expected := t.Next()
	kind := t.Observe(seq)
	switch kind {
	case seqcheck.Gap:
		ph.gaps.Add(1)
		ph.missing.Add(int64(seq - expected))
		st.mark(false, expected, seq-1, 1)
	case seqcheck.Late:
		ph.reordered.Add(1)
		st.mark(false, seq, seq, -1)
	case seqcheck.Duplicate:
		ph.duplicates.Add(1)
		st.mark(true, seq, seq, 1)
	case seqcheck.InOrder:
		if backwards {
			ph.misplaced.Add(1) // in sequence, but at an offset not after the last one
			c.example(ph, "offset %d not after %d", cr, pub, seq, offset, cr.last)
		}
	}
	if kind != seqcheck.InOrder {
		c.example(ph, "%s: expected seq %d", cr, pub, seq, offset, kind, expected)
	}
	misplaced, known := st.delivered(seq, offset)
	switch {
	case !known:
		ph.unpublished.Add(1)
		c.s.oddity("client %d: %s seq %d of p%d delivered, never published", c.id, cr.room.name, seq, pub)
	case misplaced:
		ph.misplaced.Add(1)
		c.example(ph, "delivered elsewhere at another offset", cr, pub, seq, offset)
	}
}

// example notes one delivery fault in ph (the first few of the run):
// what, where (client, instance, room) and which message.
func (c *subscriber) example(ph *phase, what string, cr *clientRoom, pub int, seq, offset uint64, args ...any) {
	c.mu.Lock()
	inst := c.inst
	c.mu.Unlock()
	// One note per fault, however many clients saw it: the first client
	// on each instance.
	key := fmt.Sprintf("%d %s %d %d %s", inst, cr.room.name, pub, seq, what)
	s := c.s
	s.mu.Lock()
	if s.examples == nil {
		s.examples = map[string]bool{}
	}
	seen, full := s.examples[key], len(s.examples) >= maxExamples
	if !seen && !full {
		s.examples[key] = true
	}
	s.mu.Unlock()
	if seen || full {
		return
	}
	s.note(ph, "delivery fault: client %d on %s, room %s, p%d seq %d at offset %d: %s", c.id,
		s.fleet.inst[inst].name, cr.room.name, pub, seq, offset, fmt.Sprintf(what, args...))
}

// maxExamples bounds the delivery faults noted one by one.
const maxExamples = 10

// subReply takes `sub <id> <room> <epoch> <offset> <status>`.
func (c *subscriber) subReply(idB, room, epoch, offsetB, status []byte) {
	k, cr := c.roomOf(room)
	offset, err := strconv.ParseUint(string(offsetB), 10, 64)
	if cr == nil || err != nil || string(idB) != strconv.Itoa(k+1) {
		c.s.oddity("client %d: sub reply %s %s %s %s %s", c.id, idB, room, epoch, offsetB, status)
		return
	}
	ph := c.s.current()
	switch {
	case cr.epoch == "":
		cr.epoch, cr.start, cr.last = string(epoch), offset, offset
		c.s.sawEpoch(cr.epoch)
	case string(status) == "recovered":
		ph.resumesRecovered.Add(1)
		if string(epoch) != cr.epoch {
			ph.epochChanges.Add(1)
			c.s.sawEpoch(string(epoch))
			cr.epoch = string(epoch)
		}
	case string(status) == "epoch_changed":
		ph.epochChanges.Add(1)
		ph.resumesNotRecovered.Add(1)
		c.s.sawEpoch(string(epoch))
		cr.epoch, cr.last = string(epoch), offset
	case string(status) == "history_passed":
		ph.resumesNotRecovered.Add(1)
		cr.last = offset
	case string(status) == "live":
		// A resume given up (see subRefused): already counted.
		cr.epoch, cr.last = string(epoch), offset
	default:
		c.s.oddity("client %d: sub reply status %q", c.id, status)
	}
	if cr.subscribed {
		c.s.oddity("client %d: second sub reply for %s", c.id, cr.room.name)
		return
	}
	cr.subscribed = true
	c.mu.Lock()
	c.answered++
	if c.answered == len(c.rooms) && c.conn != nil {
		c.ready = true
		c.s.ready.Add(1)
	}
	c.mu.Unlock()
}

// subRefused takes `err <id> <code> …` to a sub: a resume the instance
// cannot serve yet (offset_ahead: it has not read the stream that far) is
// sent again after a pause, resumeRetries times, then given up for a
// plain subscription.
func (c *subscriber) subRefused(conn *wsclient.Conn, idB, code, frame []byte) {
	id, err := strconv.Atoi(string(idB))
	if err != nil || id < 1 || id > len(c.rooms) {
		c.s.oddity("client %d: %q", c.id, truncate(frame))
		return
	}
	k, cr := id-1, c.rooms[id-1]
	ph := c.s.current()
	ph.resumeErrors.Add(1)
	c.s.refusal(string(code))
	c.mu.Lock()
	c.tries[k]++
	tries := c.tries[k]
	c.mu.Unlock()
	resume := tries < resumeRetries
	if !resume && cr.epoch != "" {
		ph.resumesNotRecovered.Add(1)
	}
	cmd := c.subCommand(k, cr, resume) // here: cr is the reader's
	time.AfterFunc(resumeRetryWait, func() {
		c.mu.Lock()
		current := c.conn == conn
		c.mu.Unlock()
		if current {
			_ = conn.WriteFrame(wsclient.OpText, cmd)
		}
	})
}

// parsePayload reads "p<publisher> <seq> …".
func parsePayload(p []byte) (pub int, seq uint64, ok bool) {
	if len(p) < 4 || p[0] != 'p' {
		return 0, 0, false
	}
	a, rest, ok := bytes.Cut(p[1:], []byte{' '})
	if !ok {
		return 0, 0, false
	}
	b, _, _ := bytes.Cut(rest, []byte{' '})
	pub64, err1 := strconv.ParseUint(string(a), 10, 16)
	seq, err2 := strconv.ParseUint(string(b), 10, 64)
	if err1 != nil || err2 != nil || seq == 0 {
		return 0, 0, false
	}
	return int(pub64), seq, true
}

// truncate shortens a frame for a message.
func truncate(p []byte) string {
	if len(p) > 120 {
		return fmt.Sprintf("%s…", p[:120])
	}
	return string(p)
}
