package fanout

import (
	"sync/atomic"

	"github.com/valyala/bytebufferpool"
)

// Room is a set of subscriptions sharded by loop, with the room's order:
// one owner loop gives every message its offset, keeps the room's
// history and hands the message to the other loops. Shard i is touched
// only on loop i, so delivering to it needs no lock.
type Room struct {
	name  string
	owner *Loop // sequences every message of the room
	// epoch names this incarnation of the room's offsets: random, set
	// when the room is created. A room that was forgotten (no members,
	// history expired) and is created again gets another epoch, and its
	// offsets start again at 1. With external offsets it is the log's
	// epoch, and changes when a message of another epoch arrives.
	epoch atomic.Uint64
	// members counts subscriptions on all loops. It goes up under the
	// registry's lock, so a room found in the registry is never deleted
	// under a joining member.
	members atomic.Int64
	// top is the offset of the room's last message (0: none yet). Written
	// by the owner only; others read it for /rooms.
	top  atomic.Uint64
	hist history // owner only
	// forwarded counts the messages forwarded to other instances in this
	// epoch (Config.Forward's Origin); owner only.
	forwarded uint64
	// histLen and histBytes mirror hist for /rooms (written by the
	// owner after each change).
	histLen, histBytes atomic.Int64
	listed             bool  // in the owner's Loop.owned (owner only)
	fromLog            bool  // created by an external log's message (Engine.PublishAt); set once, read under the registry's lock
	heapAt             int32 // index+1 in the owner's Loop.byBytes, 0 when not in it
	// gone is set (under the registry's lock) when the room left the
	// registry; a message that reaches its owner afterwards is sequenced
	// in the room that replaced it.
	gone   atomic.Bool
	shards []shard // indexed by Loop.idx
}

// Name is the room's name.
func (r *Room) Name() string { return r.name }

// Epoch is the room's epoch (see Room.epoch).
func (r *Room) Epoch() uint64 { return r.epoch.Load() }

// Top is the offset of the room's last message, 0 when it has none.
func (r *Room) Top() uint64 { return r.top.Load() }

// shard is a room's subscriptions on one loop, in one lane per Kind.
type shard struct {
	// live counts the subscriptions on this loop, pending ones included;
	// the owner hands a message to a loop only when its shard's live is
	// above zero (see Loop.fanout).
	live  atomic.Int32
	lanes [numKinds]lane
}

// lane is a shard's subscriptions of one Kind: they all get the same
// encoding of each message, appended once to the lane's batch.
type lane struct {
	subs []*Sub
	// While flushing, leaving subscriptions leave a nil hole instead of
	// moving others; the holes are compacted afterwards.
	delivering bool
	holes      int

	// batch holds the frames delivered to this lane in the current poll
	// cycle, back to back (nil when none; listed in Loop.batched). At the
	// end of the cycle each subscription's member is written its part,
	// batch.B[sub.from:], straight from this one buffer. frames counts
	// them. The buffer goes back to the loop's free list after the flush.
	batch  *bytebufferpool.ByteBuffer
	frames int32
}

// shrinkMinCap and shrinkFactor: a subscription list with capacity over
// shrinkMinCap that holds less than 1/shrinkFactor of it is reallocated
// at half its capacity, so a room that lost most of its members gives
// the memory back. Small lists are left alone: their reallocation would
// cost more than it saves.
const (
	shrinkMinCap = 64
	shrinkFactor = 4
)

// add appends s; a subscription that joins mid-cycle starts at the
// current end of the batch, since the frames delivered earlier are not
// for it.
func (ln *lane) add(s *Sub) {
	s.slot = int32(len(ln.subs))
	s.from, s.fromN = 0, 0
	if ln.batch != nil {
		s.from, s.fromN = int32(len(ln.batch.B)), ln.frames
	}
	ln.subs = append(ln.subs, s)
}

// remove takes s out: a hole while the lane is being flushed, else the
// last subscription moves into s's slot.
func (ln *lane) remove(s *Sub) {
	if ln.delivering {
		ln.subs[s.slot] = nil
		ln.holes++
		return
	}
	i, last := int(s.slot), len(ln.subs)-1
	if i != last {
		moved := ln.subs[last]
		ln.subs[i], moved.slot = moved, int32(i)
	}
	ln.subs[last] = nil
	ln.subs = ln.subs[:last]
	ln.shrink()
}

// compact closes the holes left during a flush.
func (ln *lane) compact() {
	j := 0
	for _, s := range ln.subs {
		if s != nil {
			ln.subs[j], s.slot = s, int32(j)
			j++
		}
	}
	clear(ln.subs[j:])
	ln.subs = ln.subs[:j]
	ln.holes = 0
	ln.shrink()
}

func (ln *lane) shrink() {
	if c := cap(ln.subs); c > shrinkMinCap && len(ln.subs) < c/shrinkFactor {
		ln.subs = append(make([]*Sub, 0, c/2), ln.subs...)
	}
}
