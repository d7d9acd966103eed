package server

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/loopcast/loopcast/server/internal/bus"
	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/frame"
	occ "github.com/loopcast/loopcast/server/internal/occupancy"
)

// Occupancy: how many connections are subscribed to a room, on every
// instance. Nothing is sent per join: once per occupancyInterval one
// goroutine reads every room's member count (kept by the engine anyway),
// shares this instance's changed counts with the others in one batch
// (package occupancy, over the transport's bus.Sharer), adds up the
// others', and sends each watched room whose total changed an "occ"
// frame, encoded once per room and written by each loop to its watchers.
const (
	occupancyInterval = time.Second
	// occupancyTTL: an instance not heard from for this long is dropped
	// with its counts (it died, or lost NATS). A dead instance's members
	// stop counting within occupancyTTL+occupancyInterval (6 s).
	occupancyTTL = 5 * time.Second
	// occupancyBatchBytes bounds one instance's batch of each kind (NATS's
	// default max_payload is 1 MiB, and one message carries both);
	// changes that do not fit go in the next.
	occupancyBatchBytes = 508 << 10 // two in one message stay under 1 MiB
	// occupancyRefreshShare: each batch repeats at least a tenth of the
	// counts, so a lost batch is corrected within about ten intervals.
	occupancyRefreshShare = 10
)

// occupancy is the server's side of it. tick runs on its own goroutine
// (under tickMu: the fields up to it are tick's); watch and unwatch on
// the event loops; count anywhere.
type occupancy struct {
	s        *Server
	table    occ.Table
	tickMu   sync.Mutex
	rep      occ.Reporter
	sharer   bus.Sharer // nil on a single instance
	counts   map[string]occ.Value
	batch    []byte
	envelope []byte
	byLoop   [][]occFrame

	mu      sync.Mutex
	watched map[string]*watchedRoom
	gen     uint64 // announcements so far (under mu)

	shared, shareErrors, badBatches, updates atomic.Int64
}

// watchedRoom is a room some connection watches (loopcast.v1 "watch"),
// under occupancy.mu.
type watchedRoom struct {
	name string
	// last is the total sent in the room's last "occ" frame (or in the
	// first watcher's reply).
	last    int64
	perLoop []int32 // watchers per loop
	total   int     // watchers
}

// occFrame is one room's "occ" frame of announcement gen, shared by
// every loop (read only).
type occFrame struct {
	room  string
	gen   uint64
	frame []byte
}

// watcher is a connection on a loop watching a room's occupancy or
// presence since announcement since: it gets the frames of later
// announcements only (its reply told it the state as of since).
type watcher struct {
	cs    *conn
	since uint64
}

func newOccupancy(s *Server, id uint64) *occupancy {
	o := &occupancy{s: s, counts: map[string]occ.Value{}, watched: map[string]*watchedRoom{}}
	o.table.Kind, o.table.Self = occ.Rooms, id
	o.rep = occ.Reporter{Kind: occ.Rooms, ID: id, MaxBytes: occupancyBatchBytes, RefreshShare: occupancyRefreshShare}
	o.byLoop = make([][]occFrame, s.nloops)
	if sh, ok := s.cfg.Broker.(bus.Sharer); ok {
		o.sharer = sh
	}
	return o
}

// run ticks until ctx ends, then closes done.
func (o *occupancy) run(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(occupancyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			o.tick(time.Now().UnixNano())
		}
	}
}

// tick reads this instance's counts, shares them, drops silent
// instances and notifies the watchers of every room whose total changed.
func (o *occupancy) tick(now int64) { o.tickWith(now, o.sharer) }

// tickWith is tick, sharing through sharer (nil: not shared).
func (o *occupancy) tickWith(now int64, sharer bus.Sharer) {
	o.tickMu.Lock()
	defer o.tickMu.Unlock()
	clear(o.counts)
	o.s.engine.EachRoom(func(ri fanout.RoomInfo) {
		if ri.Members > 0 {
			o.counts[ri.Name] = occ.Value{Count: ri.Members}
		}
	})
	var users []byte
	if sharer != nil {
		o.batch = o.rep.Report(o.batch[:0], o.counts)
		users = o.s.pres.report(now, true)
		// One cluster message per instance and interval, both batches in
		// it, whatever the rooms, users and join rate.
		o.envelope = appendEnvelope(o.envelope[:0], o.batch, users)
		if err := sharer.Share(o.envelope); err != nil {
			o.shareErrors.Add(1)
			o.s.pres.shareErrors.Add(1)
		} else {
			o.shared.Add(1)
			o.s.pres.shared.Add(1)
		}
	} else {
		o.s.pres.report(now, false)
	}
	o.table.Expire(now, int64(occupancyTTL))
	o.notify()
	o.s.pres.tick(now)
}

// An envelope carries an instance's batches of one interval in one
// cluster message: the byte 'E', the version 1, then each batch as a
// uvarint length and its bytes.
const (
	envelopeKind    = 'E'
	envelopeVersion = 1
)

func appendEnvelope(dst []byte, batches ...[]byte) []byte {
	dst = append(dst, envelopeKind, envelopeVersion)
	for _, b := range batches {
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		dst = append(dst, b...)
	}
	return dst
}

// openEnvelope calls fn for each batch in an envelope (aliasing b), or
// reports it malformed.
func openEnvelope(b []byte, fn func([]byte)) error {
	if len(b) < 2 || b[0] != envelopeKind || b[1] != envelopeVersion {
		return occ.ErrBadBatch
	}
	b = b[2:]
	for len(b) > 0 {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return occ.ErrBadBatch
		}
		fn(b[n : n+int(l)])
		b = b[n+int(l):]
	}
	return nil
}

// notify sends the watchers of each room whose total changed since its
// last "occ" frame the new total: one frame per room, handed to the
// loops that have watchers of it. Under mu, so that a watch is either
// before it (its reply has the old total, it gets the frame) or after
// it (its reply has the new total, it does not get the frame).
func (o *occupancy) notify() {
	o.mu.Lock()
	changed := false
	for _, w := range o.watched {
		n := o.count(w.name) // live, as a watch's reply is
		if w.last == n {
			continue
		}
		if !changed {
			o.gen++
			changed = true
		}
		w.last = n
		f := occFrame{w.name, o.gen, appendOccupancyFrame(nil, w.name, n)}
		for i, c := range w.perLoop {
			if c > 0 {
				o.byLoop[i] = append(o.byLoop[i], f)
			}
		}
		o.updates.Add(1)
	}
	o.mu.Unlock()
	loops := o.s.loopList()
	for i, frames := range o.byLoop {
		if len(frames) == 0 || i >= len(loops) {
			continue
		}
		l := loops[i]
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			l.sendOccupancy(frames)
			return nil
		}))
		o.byLoop[i] = nil // the loop's now
	}
}

// count is room's occupancy now: its subscriptions here and the other
// instances' last reported counts.
func (o *occupancy) count(room string) int64 {
	return int64(o.s.engine.Members(room)) + o.table.Remote(room)
}

// watch registers a watcher of room on loop idx and returns the total to
// reply with and the announcement it is as of.
func (o *occupancy) watch(room string, idx int) (int64, uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.watched[room]
	if w == nil {
		w = &watchedRoom{name: room, last: o.count(room), perLoop: make([]int32, o.s.nloops)}
		o.watched[room] = w
	}
	w.perLoop[idx]++
	w.total++
	return w.last, o.gen
}

// unwatch undoes one watch.
func (o *occupancy) unwatch(room string, idx int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.watched[room]
	if w == nil {
		return
	}
	w.perLoop[idx]--
	if w.total--; w.total == 0 {
		delete(o.watched, room)
	}
}

// watchedRooms is the number of rooms some connection watches.
func (o *occupancy) watchedRooms() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.watched)
}

// Shared implements bus.Host: another instance's occupancy or presence
// batch.
func (h host) Shared(b []byte) {
	now := time.Now().UnixNano()
	if len(b) > 0 && b[0] == envelopeKind {
		if err := openEnvelope(b, func(part []byte) {
			if len(part) > 0 && part[0] != envelopeKind { // never nested
				h.Shared(part)
			}
		}); err != nil {
			h.s.occ.badBatches.Add(1)
		}
		return
	}
	if len(b) > 0 && b[0] == userActionKind {
		from, act, err := parseUserAction(b)
		switch {
		case err != nil:
			h.s.occ.badBatches.Add(1)
		case from != h.s.occ.table.Self:
			h.s.onEveryLoop(act)
		}
		return
	}
	if len(b) > 0 && occ.Kind(b[0]) == occ.Users {
		if err := h.s.pres.table.Apply(b, now); err != nil {
			h.s.pres.badBatches.Add(1)
		}
		return
	}
	if err := h.s.occ.table.Apply(b, now); err != nil {
		h.s.occ.badBatches.Add(1)
	}
}

// appendOccupancyFrame appends the text frame "occ <room> <count>".
func appendOccupancyFrame(dst []byte, room string, n int64) []byte {
	var line [len("occ ") + 64 + 1 + 20]byte
	p := append(append(append(line[:0], "occ "...), room...), ' ')
	p = strconv.AppendInt(p, n, 10)
	dst = frame.AppendHeader(dst, true, ws.OpText, len(p))
	return append(dst, p...)
}

// sendOccupancy runs on the loop: each frame to this loop's watchers of
// its room.
func (l *eventLoop) sendOccupancy(frames []occFrame) {
	for _, f := range frames {
		// A copy: a write that fails closes its connection at once, which
		// takes it out of this very list.
		for _, w := range slices.Clone(l.watchers[f.room]) {
			if w.since < f.gen && w.cs.state == stateOpen {
				w.cs.member.SendData(f.frame)
			}
		}
	}
}

// Occupancy is the number of connections subscribed to room on every
// instance: this one's now, the others' as they last reported it (at
// most about a second old; an instance that stopped reporting counts
// for at most 6 s).
func (s *Server) Occupancy(room string) int64 { return s.occ.count(room) }

// newInstanceID names this process in its occupancy batches: random and
// non-zero.
func newInstanceID() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}
