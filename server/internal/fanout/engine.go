package fanout

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Config sizes an Engine. Every field is required.
type Config struct {
	// Loops is the number of event loops; each calls AddLoop once.
	Loops int

	// MaxPending is how many unsent bytes a connection may have queued
	// before it is a slow consumer (see Member.Admit).
	MaxPending int

	// CorkLimit is how many bytes a room shard's batch, or a member's
	// cork, collects before it is written without waiting for the end of
	// the poll cycle.
	CorkLimit int

	// MaxFreeBytes bounds the buffer capacity each loop keeps for reuse.
	MaxFreeBytes int

	// MaxRooms caps the rooms with members: a Join that would create one
	// more is refused. Zero means no cap.
	MaxRooms int

	// RoomOpened and RoomClosed, when set, are called when a room gets
	// its first member and after its last member left, in that order for
	// a given room, under the registry's lock: they must return quickly
	// and must not call back into the Engine.
	RoomOpened, RoomClosed func(name string)
}

// Engine is the registry of rooms that have members, and the loops that
// serve them. Its lock is taken when a member joins and when the last
// member of a room leaves, never per message.
type Engine struct {
	cfg Config

	loopsMu sync.Mutex
	loops   atomic.Pointer[[]*Loop] // indexed by Loop.idx; grows as loops are added

	mu    sync.Mutex
	rooms map[string]*Room
}

// New returns an Engine without loops.
func New(cfg Config) *Engine {
	if cfg.Loops <= 0 || cfg.MaxPending <= 0 || cfg.CorkLimit <= 0 {
		panic(fmt.Sprintf("fanout: invalid config %+v", cfg))
	}
	e := &Engine{cfg: cfg, rooms: map[string]*Room{}}
	empty := []*Loop{}
	e.loops.Store(&empty)
	return e
}

// AddLoop registers the next event loop, run by exec, and returns its
// Loop. Safe for concurrent use; at most Config.Loops times.
func (e *Engine) AddLoop(exec Executor) *Loop {
	e.loopsMu.Lock()
	defer e.loopsMu.Unlock()
	old := e.loopList()
	if len(old) >= e.cfg.Loops {
		panic("fanout: more loops than Config.Loops")
	}
	l := newLoop(e, len(old), exec)
	next := append(append(make([]*Loop, 0, len(old)+1), old...), l)
	e.loops.Store(&next)
	return l
}

func (e *Engine) loopList() []*Loop { return *e.loops.Load() }

// RoomCount is the number of rooms with members.
func (e *Engine) RoomCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.rooms)
}

// EachRoom calls fn with the name and member count of every room, in no
// particular order, under the registry's lock: fn must not call back
// into the Engine.
func (e *Engine) EachRoom(fn func(name string, members int64)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, r := range e.rooms {
		fn(name, r.members.Load())
	}
}

// Counters are the engine's counters, summed over loops.
type Counters struct {
	Deliveries int64 // data frames written or queued to members
	BytesOut   int64 // their bytes
	Published  int64 // room messages sequenced by their owner loop
}

// Counters returns the current counters. Safe for concurrent use.
func (e *Engine) Counters() Counters {
	var c Counters
	for _, l := range e.loopList() {
		c.Deliveries += l.deliveries.Load()
		c.BytesOut += l.bytesOut.Load()
		c.Published += l.published.Load()
	}
	return c
}

// Publish sends one message to every member of the room named name, in
// the room's order: the frame is head followed by payload, encoded once.
// It returns the number of members the room had when the message was
// handed to its owner loop; 0 when the room has none (nothing is sent).
// Safe from any goroutine; head and payload are copied before it returns.
func (e *Engine) Publish(name string, head, payload []byte) int {
	e.mu.Lock()
	r := e.rooms[name]
	e.mu.Unlock()
	if r == nil {
		return 0
	}
	members := int(r.members.Load())
	f := newSharedFrame(head, payload)
	handoff(r.owner, r, f, true)
	f.release()
	return members
}

// join makes m a member of the room named name, creating the room with
// m's loop as its owner, unless that would pass MaxRooms. Runs on m's
// loop.
func (e *Engine) join(m *Member, name []byte) bool {
	e.mu.Lock()
	r := e.rooms[string(name)]
	if r == nil {
		if e.cfg.MaxRooms > 0 && len(e.rooms) >= e.cfg.MaxRooms {
			e.mu.Unlock()
			return false
		}
		r = &Room{name: string(name), owner: m.loop, shards: make([]shard, e.cfg.Loops)}
		e.rooms[r.name] = r
		if e.cfg.RoomOpened != nil {
			e.cfg.RoomOpened(r.name)
		}
	}
	r.members.Add(1)
	e.mu.Unlock()
	r.shards[m.loop.idx].add(m, r)
	return true
}

// leave removes m from its room, and the room from the registry when m
// was its last member. Runs on m's loop.
func (e *Engine) leave(m *Member) {
	r := m.room
	m.room = nil
	r.shards[m.loop.idx].remove(m)
	if r.members.Add(-1) == 0 {
		e.mu.Lock()
		if r.members.Load() == 0 && e.rooms[r.name] == r {
			delete(e.rooms, r.name)
			if e.cfg.RoomClosed != nil {
				e.cfg.RoomClosed(r.name)
			}
		}
		e.mu.Unlock()
	}
}
