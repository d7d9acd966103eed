// Package seqcheck tells, for one receiver of one sender's numbered messages,
// whether the stream arrived complete and in order: it counts gaps (and how
// many messages they span), late arrivals that fill an earlier gap
// (reordering), and duplicates. The room contract being checked is loopcast's:
// every member gets every message, in order, or is closed — never a silent gap.
package seqcheck

// window is how far back, below the next expected sequence number, a Tracker
// remembers which numbers it has seen, to tell a late arrival from a
// duplicate. Older arrivals count as late.
const window = 64

// Tracker checks one stream. The zero value expects sequence 0 first.
// Not safe for concurrent use; it does not allocate.
type Tracker struct {
	next uint64 // next expected sequence number
	seen uint64 // bit i set: next-1-i has arrived (i < window)

	Received    uint64 // messages observed, duplicates included
	Gaps        uint64 // times a number arrived ahead of the expected one
	Missing     uint64 // numbers skipped and not (yet) arrived late
	Late        uint64 // numbers that arrived after a higher one (reordering)
	Duplicates  uint64 // numbers seen twice (within the window)
	Undelivered uint64 // sent at the end of the stream but never arrived (see Finish)
}

// Kind classifies one observation.
type Kind uint8

const (
	InOrder   Kind = iota // the expected number
	Gap                   // ahead of the expected one: some were skipped
	Late                  // behind, not seen before: reordered
	Duplicate             // behind, seen before
)

func (k Kind) String() string {
	switch k {
	case InOrder:
		return "in-order"
	case Gap:
		return "gap"
	case Late:
		return "late"
	case Duplicate:
		return "duplicate"
	}
	return "unknown"
}

// Start makes the tracker expect seq next, forgetting history.
func (t *Tracker) Start(seq uint64) {
	*t = Tracker{next: seq}
}

// Next is the sequence number the tracker expects.
func (t *Tracker) Next() uint64 { return t.next }

// Observe records the arrival of seq and classifies it.
func (t *Tracker) Observe(seq uint64) Kind {
	t.Received++
	switch {
	case seq == t.next:
		t.seen = t.seen<<1 | 1
		t.next++
		return InOrder
	case seq > t.next:
		skipped := seq - t.next
		t.Gaps++
		t.Missing += skipped
		// Shift in the skipped numbers as unseen, then seq as seen.
		if skipped+1 >= window {
			t.seen = 1
		} else {
			t.seen = t.seen<<(skipped+1) | 1
		}
		t.next = seq + 1
		return Gap
	default:
		back := t.next - 1 - seq // bit position of seq
		if back < window {
			bit := uint64(1) << back
			if t.seen&bit != 0 {
				t.Duplicates++
				return Duplicate
			}
			t.seen |= bit
		}
		t.Late++
		if t.Missing > 0 {
			t.Missing--
		}
		return Late
	}
}

// Finish accounts for messages the sender sent that never arrived at the
// tail of the stream: sent is the number of messages (sequence numbers
// start..start+sent-1 from Start). The shortfall is counted as Undelivered,
// not as a gap: a slow server that is still delivering when the run ends has
// not skipped anything. It returns the shortfall.
func (t *Tracker) Finish(start, sent uint64) uint64 {
	end := start + sent
	if t.next >= end {
		return 0
	}
	short := end - t.next
	t.Undelivered += short
	t.next = end
	t.seen <<= min(short, window)
	return short
}

// Clean reports whether the stream had no gap, reordering or duplicate
// (undelivered tail messages are reported apart).
func (t *Tracker) Clean() bool {
	return t.Gaps == 0 && t.Late == 0 && t.Duplicates == 0
}

// Totals sums many trackers' counters.
type Totals struct {
	Received, Gaps, Missing, Late, Duplicates, Undelivered uint64
	Streams, DirtyStreams, ShortStreams                    uint64
}

// Add folds t into the totals.
func (s *Totals) Add(t *Tracker) {
	s.Received += t.Received
	s.Gaps += t.Gaps
	s.Missing += t.Missing
	s.Late += t.Late
	s.Duplicates += t.Duplicates
	s.Undelivered += t.Undelivered
	s.Streams++
	if !t.Clean() {
		s.DirtyStreams++
	}
	if t.Undelivered > 0 {
		s.ShortStreams++
	}
}
