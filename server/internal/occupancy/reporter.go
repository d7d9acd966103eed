package occupancy

// Reporter builds one instance's batches. Not safe for concurrent use:
// one goroutine calls Report once per interval.
//
// Each batch holds, within MaxBytes: every room whose count changed
// since the count last reported (0 for a room that is gone: its last
// member left), then a slice of the other reported rooms again, from a
// cursor over the rooms reported when the current cycle began. When the
// cursor has passed every room, the next batch starts a new cycle: by
// then every room with members was repeated during the cycle, so a
// receiver drops the counts the sender did not repeat (see Table).
type Reporter struct {
	// ID names the instance in its batches: random, per process.
	ID uint64
	// MaxBytes bounds a batch (NATS's default max_payload is 1 MiB).
	// Changes that do not fit wait for the next batch.
	MaxBytes int
	// RefreshShare: each batch repeats at least 1/RefreshShare of the
	// cycle's rooms (and at least minRefresh), so a cycle takes at most
	// RefreshShare batches unless MaxBytes cuts it.
	RefreshShare int

	seq, cycle uint64
	reported   map[string]int64 // the last count sent per room (non-zero)
	cursor     []string         // the rooms reported when this cycle began
	next       int              // cursor's next room
}

// minRefresh is the fewest rooms a batch repeats (when it has room).
const minRefresh = 64

// Report appends the next batch to dst: counts holds this instance's
// count for every room with members (a room absent counts 0). counts is
// only read.
func (r *Reporter) Report(dst []byte, counts map[string]int64) []byte {
	if r.reported == nil {
		r.reported = map[string]int64{}
	}
	if r.next >= len(r.cursor) {
		r.cycle++
		r.cursor = r.cursor[:0]
		for room := range r.reported {
			r.cursor = append(r.cursor, room)
		}
		r.next = 0
	}
	r.seq++
	start := len(dst)
	dst = appendHeader(dst, Header{From: r.ID, Seq: r.seq, Cycle: r.cycle})
	fits := func(room string) bool { return len(dst)-start+entryLen(room) <= r.MaxBytes }
	for room, n := range counts {
		if n <= 0 || r.reported[room] == n {
			continue
		}
		if !fits(room) {
			return dst // the other changes wait for the next batch
		}
		dst = appendEntry(dst, room, n)
		r.reported[room] = n
	}
	for room := range r.reported {
		if counts[room] > 0 {
			continue
		}
		if !fits(room) {
			return dst
		}
		dst = appendEntry(dst, room, 0)
		delete(r.reported, room)
	}
	share := max(minRefresh, len(r.cursor)/max(1, r.RefreshShare))
	for ; share > 0 && r.next < len(r.cursor); r.next++ {
		room := r.cursor[r.next]
		n, ok := r.reported[room]
		if !ok {
			continue // gone: its 0 was sent
		}
		if !fits(room) {
			return dst
		}
		dst = appendEntry(dst, room, n)
		share--
	}
	return dst
}
