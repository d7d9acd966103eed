package server

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// checkShards verifies every member's slot points back at it and the
// live counts match.
func checkShards(t *testing.T, r *room) {
	t.Helper()
	var total int64
	for i := range r.shards {
		sh := &r.shards[i]
		if int(sh.live.Load()) != len(sh.members) || sh.holes != 0 {
			t.Fatalf("shard %d: live %d, %d members, %d holes", i, sh.live.Load(), len(sh.members), sh.holes)
		}
		for j, m := range sh.members {
			if m.room != r || int(m.roomSlot) != j || m.loop.idx != i {
				t.Fatalf("shard %d slot %d: member says room %p slot %d loop %d", i, j, m.room, m.roomSlot, m.loop.idx)
			}
		}
		total += int64(len(sh.members))
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

// 100,000 rooms of one member each come and go without leaving rooms or
// memory behind. (One server process holds at most ~19,900 sockets on
// this machine, so the registry is driven directly.)
func TestHundredThousandRoomsOfOne(t *testing.T) {
	loops := []*loop{{idx: 0}, {idx: 1}}
	rs := rooms{m: map[string]*room{}, nloops: len(loops)}
	before := heapInUse()
	conns := make([]*conn, 100_000)
	for i := range conns {
		conns[i] = &conn{loop: loops[i%len(loops)]}
		rs.join(conns[i], fmt.Appendf(nil, "room-%d", i))
	}
	if n := rs.count(); n != int64(len(conns)) {
		t.Fatalf("%d rooms, want %d", n, len(conns))
	}
	checkShards(t, conns[12345].room)
	for _, cs := range conns {
		rs.leave(cs)
		if cs.room != nil {
			t.Fatal("member still has a room after leaving")
		}
	}
	if n := rs.count(); n != 0 {
		t.Fatalf("%d rooms left after every member left", n)
	}
	conns = nil
	if after := heapInUse(); after > before+4<<20 {
		t.Fatalf("heap grew from %d to %d bytes after all rooms were gone", before, after)
	}
}

// One room with 100,000 members on two loops: members leave in random
// order, also while a delivery is in progress (holes), and the room's
// slots stay consistent until the room is deleted with its last member.
func TestOneRoomWithEveryone(t *testing.T) {
	loops := []*loop{{idx: 0}, {idx: 1}}
	rs := rooms{m: map[string]*room{}, nloops: len(loops)}
	conns := make([]*conn, 100_000)
	for i := range conns {
		conns[i] = &conn{loop: loops[i%len(loops)]}
		rs.join(conns[i], []byte("everyone"))
	}
	r := conns[0].room
	checkShards(t, r)
	rng := rand.New(rand.NewPCG(7, 7))
	rng.Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })

	// A third leave during a delivery on their loop: they leave holes.
	third := conns[:len(conns)/3]
	for i := range r.shards {
		r.shards[i].delivering = true
	}
	for _, cs := range third {
		rs.leave(cs)
	}
	for i := range r.shards {
		sh := &r.shards[i]
		sh.delivering = false
		sh.compact()
	}
	checkShards(t, r)
	for k, cs := range conns[len(third):] {
		rs.leave(cs)
		if k%9973 == 0 {
			checkShards(t, r)
		}
	}
	if rs.count() != 0 || r.members.Load() != 0 {
		t.Fatalf("room not deleted: %d rooms, %d members", rs.count(), r.members.Load())
	}
	for i := range r.shards {
		if c := cap(r.shards[i].members); c > 64 {
			t.Fatalf("shard %d keeps capacity %d after emptying", i, c)
		}
	}
}
