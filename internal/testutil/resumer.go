package testutil

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// Resumer is a loopcast.v1 client for tests of reconnects: it subscribes
// to its rooms, checks every message, and when its connection drops it
// reconnects with jittered backoff and resumes each room from the last
// message it received. Messages are "<room> <seq>" with seq counting
// each room's messages from 1 (as PublishSeq sends them); the Resumer
// records any seq that is not the previous one plus one (a loss, a
// duplicate or a reordering), any offset that does not increase, and any
// resume the server did not recover. The same seq again at a later offset
// is the publisher's retry (two messages in the log), counted apart.
type Resumer struct {
	url   string
	rooms []string

	mu       sync.Mutex
	conn     *gorilla.Conn
	last     map[string]position // per room
	faults   []string
	connects int
	// republished counts messages the publisher sent twice (same seq,
	// a later offset): not faults of the delivery.
	republished int
	closed      bool
	done        chan struct{}
}

type position struct {
	epoch  string
	offset uint64
	seq    int // 0: none received yet
	count  int // messages received
}

// StartResumer connects to url (ws://host/ws) and subscribes to rooms;
// it runs until Close.
func StartResumer(url string, rooms []string) *Resumer {
	r := &Resumer{url: url, rooms: rooms, last: map[string]position{}, done: make(chan struct{})}
	go r.run()
	return r
}

// Seq is the last seq received from room.
func (r *Resumer) Seq(room string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[room].seq
}

// Received is the number of messages received from room.
func (r *Resumer) Received(room string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[room].count
}

// Subscribed reports whether every room's first subscription was
// answered.
func (r *Resumer) Subscribed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, room := range r.rooms {
		if r.last[room].epoch == "" {
			return false
		}
	}
	return true
}

// Faults lists what went wrong, empty when every message came exactly
// once, in order.
func (r *Resumer) Faults() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.faults...)
}

// Connects counts successful connections.
func (r *Resumer) Connects() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.connects
}

// Close stops the client and waits for it.
func (r *Resumer) Close() {
	r.mu.Lock()
	r.closed = true
	if r.conn != nil {
		_ = r.conn.Close()
	}
	r.mu.Unlock()
	<-r.done
}

func (r *Resumer) fault(format string, args ...any) {
	r.faults = append(r.faults, fmt.Sprintf(format, args...))
}

func (r *Resumer) run() {
	defer close(r.done)
	backoff := 10 * time.Millisecond
	for {
		r.mu.Lock()
		closed := r.closed
		r.mu.Unlock()
		if closed {
			return
		}
		d := gorilla.Dialer{Subprotocols: []string{"loopcast.v1"}, HandshakeTimeout: 5 * time.Second}
		c, _, err := d.Dial(r.url, nil)
		if err != nil {
			// Jittered exponential backoff, as a client library does.
			time.Sleep(backoff/2 + rand.N(backoff))
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		if !r.session(c) {
			return
		}
		time.Sleep(rand.N(100 * time.Millisecond)) // reconnect jitter after a drop
	}
}

// session serves one connection until it drops; false when closed.
func (r *Resumer) session(c *gorilla.Conn) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = c.Close()
		return false
	}
	r.conn = c
	r.connects++
	var cmds []string
	for i, room := range r.rooms {
		p, ok := r.last[room]
		if ok && p.epoch != "" {
			cmds = append(cmds, fmt.Sprintf("sub %d %s %s %d", i+1, room, p.epoch, p.offset))
		} else {
			cmds = append(cmds, fmt.Sprintf("sub %d %s", i+1, room))
		}
	}
	r.mu.Unlock()
	for _, cmd := range cmds {
		if err := c.WriteMessage(gorilla.TextMessage, []byte(cmd)); err != nil {
			return true // dropped already: reconnect
		}
	}
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			r.mu.Lock()
			closed := r.closed
			r.conn = nil
			r.mu.Unlock()
			_ = c.Close()
			return !closed
		}
		r.mu.Lock()
		r.handle(b)
		r.mu.Unlock()
	}
}

// handle checks one frame from the server; under r.mu.
func (r *Resumer) handle(b []byte) {
	line, body, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	switch {
	case len(f) == 6 && f[0] == "sub":
		room, status := f[2], f[5]
		p := r.last[room]
		off, _ := strconv.ParseUint(f[4], 10, 64)
		if p.epoch != "" && status != "recovered" {
			r.fault("%s: resume from %s %d answered %q", room, p.epoch, p.offset, line)
		}
		if p.epoch == "" {
			p.epoch, p.offset = f[3], off
			r.last[room] = p
		}
	case len(f) == 4 && f[0] == "msg":
		room := f[1]
		off, _ := strconv.ParseUint(f[3], 10, 64)
		p := r.last[room]
		var seq int
		if _, err := fmt.Sscanf(string(body), room+" %d", &seq); err != nil {
			r.fault("%s: payload %q", room, body)
			return
		}
		if p.epoch != "" && (f[2] != p.epoch || off <= p.offset) {
			r.fault("%s: offset %s %d after %s %d", room, f[2], off, p.epoch, p.offset)
		}
		switch {
		case p.seq != 0 && seq == p.seq && off > p.offset:
			// The publisher sent it again (a retry after an error): two
			// messages in the room's log, each delivered once.
			r.republished++
			r.last[room] = position{f[2], off, seq, p.count}
			return
		case p.seq != 0 && seq != p.seq+1:
			r.fault("%s: seq %d after %d (offset %d)", room, seq, p.seq, off)
		}
		r.last[room] = position{f[2], off, seq, p.count + 1}
	default:
		r.fault("unexpected frame %q", b)
	}
}

// PublishSeq publishes "<room> <seq>" for seq 1 to n in each room,
// round-robin, every interval, through publish; it stops early on an
// error and returns it.
func PublishSeq(rooms []string, n int, interval time.Duration, publish func(room, payload string) error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for seq := 1; seq <= n; seq++ {
		for _, room := range rooms {
			if err := publish(room, fmt.Sprintf("%s %d", room, seq)); err != nil {
				return fmt.Errorf("publish %s %d: %w", room, seq, err)
			}
		}
		<-tick.C
	}
	return nil
}
