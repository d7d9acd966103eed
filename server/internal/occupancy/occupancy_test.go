package occupancy

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// sender is one instance: its true counts and its Reporter.
type sender struct {
	counts map[string]int64
	rep    Reporter
}

func newSender(id uint64, maxBytes int) *sender {
	return &sender{counts: map[string]int64{}, rep: Reporter{ID: id, MaxBytes: maxBytes, RefreshShare: 4}}
}

func (s *sender) set(room string, n int64) {
	if n == 0 {
		delete(s.counts, room)
		return
	}
	s.counts[room] = n
}

// sums are the true sums over senders.
func sums(ss ...*sender) map[string]int64 {
	out := map[string]int64{}
	for _, s := range ss {
		for r, n := range s.counts {
			out[r] += n
		}
	}
	return out
}

// check compares t's sums with want, over every room either names.
func check(t *testing.T, tb *Table, want map[string]int64, rooms []string) {
	t.Helper()
	for _, r := range rooms {
		if got := tb.Remote(r); got != want[r] {
			t.Fatalf("room %s: remote %d, want %d", r, got, want[r])
		}
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for r, n := range tb.sums {
		if n != want[r] {
			t.Fatalf("room %s: sum %d, want %d", r, n, want[r])
		}
	}
}

func TestReportedCountsAddUp(t *testing.T) {
	a, b := newSender(1, 1<<20), newSender(2, 1<<20)
	tb := &Table{Self: 3}
	rooms := []string{"r1", "r2", "r3"}
	a.set("r1", 5)
	a.set("r2", 1)
	b.set("r1", 7)
	for _, s := range []*sender{a, b} {
		if err := tb.Apply(s.rep.Report(nil, s.counts), 0); err != nil {
			t.Fatal(err)
		}
	}
	check(t, tb, sums(a, b), rooms)
	a.set("r1", 0) // a's last member of r1 left
	b.set("r3", 2)
	for _, s := range []*sender{a, b} {
		if err := tb.Apply(s.rep.Report(nil, s.counts), 1); err != nil {
			t.Fatal(err)
		}
	}
	check(t, tb, sums(a, b), rooms)
	if got := tb.Remote("r1"); got != 7 {
		t.Fatalf("r1 = %d, want 7", got)
	}
}

func TestOwnBatchesIgnored(t *testing.T) {
	a := newSender(1, 1<<20)
	a.set("r", 3)
	tb := &Table{Self: 1}
	if err := tb.Apply(a.rep.Report(nil, a.counts), 0); err != nil {
		t.Fatal(err)
	}
	if got := tb.Remote("r"); got != 0 {
		t.Fatalf("own batch counted: %d", got)
	}
}

// A lost batch that held a room's 0 leaves a stale count only until the
// sender's next whole cycle.
func TestLostZeroDroppedAfterACycle(t *testing.T) {
	a := newSender(1, 1<<20)
	tb := &Table{Self: 9}
	for i := range 300 {
		a.set(fmt.Sprintf("r%d", i), int64(i+1))
	}
	tb.Apply(a.rep.Report(nil, a.counts), 0)
	a.set("r7", 0)
	_ = a.rep.Report(nil, a.counts) // lost: held r7's 0
	if got := tb.Remote("r7"); got != 8 {
		t.Fatalf("r7 before = %d, want the stale 8", got)
	}
	// A cycle repeats 1/4 of 299 rooms per batch: within a few batches
	// the cycle turns over twice (the lost batch breaks the first turn).
	for i := range 12 {
		tb.Apply(a.rep.Report(nil, a.counts), int64(i+1))
	}
	if got := tb.Remote("r7"); got != 0 {
		t.Fatalf("r7 after cycles = %d, want 0", got)
	}
	check(t, tb, sums(a), nil)
}

// A stale batch (an older sequence) never undoes a newer one.
func TestOlderBatchIgnored(t *testing.T) {
	a := newSender(1, 1<<20)
	tb := &Table{Self: 9}
	a.set("r", 1)
	first := a.rep.Report(nil, a.counts)
	a.set("r", 4)
	second := a.rep.Report(nil, a.counts)
	tb.Apply(second, 0)
	tb.Apply(first, 0)
	if got := tb.Remote("r"); got != 4 {
		t.Fatalf("r = %d, want 4", got)
	}
}

func TestSilentInstanceExpires(t *testing.T) {
	a, b := newSender(1, 1<<20), newSender(2, 1<<20)
	a.set("r", 2)
	b.set("r", 3)
	tb := &Table{Self: 9}
	tb.Apply(a.rep.Report(nil, a.counts), 0)
	tb.Apply(b.rep.Report(nil, b.counts), 0)
	tb.Apply(a.rep.Report(nil, a.counts), 4) // b died after its first batch
	if n := tb.Expire(5, 5); n != 0 {
		t.Fatalf("expired %d at the TTL, want 0", n)
	}
	if n := tb.Expire(6, 5); n != 1 {
		t.Fatalf("expired %d past the TTL, want 1", n)
	}
	if got := tb.Remote("r"); got != 2 {
		t.Fatalf("r = %d, want a's 2", got)
	}
	if tb.Instances() != 1 || tb.Dropped() != 1 {
		t.Fatalf("instances %d dropped %d", tb.Instances(), tb.Dropped())
	}
}

// MaxBytes bounds each batch; what does not fit comes later, and the
// sums converge.
func TestBatchesBoundedAndConverge(t *testing.T) {
	const maxBytes = 512
	a := newSender(1, maxBytes)
	tb := &Table{Self: 9}
	for i := range 1000 {
		a.set(fmt.Sprintf("room-%04d", i), int64(i%7+1))
	}
	for i := range 200 {
		b := a.rep.Report(nil, a.counts)
		if len(b) > maxBytes {
			t.Fatalf("batch of %d bytes, max %d", len(b), maxBytes)
		}
		tb.Apply(b, int64(i))
	}
	check(t, tb, sums(a), nil)
}

// Random changes, random losses: after a quiet stretch without losses
// the table matches the truth.
func TestRandomChangesAndLossesConverge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	senders := []*sender{newSender(1, 4096), newSender(2, 4096), newSender(3, 4096)}
	tb := &Table{Self: 9}
	rooms := make([]string, 200)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("r%d", i)
	}
	for round := range 300 {
		for _, s := range senders {
			for range 20 {
				s.set(rooms[rng.IntN(len(rooms))], int64(rng.IntN(4)))
			}
			b := s.rep.Report(nil, s.counts)
			if rng.IntN(5) == 0 {
				continue // lost
			}
			if err := tb.Apply(b, int64(round)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for round := range 40 {
		for _, s := range senders {
			tb.Apply(s.rep.Report(nil, s.counts), int64(300+round))
		}
	}
	check(t, tb, sums(senders...), rooms)
}

func TestParseRefusesMalformed(t *testing.T) {
	good := appendEntry(appendHeader(nil, Header{From: 1, Seq: 1, Cycle: 1}), "room", 3)
	if _, err := ParseHeader(good); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"empty":       nil,
		"magic":       append([]byte{'X'}, good[1:]...),
		"version":     append([]byte{'O', 2}, good[2:]...),
		"short":       good[:3],
		"cut entry":   good[:len(good)-1],
		"bad room":    bytes.Replace(good, []byte("room"), []byte("ro m"), 1),
		"empty room":  append(appendHeader(nil, Header{From: 1}), 0, 1),
		"long room":   appendEntry(appendHeader(nil, Header{From: 1}), string(bytes.Repeat([]byte("a"), 65)), 1),
		"huge count":  appendEntry(appendHeader(nil, Header{From: 1}), "r", maxCount+1),
		"dotdot room": appendEntry(appendHeader(nil, Header{From: 1}), "..", 1),
	} {
		if _, err := ParseHeader(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
		tb := &Table{}
		if err := tb.Apply(b, 0); err == nil {
			t.Errorf("%s: applied", name)
		}
		if len(tb.sums) != 0 {
			t.Errorf("%s: partly applied", name)
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	b := appendHeader(nil, Header{From: 1, Seq: 2, Cycle: 3})
	for i := range 50 {
		b = appendEntry(b, fmt.Sprintf("room-%d", i), int64(i))
	}
	var n int64
	fn := func(_ []byte, c int64) { n += c }
	if a := testing.AllocsPerRun(100, func() { _, _ = Parse(b, fn) }); a != 0 {
		t.Fatalf("Parse: %v allocs", a)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(appendEntry(appendHeader(nil, Header{From: 1, Seq: 1, Cycle: 1}), "room", 3))
	f.Add([]byte{'O', 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var rooms [][]byte
		var counts []int64
		h, err := Parse(b, func(r []byte, c int64) {
			rooms = append(rooms, append([]byte(nil), r...))
			counts = append(counts, c)
		})
		if err != nil {
			return
		}
		// What parses re-encodes to the same bytes (canonical varints
		// aside, it must at least parse back to the same entries).
		again := appendHeader(nil, h)
		for i := range rooms {
			again = appendEntry(again, string(rooms[i]), counts[i])
		}
		i := 0
		h2, err := Parse(again, func(r []byte, c int64) {
			if !bytes.Equal(r, rooms[i]) || c != counts[i] {
				t.Fatalf("entry %d: %q %d, want %q %d", i, r, c, rooms[i], counts[i])
			}
			i++
		})
		if err != nil || h2 != h || i != len(rooms) {
			t.Fatalf("re-encoded batch: %v %+v %+v %d/%d", err, h2, h, i, len(rooms))
		}
		tb := &Table{}
		if err := tb.Apply(b, 0); err != nil {
			t.Fatalf("Parse accepted what Apply refused: %v", err)
		}
	})
}
