package occupancy

import "bytes"

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
	// Kind is what the batches count.
	Kind Kind
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
	reported   map[string]Value // the last value sent per key (non-zero count)
	cursor     []string         // the rooms reported when this cycle began
	next       int              // cursor's next room
}

// minRefresh is the fewest rooms a batch repeats (when it has room).
const minRefresh = 64

// Report appends the next batch to dst: now holds this instance's value
// for every key with a count (a key absent counts 0). now is only read;
// the Reporter keeps no reference to its data.
func (r *Reporter) Report(dst []byte, now map[string]Value) []byte {
	if r.reported == nil {
		r.reported = map[string]Value{}
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
	dst = appendHeader(dst, Header{Kind: r.Kind, From: r.ID, Seq: r.seq, Cycle: r.cycle})
	fits := func(key string, v Value) bool { return len(dst)-start+entryLen(key, v) <= r.MaxBytes }
	for key, v := range now {
		if old, ok := r.reported[key]; v.Count <= 0 || ok && old.Count == v.Count && bytes.Equal(old.Data, v.Data) {
			continue
		}
		if !fits(key, v) {
			return dst // the other changes wait for the next batch
		}
		dst = appendEntry(dst, r.Kind, key, v)
		r.reported[key] = Value{v.Count, bytes.Clone(v.Data)}
	}
	for key := range r.reported {
		if now[key].Count > 0 {
			continue
		}
		if !fits(key, Value{}) {
			return dst
		}
		dst = appendEntry(dst, r.Kind, key, Value{})
		delete(r.reported, key)
	}
	share := max(minRefresh, len(r.cursor)/max(1, r.RefreshShare))
	for ; share > 0 && r.next < len(r.cursor); r.next++ {
		key := r.cursor[r.next]
		v, ok := r.reported[key]
		if !ok {
			continue // gone: its 0 was sent
		}
		if !fits(key, v) {
			return dst
		}
		dst = appendEntry(dst, r.Kind, key, v)
		share--
	}
	return dst
}
