package fanout

import (
	"sync/atomic"

	"github.com/valyala/bytebufferpool"
)

// Room is a set of members sharded by loop. Shard i is touched only on
// loop i, so delivering to it needs no lock.
type Room struct {
	name  string
	owner *Loop // sequences every message of the room
	// members counts members on all loops. It goes up under the
	// registry's lock, so a room found in the registry is never deleted
	// under a joining member.
	members atomic.Int64
	shards  []shard // indexed by Loop.idx
}

// Name is the room's name.
func (r *Room) Name() string { return r.name }

// shard is a room's members on one loop.
type shard struct {
	room    *Room
	members []*Member
	live    atomic.Int32 // len(members) minus holes; read by the owner loop
	// While flushing, leaving members leave a nil hole instead of
	// moving others; the holes are compacted afterwards.
	delivering bool
	holes      int

	// batch holds the frames delivered to this shard in the current poll
	// cycle, back to back (nil when none; listed in Loop.batched). At the
	// end of the cycle each member is written its part,
	// batch.B[member.from:], straight from this one buffer. frames counts
	// them. The buffer goes back to the loop's free list after the flush.
	batch  *bytebufferpool.ByteBuffer
	frames int32
}

// shrinkMinCap and shrinkFactor: a member list with capacity over
// shrinkMinCap that holds less than 1/shrinkFactor of it is reallocated at
// half its capacity, so a room that lost most of its members gives the
// memory back. Small lists are left alone: their reallocation would cost
// more than it saves.
const (
	shrinkMinCap = 64
	shrinkFactor = 4
)

// add appends m; a member that joins mid-cycle starts at the current end
// of the batch, since the frames delivered earlier are not for it.
func (sh *shard) add(m *Member, r *Room) {
	sh.room = r
	m.room, m.slot = r, int32(len(sh.members))
	m.from, m.fromN = 0, 0
	if sh.batch != nil {
		m.from, m.fromN = int32(len(sh.batch.B)), sh.frames
	}
	sh.members = append(sh.members, m)
	sh.live.Add(1)
}

// remove takes m out: a hole while the shard is being flushed, else the
// last member moves into m's slot.
func (sh *shard) remove(m *Member) {
	sh.live.Add(-1)
	if sh.delivering {
		sh.members[m.slot] = nil
		sh.holes++
		return
	}
	i, last := int(m.slot), len(sh.members)-1
	if i != last {
		moved := sh.members[last]
		sh.members[i], moved.slot = moved, int32(i)
	}
	sh.members[last] = nil
	sh.members = sh.members[:last]
	sh.shrink()
}

// compact closes the holes left during a flush.
func (sh *shard) compact() {
	j := 0
	for _, m := range sh.members {
		if m != nil {
			sh.members[j], m.slot = m, int32(j)
			j++
		}
	}
	clear(sh.members[j:])
	sh.members = sh.members[:j]
	sh.holes = 0
	sh.shrink()
}

func (sh *shard) shrink() {
	if c := cap(sh.members); c > shrinkMinCap && len(sh.members) < c/shrinkFactor {
		sh.members = append(make([]*Member, 0, c/2), sh.members...)
	}
}
