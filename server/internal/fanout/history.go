package fanout

import "time"

// HistoryConfig bounds the history each room keeps for resuming
// subscribers. Messages 0 turns history off: a resume then succeeds only
// when nothing was published since the client's offset.
type HistoryConfig struct {
	// Messages is the most messages a room keeps.
	Messages int
	// TTL is how long a message stays in its room's history.
	TTL time.Duration
	// MaxBytes bounds the bytes of all rooms' history together (each
	// message's payload buffer, at most twice its payload plus
	// maxSlackBytes, plus msgOverhead); each loop keeps at most
	// MaxBytes/Loops for the rooms it owns. Past its share, the room
	// holding the most bytes on that loop loses its oldest messages: a
	// room cannot take the others' history away by publishing a lot.
	MaxBytes int64
}

// expireEvery is how often a loop drops expired history and forgets rooms
// that have neither members nor history.
const expireEvery = time.Second

// history is a room's last messages, oldest first: a ring of shared
// messages the owner retains (appending is a reference, not a copy).
// Touched by the owner loop only.
type history struct {
	ring  []*sharedMsg // len is a power of two, or 0
	head  int          // index of the oldest
	n     int
	bytes int64
	// covered is the offset after which every message of the room is in
	// the ring: the last one dropped, or where the room's history began.
	covered uint64
}

func (h *history) at(i int) *sharedMsg { return h.ring[(h.head+i)&(len(h.ring)-1)] }

// push appends m (retaining it). The ring grows by doubling; the owner
// pops before pushing once a room holds HistoryConfig.Messages, so it
// never grows past the power of two that holds them.
func (h *history) push(m *sharedMsg) {
	if h.n == len(h.ring) {
		h.grow()
	}
	m.retain()
	h.ring[(h.head+h.n)&(len(h.ring)-1)] = m
	h.n++
	h.bytes += m.size()
}

func (h *history) grow() {
	size := max(8, 2*len(h.ring))
	next := make([]*sharedMsg, size)
	for i := range h.n {
		next[i] = h.at(i)
	}
	h.ring, h.head = next, 0
}

// pop drops the oldest message and returns its size.
func (h *history) pop() int64 {
	i := h.head
	m := h.ring[i]
	h.ring[i] = nil
	h.head = (h.head + 1) & (len(h.ring) - 1)
	h.n--
	h.covered = max(h.covered, m.offset)
	sz := m.size()
	h.bytes -= sz
	m.release()
	return sz
}

// clear drops every message and the ring.
func (h *history) clear() int64 {
	var freed int64
	for h.n > 0 {
		freed += h.pop()
	}
	h.ring, h.head = nil, 0
	return freed
}

// since returns the messages after offset, retained for the caller, and
// whether they are all of them: false when some after offset were
// dropped (offset is older than covered).
func (h *history) since(offset uint64, dst []*sharedMsg) ([]*sharedMsg, bool) {
	if offset < h.covered {
		return dst, false
	}
	if h.n == 0 || h.at(h.n-1).offset <= offset {
		return dst, true
	}
	for i := range h.n {
		if m := h.at(i); m.offset > offset {
			m.retain()
			dst = append(dst, m)
		}
	}
	return dst, true
}

// roomHeap orders rooms by history bytes, most first: a binary max-heap
// of the rooms a loop owns (Room.heapAt is a room's index plus one, 0
// when it is not in the heap). O(log rooms) per change of a room's
// bytes, no allocation once grown.
type roomHeap []*Room

func (h *roomHeap) top() *Room {
	if len(*h) == 0 {
		return nil
	}
	return (*h)[0]
}

func (h *roomHeap) push(r *Room) {
	*h = append(*h, r)
	r.heapAt = int32(len(*h))
	h.up(len(*h) - 1)
}

func (h *roomHeap) remove(r *Room) {
	i := int(r.heapAt) - 1
	if i < 0 {
		return
	}
	last := len(*h) - 1
	h.swap(i, last)
	(*h)[last] = nil
	*h = (*h)[:last]
	r.heapAt = 0
	if i < last {
		h.down(i)
		h.up(i)
	}
}

// fix restores the order after r's bytes changed.
func (h *roomHeap) fix(r *Room) {
	if i := int(r.heapAt) - 1; i >= 0 {
		h.down(i)
		h.up(i)
	}
}

func (h roomHeap) less(i, j int) bool { return h[i].hist.bytes > h[j].hist.bytes }

func (h roomHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapAt, h[j].heapAt = int32(i+1), int32(j+1)
}

func (h roomHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h roomHeap) down(i int) {
	for {
		l, big := 2*i+1, i
		if l < len(h) && h.less(l, big) {
			big = l
		}
		if r := l + 1; r < len(h) && h.less(r, big) {
			big = r
		}
		if big == i {
			return
		}
		h.swap(i, big)
		i = big
	}
}

// keep appends f to r's history within its limits: the room's message
// count, then this loop's share of HistoryConfig.MaxBytes, which the
// room holding the most bytes pays: it loses its oldest message, again
// until the share holds. So a room that publishes a lot, or large
// messages, trims its own history, never the others'.
func (l *Loop) keep(r *Room, f *sharedMsg, hc *HistoryConfig) {
	h := &r.hist
	l.own(r)
	for h.n >= hc.Messages {
		l.dropOldest(r)
	}
	h.push(f)
	l.histBytes += f.size()
	l.histMsgs.Add(1)
	l.byBytes.fix(r)
	share := hc.MaxBytes / int64(l.engine.cfg.Loops)
	for l.histBytes > share {
		big := l.byBytes.top()
		if big == nil || big.hist.n == 0 {
			break
		}
		l.dropOldest(big)
	}
	l.histGauge.Store(l.histBytes)
	r.histLen.Store(int64(h.n))
	r.histBytes.Store(h.bytes)
}

// dropOldest drops the oldest message of r's history (r owned here).
func (l *Loop) dropOldest(r *Room) {
	l.histBytes -= r.hist.pop()
	l.histMsgs.Add(-1)
	l.byBytes.fix(r)
	r.histLen.Store(int64(r.hist.n))
	r.histBytes.Store(r.hist.bytes)
}

// dropHistory drops all of r's history (r owned here).
func (l *Loop) dropHistory(r *Room) {
	for r.hist.n > 0 {
		l.dropOldest(r)
	}
	r.hist.ring, r.hist.head = nil, 0
	l.histGauge.Store(l.histBytes)
}

// own lists r, a room this loop owns, for the expiry pass and the byte
// budget.
func (l *Loop) own(r *Room) {
	if !r.listed {
		r.listed = true
		l.owned = append(l.owned, r)
		l.byBytes.push(r)
	}
}

// expire drops history older than HistoryConfig.TTL from the rooms this
// loop owns, and forgets the rooms left with neither members nor
// history. Their epoch goes with them: a resume afterwards is told the
// epoch changed.
func (l *Loop) expire() {
	hc := &l.engine.cfg.History
	if hc.Messages == 0 {
		return
	}
	cutoff := l.now - int64(hc.TTL)
	kept := l.owned[:0]
	for _, r := range l.owned {
		h := &r.hist
		for h.n > 0 && h.at(0).at < cutoff {
			l.dropOldest(r)
		}
		if h.n == 0 && r.members.Load() == 0 && l.engine.forget(r) {
			h.clear()
			r.listed = false
			l.byBytes.remove(r)
			continue
		}
		kept = append(kept, r)
	}
	clear(l.owned[len(kept):])
	l.owned = kept
	l.histGauge.Store(l.histBytes)
	l.dedupe.expire(l.now)
}
