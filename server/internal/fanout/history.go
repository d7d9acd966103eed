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
	// MaxBytes bounds the payload bytes (buffer capacity) of all rooms'
	// history together; each loop keeps at most MaxBytes/Loops for the
	// rooms it owns. A room whose append passes its loop's share drops
	// its own oldest messages first, then (if still over) the loop's
	// other rooms are trimmed at the next expiry pass.
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

func (h *history) len() int { return h.n }

func (h *history) at(i int) *sharedMsg { return h.ring[(h.head+i)&(len(h.ring)-1)] }

// oldest is the offset of the oldest message kept, 0 when empty.
func (h *history) oldest() uint64 {
	if h.n == 0 {
		return 0
	}
	return h.at(0).offset
}

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
