package fanout

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Messages published on every loop and from outside any loop reach every
// member on every loop, each exactly once, all in one order (the owner's),
// which keeps each publisher's own order.
func TestOneOrderAcrossLoops(t *testing.T) {
	const nloops, perLoop, perPublisher = 3, 20, 200
	e := New(testConfig(nloops, 1<<30))
	var runners []*goLoop
	var loops []*Loop
	for range nloops {
		g := startGoLoop()
		runners = append(runners, g)
		loops = append(loops, e.AddLoop(g))
	}
	// Members join on their own loops; the room's owner is loop 0.
	var mu sync.Mutex
	var members []*fakeConn
	for i, g := range runners {
		g.do(func() {
			for range perLoop {
				c := newMember(loops[i], "r")
				mu.Lock()
				members = append(members, c)
				mu.Unlock()
			}
		})
	}
	room := members[0].m.Room()

	var wg sync.WaitGroup
	for i, g := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range perPublisher {
				_ = g.Execute(context.Background(), taskFunc(func() { publish(loops[i], room, fmt.Sprintf("L%d-%d", i, k)) }))
			}
		}()
	}
	wg.Add(1)
	go func() { // outside any loop, like POST /publish
		defer wg.Done()
		for k := range perPublisher {
			f := frame(fmt.Sprintf("X-%d", k))
			if n, _ := e.Publish("r", Publication{Op: f[0], Payload: f[1:]}, Ack{}); n != nloops*perLoop {
				t.Errorf("Publish reached %d members, want %d", n, nloops*perLoop)
				return
			}
		}
	}()
	wg.Wait()
	// Drain, in three rounds: every loop has run its publish tasks (handed
	// to the owner), the owner has sequenced them all (handed to the other
	// loops), and every loop has written what it was handed.
	for _, g := range runners {
		g.do(func() {})
	}
	runners[0].do(func() {})
	for _, g := range runners {
		g.do(func() {})
	}
	for _, g := range runners {
		g.stop()
	}

	want := members[0].wrote
	total := (nloops + 1) * perPublisher
	seq := parseFrames(t, want)
	if len(seq) != total {
		t.Fatalf("member 0 got %d messages, want %d", len(seq), total)
	}
	next := map[string]int{}
	for _, s := range seq {
		pub, k, _ := strings.Cut(s, "-")
		if fmt.Sprint(next[pub]) != k {
			t.Fatalf("publisher %s: message %s after %d, out of its order", pub, k, next[pub])
		}
		next[pub]++
	}
	for i, c := range members {
		if string(c.wrote) != string(want) {
			t.Fatalf("member %d (loop %d) saw another order than member 0", i, c.m.loop.idx)
		}
	}
}

func parseFrames(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for len(b) > 0 {
		n := int(b[0])
		if 1+n > len(b) {
			t.Fatalf("truncated frame")
		}
		out = append(out, string(b[1:1+n]))
		b = b[1+n:]
	}
	return out
}

// A room exists while it has members: RoomOpened with its first member,
// RoomClosed after its last, once each and in that order; a room created
// again later is a new room owned by the loop of its new first member.
func TestRoomLifecycle(t *testing.T) {
	var events []string
	cfg := testConfig(2, 1<<20)
	cfg.RoomOpened = func(n string) { events = append(events, "open "+n) }
	cfg.RoomClosed = func(n string) { events = append(events, "close "+n) }
	e := New(cfg)
	l0, l1 := e.AddLoop(&cycleLoop{}), e.AddLoop(&cycleLoop{})
	a, b := newMember(l0, "r"), newMember(l1, "r")
	first := a.m.Room()
	if first.owner != l0 || b.m.Room() != first || e.RoomCount() != 1 {
		t.Fatal("second member did not join the first member's room")
	}
	a.m.Leave()
	b.m.Release()
	if n, _ := e.Publish("r", Publication{}, Ack{}); n != 0 || e.RoomCount() != 0 {
		t.Fatal("room still registered after its last member left")
	}
	c := newMember(l1, "r")
	if c.m.Room() == first || c.m.Room().owner != l1 {
		t.Fatal("a room created again is not a new room owned by its first member's loop")
	}
	want := "open r,close r,open r"
	if got := strings.Join(events, ","); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	var listed []string
	e.EachRoom(func(ri RoomInfo) { listed = append(listed, fmt.Sprint(ri.Name, "=", ri.Members)) })
	if fmt.Sprint(listed) != "[r=1]" {
		t.Fatalf("EachRoom listed %v", listed)
	}
}

// checkShards verifies every member's slot points back at it and the
// live counts match.
func checkShards(t *testing.T, r *Room) {
	t.Helper()
	var total int64
	for i := range r.shards {
		sh := &r.shards[i]
		ln := &sh.lanes[Raw]
		if int(sh.live.Load()) != len(ln.subs) || ln.holes != 0 {
			t.Fatalf("shard %d: live %d, %d members, %d holes", i, sh.live.Load(), len(ln.subs), ln.holes)
		}
		for j, s := range ln.subs {
			if s.room != r || int(s.slot) != j || s.m.loop.idx != i {
				t.Fatalf("shard %d slot %d: subscription says room %p slot %d loop %d", i, j, s.room, s.slot, s.m.loop.idx)
			}
		}
		total += int64(len(ln.subs))
	}
	if total != r.members.Load() {
		t.Fatalf("room counts %d members, shards hold %d", r.members.Load(), total)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func twoLoops() (*Engine, []*Loop) {
	e := New(testConfig(2, 1<<20))
	return e, []*Loop{e.AddLoop(&cycleLoop{}), e.AddLoop(&cycleLoop{})}
}

// 100,000 rooms of one member each come and go without leaving rooms or
// memory behind. (One server process holds at most ~19,900 sockets on
// this machine, so the engine is driven directly.)
func TestHundredThousandRoomsOfOne(t *testing.T) {
	e, loops := twoLoops()
	before := heapInUse()
	members := make([]*fakeConn, 100_000)
	for i := range members {
		members[i] = newMember(loops[i%2], fmt.Sprintf("room-%d", i))
	}
	if n := e.RoomCount(); n != len(members) {
		t.Fatalf("%d rooms, want %d", n, len(members))
	}
	checkShards(t, members[12345].m.Room())
	for _, c := range members {
		c.m.Leave()
		if c.m.Room() != nil {
			t.Fatal("member still has a room after leaving")
		}
	}
	if n := e.RoomCount(); n != 0 {
		t.Fatalf("%d rooms left after every member left", n)
	}
	members = nil
	if after := heapInUse(); after > before+4<<20 {
		t.Fatalf("heap grew from %d to %d bytes after all rooms were gone", before, after)
	}
}

// One room with 100,000 members on two loops: members leave in random
// order, also while a delivery is in progress (holes), and the room's
// slots stay consistent until the room is deleted with its last member.
func TestOneRoomWithEveryone(t *testing.T) {
	e, loops := twoLoops()
	members := make([]*fakeConn, 100_000)
	for i := range members {
		members[i] = newMember(loops[i%2], "everyone")
	}
	r := members[0].m.Room()
	checkShards(t, r)
	rng := rand.New(rand.NewPCG(7, 7))
	rng.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })

	third := members[:len(members)/3]
	for i := range r.shards {
		r.shards[i].lanes[Raw].delivering = true
	}
	for _, c := range third {
		c.m.Leave()
	}
	for i := range r.shards {
		ln := &r.shards[i].lanes[Raw]
		ln.delivering = false
		ln.compact()
	}
	checkShards(t, r)
	for k, c := range members[len(third):] {
		c.m.Release()
		if k%9973 == 0 {
			checkShards(t, r)
		}
	}
	if e.RoomCount() != 0 || r.members.Load() != 0 {
		t.Fatalf("room not deleted: %d rooms, %d members", e.RoomCount(), r.members.Load())
	}
	for i := range r.shards {
		if c := cap(r.shards[i].lanes[Raw].subs); c > shrinkMinCap {
			t.Fatalf("shard %d keeps capacity %d after emptying", i, c)
		}
	}
}
