package fanout

import (
	"bytes"
	"strings"
	"testing"
)

// Within one cycle each member gets exactly the room frames delivered
// while it was a member, in order; what it sends itself (a pong, a close
// frame) lands after the room frames delivered before it; nothing is
// written before the cycle ends.
func TestBatchGivesEachMemberItsPartInOrder(t *testing.T) {
	e, l, cl := oneLoop(t, 1<<20)
	a, b := newMember(l, "r"), newMember(l, "r")
	r := a.m.Room()

	publish(l, r, "one")
	late := newMember(l, "r") // joins mid-cycle
	pong := []byte("<pong>")
	a.m.Send(pong)
	publish(l, r, "two")
	b.m.Leave() // the server's closing handshake: leave, then the close frame
	b.m.Queue(closeFrame)
	publish(l, r, "three")

	for name, m := range map[string]*fakeConn{"a": a, "b": b, "late": late} {
		if m.writes != 0 {
			t.Fatalf("member %s written before the end of the cycle: %q", name, m.wrote)
		}
	}
	cl.endCycle()

	one, two, three := frame("one"), frame("two"), frame("three")
	for name, tc := range map[string]struct {
		m    *fakeConn
		want []byte
	}{
		"a (pong mid-cycle)":   {a, cat(one, pong, two, three)},
		"b (closed mid-cycle)": {b, cat(one, two, closeFrame)},
		"late (joined)":        {late, cat(two, three)},
	} {
		if got := tc.m.take(); !bytes.Equal(got, tc.want) {
			t.Errorf("member %s got %q, want %q", name, got, tc.want)
		}
		if tc.m.writes != 1 {
			t.Errorf("member %s: %d writes in the cycle, want 1", name, tc.m.writes)
		}
	}
	// a: 3 frames; b: 2 before it left; late: 2.
	if c := e.Counters(); c.Deliveries != 7 || c.Published != 3 {
		t.Errorf("counters %+v, want 7 deliveries and 3 published", c)
	}
	if len(l.batched) != 0 || r.shards[0].lanes[Raw].batch != nil || len(l.dirty) != 0 {
		t.Error("batch or cork still held after the cycle")
	}

	// The next cycle starts afresh for every member.
	publish(l, r, "four")
	cl.endCycle()
	for name, m := range map[string]*fakeConn{"a": a, "late": late} {
		if got := m.take(); !bytes.Equal(got, frame("four")) {
			t.Errorf("member %s next cycle got %q", name, got)
		}
	}
	if got := b.take(); len(got) != 0 {
		t.Errorf("member that left got %q", got)
	}
}

// However many messages a cycle carries, every member gets one write per
// cycle; a member's own frame sent when it has nothing pending goes out
// at once.
func TestOneWritePerMemberPerCycle(t *testing.T) {
	_, l, cl := oneLoop(t, 1<<20)
	members := make([]*fakeConn, 50)
	for i := range members {
		members[i] = newMember(l, "r")
	}
	r := members[0].m.Room()
	var want []byte
	for i := range 100 {
		p := strings.Repeat("x", i%7)
		publish(l, r, p)
		want = append(want, frame(p)...)
	}
	cl.endCycle()
	for i, m := range members {
		if m.writes != 1 || !bytes.Equal(m.take(), want) {
			t.Fatalf("member %d: %d writes, want 1 with all 100 frames", i, m.writes)
		}
	}
	members[3].m.Send([]byte("<ping>"))
	if got := members[3].take(); string(got) != "<ping>" || members[3].writes != 2 {
		t.Fatalf("own frame with nothing pending: got %q after %d writes, want it written at once", got, members[3].writes)
	}
}

// Members that leave or go away while their shard is being flushed
// leave holes: nobody is skipped or written twice, the departed get
// nothing more, and the shard is compacted afterwards.
func TestLeavingWhileFlushing(t *testing.T) {
	_, l, cl := oneLoop(t, 1<<20)
	m := make([]*fakeConn, 6)
	for i := range m {
		m[i] = newMember(l, "r")
	}
	r := m[0].m.Room()
	// Written first, m[0] makes m[1] leave (keeping its part) and m[4]
	// go away (dropping it); m[2] releases itself during its own write.
	m[0].onWrite = func() { m[1].m.Leave(); m[4].m.Release() }
	m[2].onWrite = func() { m[2].m.Release() }
	publish(l, r, "x")
	cl.endCycle()

	x := frame("x")
	for i, want := range [][]byte{x, x, x, x, nil, x} {
		if got := m[i].take(); !bytes.Equal(got, want) {
			t.Errorf("member %d got %q, want %q", i, got, want)
		}
	}
	sh := &r.shards[0]
	ln := &sh.lanes[Raw]
	if len(ln.subs) != 3 || ln.holes != 0 || sh.live.Load() != 3 || r.members.Load() != 3 {
		t.Fatalf("after the flush: %d slots, %d holes, %d live, %d members; want 3 members, no holes",
			len(ln.subs), ln.holes, sh.live.Load(), r.members.Load())
	}
	for i, mb := range ln.subs {
		if mb.slot != int32(i) || mb.room != r {
			t.Fatalf("slot %d holds a member that says slot %d", i, mb.slot)
		}
	}
	publish(l, r, "y")
	cl.endCycle()
	for i, want := range [][]byte{frame("y"), nil, nil, frame("y"), nil, frame("y")} {
		if got := m[i].take(); !bytes.Equal(got, want) {
			t.Errorf("next cycle: member %d got %q, want %q", i, got, want)
		}
	}
}

// At the flush, a member whose unsent bytes plus its part would pass
// MaxPending is closed as a slow consumer (Overflow, once) and gets none
// of the batch, only what Overflow queued; a member with a smaller
// backlog gets the batch.
func TestSlowConsumerClosedAtFlush(t *testing.T) {
	e, l, cl := oneLoop(t, 1000)
	fast, behind, slow := newMember(l, "r"), newMember(l, "r"), newMember(l, "r")
	batch := cat(frame("0123456789"), frame("abcdefghij"))
	behind.backlog = 1000 - len(batch) // exactly at the limit: fits
	slow.backlog = 1000 - len(batch) + 1
	r := fast.m.Room()

	publish(l, r, "0123456789")
	publish(l, r, "abcdefghij")
	cl.endCycle()

	if got := fast.take(); !bytes.Equal(got, batch) {
		t.Errorf("fast member got %q", got)
	}
	if got := behind.take(); !bytes.Equal(got, batch) {
		t.Errorf("member at the limit got %q, want the batch", got)
	}
	if got := slow.take(); !bytes.Equal(got, closeFrame) || slow.overflows != 1 {
		t.Errorf("slow member: got %q after %d overflows, want only the close frame after 1", got, slow.overflows)
	}
	if slow.m.Room() != nil || r.shards[0].live.Load() != 2 {
		t.Errorf("slow member still in the room")
	}
	if d := e.Counters().Deliveries; d != 4 {
		t.Errorf("deliveries = %d, want 4 (two frames to two members)", d)
	}
}

// A batch reaching CorkLimit is written at once, before the end of the
// cycle, so a burst holds at most CorkLimit per room shard.
func TestBatchWritesAtCorkLimit(t *testing.T) {
	_, l, cl := oneLoop(t, 1<<20)
	m := newMember(l, "r")
	r := m.m.Room()
	payload := strings.Repeat("x", 100)
	var want []byte
	for len(want) < l.engine.cfg.CorkLimit {
		publish(l, r, payload)
		want = append(want, frame(payload)...)
	}
	if got := m.take(); !bytes.Equal(got, want) {
		t.Fatalf("before the end of the cycle: got %d bytes, want the %d bytes up to CorkLimit", len(got), len(want))
	}
	publish(l, r, "tail")
	cl.endCycle()
	if got := m.take(); !bytes.Equal(got, frame("tail")) {
		t.Fatalf("after the cycle: got %q", got)
	}
}

// Deliver corks a member's own data frames (echo) for the end of the
// cycle, after its part of the batch, and counts them; a cork reaching
// CorkLimit is written at once.
func TestDeliverCorksAndCounts(t *testing.T) {
	e, l, cl := oneLoop(t, 1<<20)
	room := newMember(l, "r")
	echo := newMember(l, "")
	publish(l, room.m.Room(), "room")
	room.m.SendData(frame("own"))
	echo.m.SendData(frame("e1"))
	echo.m.SendData(frame("e2"))
	if room.writes+echo.writes != 0 {
		t.Fatal("Deliver wrote before the end of the cycle")
	}
	cl.endCycle()
	if got := room.take(); !bytes.Equal(got, cat(frame("room"), frame("own"))) {
		t.Errorf("room member got %q", got)
	}
	if got := echo.take(); !bytes.Equal(got, cat(frame("e1"), frame("e2"))) || echo.writes != 1 {
		t.Errorf("echo member got %q in %d writes", got, echo.writes)
	}
	if d := e.Counters().Deliveries; d != 4 {
		t.Errorf("deliveries = %d, want 4", d)
	}
	big := make([]byte, l.engine.cfg.CorkLimit)
	echo.m.SendData(big)
	if echo.writes != 2 {
		t.Errorf("a cork at CorkLimit waited for the end of the cycle")
	}
}
