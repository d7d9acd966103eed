package occupancy

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// sender is one instance: its true counts and its Reporter.
type sender struct {
	counts map[string]int64
	rep    Reporter
}

func newSender(id uint64, maxBytes int) *sender {
	return &sender{counts: map[string]int64{}, rep: Reporter{Kind: Rooms, ID: id, MaxBytes: maxBytes, RefreshShare: 4}}
}

// report is the sender's next batch.
func (s *sender) report() []byte {
	now := map[string]Value{}
	for r, n := range s.counts {
		now[r] = Value{Count: n}
	}
	return s.rep.Report(nil, now)
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
	tb := &Table{Kind: Rooms, Self: 3}
	rooms := []string{"r1", "r2", "r3"}
	a.set("r1", 5)
	a.set("r2", 1)
	b.set("r1", 7)
	for _, s := range []*sender{a, b} {
		if err := tb.Apply(s.report(), 0); err != nil {
			t.Fatal(err)
		}
	}
	check(t, tb, sums(a, b), rooms)
	a.set("r1", 0) // a's last member of r1 left
	b.set("r3", 2)
	for _, s := range []*sender{a, b} {
		if err := tb.Apply(s.report(), 1); err != nil {
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
	tb := &Table{Kind: Rooms, Self: 1}
	if err := tb.Apply(a.report(), 0); err != nil {
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
	tb := &Table{Kind: Rooms, Self: 9}
	for i := range 300 {
		a.set(fmt.Sprintf("r%d", i), int64(i+1))
	}
	tb.Apply(a.report(), 0)
	a.set("r7", 0)
	_ = a.report() // lost: held r7's 0
	if got := tb.Remote("r7"); got != 8 {
		t.Fatalf("r7 before = %d, want the stale 8", got)
	}
	// A cycle repeats 1/4 of 299 rooms per batch: within a few batches
	// the cycle turns over twice (the lost batch breaks the first turn).
	for i := range 12 {
		tb.Apply(a.report(), int64(i+1))
	}
	if got := tb.Remote("r7"); got != 0 {
		t.Fatalf("r7 after cycles = %d, want 0", got)
	}
	check(t, tb, sums(a), nil)
}

// A stale batch (an older sequence) never undoes a newer one.
func TestOlderBatchIgnored(t *testing.T) {
	a := newSender(1, 1<<20)
	tb := &Table{Kind: Rooms, Self: 9}
	a.set("r", 1)
	first := a.report()
	a.set("r", 4)
	second := a.report()
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
	tb := &Table{Kind: Rooms, Self: 9}
	tb.Apply(a.report(), 0)
	tb.Apply(b.report(), 0)
	tb.Apply(a.report(), 4) // b died after its first batch
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
	tb := &Table{Kind: Rooms, Self: 9}
	for i := range 1000 {
		a.set(fmt.Sprintf("room-%04d", i), int64(i%7+1))
	}
	for i := range 200 {
		b := a.report()
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
	tb := &Table{Kind: Rooms, Self: 9}
	rooms := make([]string, 200)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("r%d", i)
	}
	for round := range 300 {
		for _, s := range senders {
			for range 20 {
				s.set(rooms[rng.IntN(len(rooms))], int64(rng.IntN(4)))
			}
			b := s.report()
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
			tb.Apply(s.report(), int64(300+round))
		}
	}
	check(t, tb, sums(senders...), rooms)
}

func TestParseRefusesMalformed(t *testing.T) {
	good := appendEntry(appendHeader(nil, Header{Kind: Rooms, From: 1, Seq: 1, Cycle: 1}), Rooms, "room", Value{Count: 3})
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
		"empty room":  append(appendHeader(nil, Header{Kind: Rooms, From: 1}), 0, 1),
		"long room":   appendEntry(appendHeader(nil, Header{Kind: Rooms, From: 1}), Rooms, string(bytes.Repeat([]byte("a"), 65)), Value{Count: 1}),
		"huge count":  appendEntry(appendHeader(nil, Header{Kind: Rooms, From: 1}), Rooms, "r", Value{Count: maxCount + 1}),
		"dotdot room": appendEntry(appendHeader(nil, Header{Kind: Rooms, From: 1}), Rooms, "..", Value{Count: 1}),
	} {
		if _, err := ParseHeader(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
		tb := &Table{Kind: Rooms}
		if err := tb.Apply(b, 0); err == nil {
			t.Errorf("%s: applied", name)
		}
		if len(tb.sums) != 0 {
			t.Errorf("%s: partly applied", name)
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	b := appendHeader(nil, Header{Kind: Users, From: 1, Seq: 2, Cycle: 3})
	for i := range 50 {
		b = appendEntry(b, Users, UserKey(fmt.Sprintf("room-%d", i), "user"), Value{Count: int64(i), Data: []byte(`{"n":1}`)})
	}
	var n int64
	fn := func(_ []byte, c int64, _ []byte) { n += c }
	if a := testing.AllocsPerRun(100, func() { _, _ = Parse(b, fn) }); a != 0 {
		t.Fatalf("Parse: %v allocs", a)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(appendEntry(appendHeader(nil, Header{Kind: Rooms, From: 1, Seq: 1, Cycle: 1}), Rooms, "room", Value{Count: 3}))
	f.Add([]byte{'O', 1, 0, 0, 0})
	f.Add(appendEntry(appendHeader(nil, Header{Kind: Users, From: 1, Seq: 1, Cycle: 1}), Users, UserKey("room", "ana"), Value{Count: 1, Data: []byte(`{}`)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var keys [][]byte
		var vals []Value
		h, err := Parse(b, func(k []byte, c int64, d []byte) {
			keys = append(keys, append([]byte(nil), k...))
			vals = append(vals, Value{c, append([]byte(nil), d...)})
		})
		if err != nil {
			return
		}
		// What parses re-encodes to a batch that parses back to the same
		// entries (varints need not be canonical on the way in).
		again := appendHeader(nil, h)
		for i := range keys {
			again = appendEntry(again, h.Kind, string(keys[i]), vals[i])
		}
		i := 0
		h2, err := Parse(again, func(k []byte, c int64, d []byte) {
			if !bytes.Equal(k, keys[i]) || c != vals[i].Count || !bytes.Equal(d, vals[i].Data) {
				t.Fatalf("entry %d: %q %d %q, want %q %+v", i, k, c, d, keys[i], vals[i])
			}
			i++
		})
		if err != nil || h2 != h || i != len(keys) {
			t.Fatalf("re-encoded batch: %v %+v %+v %d/%d", err, h2, h, i, len(keys))
		}
		tb := &Table{Kind: h.Kind}
		if err := tb.Apply(b, 0); err != nil {
			t.Fatalf("Parse accepted what Apply refused: %v", err)
		}
	})
}

// A Users table lists each room's users over instances, with their
// info, once per user however many instances hold it.
func TestUsersAcrossInstances(t *testing.T) {
	a := Reporter{Kind: Users, ID: 1, MaxBytes: 1 << 20, RefreshShare: 4}
	b := Reporter{Kind: Users, ID: 2, MaxBytes: 1 << 20, RefreshShare: 4}
	tb := &Table{Kind: Users, Self: 9}
	list := func(room string) map[string]string {
		out := map[string]string{}
		tb.Users(room, func(u string, info []byte) { out[u] = string(info) })
		return out
	}
	ana := Value{Count: 1, Data: []byte(`{"name":"Ana"}`)}
	if err := tb.Apply(a.Report(nil, map[string]Value{UserKey("chat", "ana"): ana, UserKey("chat", "bo"): {Count: 2}}), 0); err != nil {
		t.Fatal(err)
	}
	if err := tb.Apply(b.Report(nil, map[string]Value{UserKey("chat", "ana"): ana, UserKey("news", "cy"): {Count: 1}}), 0); err != nil {
		t.Fatal(err)
	}
	if got := list("chat"); len(got) != 2 || got["ana"] != `{"name":"Ana"}` || got["bo"] != "" {
		t.Fatalf("chat: %v", got)
	}
	if n := tb.Remote(UserKey("chat", "ana")); n != 2 {
		t.Fatalf("ana's connections over instances: %d, want 2", n)
	}
	// ana leaves a; b still holds her. Then b dies: only bo is left.
	tb.Apply(a.Report(nil, map[string]Value{UserKey("chat", "bo"): {Count: 2}}), 1)
	if got := list("chat"); len(got) != 2 {
		t.Fatalf("chat after ana left a: %v", got)
	}
	tb.Apply(a.Report(nil, map[string]Value{UserKey("chat", "bo"): {Count: 2}}), 10)
	tb.Expire(10, 5)
	if got := list("chat"); len(got) != 1 || got["bo"] != "" {
		t.Fatalf("chat after b died: %v", got)
	}
	if got := list("news"); len(got) != 0 {
		t.Fatalf("news after b died: %v", got)
	}
	// A Rooms batch does not go into a Users table.
	r := Reporter{Kind: Rooms, ID: 3, MaxBytes: 1 << 20}
	if err := tb.Apply(r.Report(nil, map[string]Value{"chat": {Count: 1}}), 10); err == nil {
		t.Fatal("a Rooms batch was applied to a Users table")
	}
}

func TestUserKeys(t *testing.T) {
	if r, u := SplitUserKey(UserKey("chat.lobby", "ana@example")); r != "chat.lobby" || u != "ana@example" {
		t.Fatalf("split: %q %q", r, u)
	}
	for key, ok := range map[string]bool{
		"chat\x00ana": true, "chat\x00": false, "chat": false, "bad room\x00ana": false,
		"chat\x00an\x00a": false, "chat\x00" + strings.Repeat("u", MaxUser): true, "chat\x00" + strings.Repeat("u", MaxUser+1): false,
	} {
		if validKey(Users, []byte(key)) != ok {
			t.Errorf("validKey(%q) = %v", key, !ok)
		}
	}
}
