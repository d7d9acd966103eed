package fanout

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// Engine is the registry of rooms, and the loops that serve them. Its
// lock is taken when a subscription starts, when a room is forgotten and
// when a message is published to a room by name, never per delivery.
type Engine struct {
	cfg Config

	loopsMu sync.Mutex
	loops   atomic.Pointer[[]*Loop] // indexed by Loop.idx; grows as loops are added

	mu    sync.Mutex
	rooms map[string]*Room
	// logRooms counts the rooms PublishAt created (Room.fromLog), apart
	// from the others for MaxRooms.
	logRooms int
	seed     maphash.Seed // picks the owner of a room created by Engine.Publish
}

// New returns an Engine without loops.
func New(cfg Config) *Engine {
	if cfg.Loops <= 0 || cfg.MaxPending <= 0 || cfg.CorkLimit <= 0 {
		panic(fmt.Sprintf("fanout: invalid config %+v", cfg))
	}
	if h := cfg.History; h.Messages < 0 || h.Messages > 0 && (h.TTL <= 0 || h.MaxBytes <= 0) {
		panic(fmt.Sprintf("fanout: invalid history config %+v", h))
	}
	if cfg.Encode == nil {
		cfg.Encode = func(dst []byte, _ Kind, _ *Room, m Message) []byte {
			return append(append(dst, m.Op), m.Payload...)
		}
	}
	e := &Engine{cfg: cfg, rooms: map[string]*Room{}, seed: maphash.MakeSeed()}
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

// RoomCount is the number of rooms.
func (e *Engine) RoomCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.rooms)
}

// Members is the number of subscriptions of the room named name.
func (e *Engine) Members(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.rooms[name]; r != nil {
		return int(r.members.Load())
	}
	return 0
}

// RoomInfo describes a room for /rooms.
type RoomInfo struct {
	Name         string
	Members      int64  // subscriptions on all loops
	Epoch        uint64 // see Room.Epoch
	Offset       uint64 // the last message's
	History      int64  // messages kept
	HistoryBytes int64
}

// EachRoom calls fn for every room, in no particular order, under the
// registry's lock: fn must not call back into the Engine.
func (e *Engine) EachRoom(fn func(RoomInfo)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, r := range e.rooms {
		fn(RoomInfo{name, r.members.Load(), r.epoch.Load(), r.top.Load(), r.histLen.Load(), r.histBytes.Load()})
	}
}

// Room describes the room named name, if it exists.
func (e *Engine) Room(name string) (RoomInfo, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.rooms[name]
	if r == nil {
		return RoomInfo{}, false
	}
	return RoomInfo{name, r.members.Load(), r.epoch.Load(), r.top.Load(), r.histLen.Load(), r.histBytes.Load()}, true
}

// Counters are the engine's counters, summed over loops.
type Counters struct {
	Deliveries      int64 // data frames written or queued to members
	BytesOut        int64 // their bytes
	Published       int64 // room messages sequenced by their owner loop
	HistoryMessages int64 // messages kept in history
	HistoryBytes    int64 // their size (see HistoryConfig.MaxBytes)
	// Replayed counts history messages queued to resuming subscriptions
	// (not those a slow consumer's close cut off).
	Replayed int64
	// DedupeEvicted counts publication keys forgotten before
	// DedupeWindow passed, for want of room (maxDedupeKeys).
	DedupeEvicted int64
}

// Counters returns the current counters. Safe for concurrent use.
func (e *Engine) Counters() Counters {
	var c Counters
	for _, l := range e.loopList() {
		c.Deliveries += l.deliveries.Load()
		c.BytesOut += l.bytesOut.Load()
		c.Published += l.published.Load()
		c.HistoryMessages += l.histMsgs.Load()
		c.HistoryBytes += l.histGauge.Load()
		c.Replayed += l.replayed.Load()
		c.DedupeEvicted += l.dedupeEvicted.Load()
	}
	return c
}

// join counts one more subscription of the room named name, creating
// the room (owned by l) when it does not exist, unless that would pass
// MaxRooms (nil).
func (e *Engine) join(name []byte, l *Loop) *Room {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.rooms[string(name)]
	if r == nil {
		if r = e.create(name, l, false); r == nil {
			return nil
		}
		if e.cfg.History.Messages > 0 {
			l.own(r) // on l: the owner lists its rooms for expiry
		}
	}
	r.members.Add(1)
	return r
}

// lookup returns the room named name; when it does not exist and history
// is on, it creates it, owned by l (or, when l is nil, by a loop the
// name hashes to). nil without an error: no such room, history off.
func (e *Engine) lookup(name []byte, l *Loop) (*Room, error) {
	return e.lookupFrom(name, l, false)
}

// lookupFrom is lookup; fromLog says an external log's message asks, so
// a room it creates counts as one of the log's (Config.MaxRooms).
func (e *Engine) lookupFrom(name []byte, l *Loop, fromLog bool) (*Room, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.rooms[string(name)]; r != nil {
		return r, nil
	}
	if e.cfg.History.Messages == 0 {
		return nil, nil
	}
	owner := l
	if owner == nil {
		loops := e.loopList()
		if len(loops) == 0 {
			return nil, nil
		}
		owner = loops[maphash.Bytes(e.seed, name)%uint64(len(loops))]
	}
	r := e.create(name, owner, fromLog)
	if r == nil {
		return nil, ErrTooManyRooms
	}
	if l != nil {
		l.own(r) // on l; otherwise the owner lists it when it keeps a message
	}
	return r, nil
}

// create adds a room owned by l, under e.mu; nil past MaxRooms (the
// log's rooms and the others counted apart).
func (e *Engine) create(name []byte, l *Loop, fromLog bool) *Room {
	if m := e.cfg.MaxRooms; m > 0 {
		if fromLog && e.logRooms >= m || !fromLog && len(e.rooms)-e.logRooms >= m {
			return nil
		}
	}
	r := &Room{name: string(name), owner: l, shards: make([]shard, e.cfg.Loops), fromLog: fromLog}
	if fromLog {
		e.logRooms++
	}
	if x := e.cfg.External; x != nil {
		r.epoch.Store(x.Epoch())
		r.hist.covered = x.Covered()
	} else {
		r.epoch.Store(newEpoch())
	}
	e.rooms[r.name] = r
	if e.cfg.RoomOpened != nil {
		e.cfg.RoomOpened(r.name)
	}
	return r
}

// newEpoch is a random, non-zero epoch.
func newEpoch() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}

// leave counts one subscription less of r. Without history, a room is
// forgotten when its last subscription ends; with history, its owner's
// expiry pass forgets it once its history is gone too.
func (e *Engine) leave(r *Room) {
	if r.members.Add(-1) == 0 && e.cfg.History.Messages == 0 {
		e.forget(r)
	}
}

// forget removes r from the registry if it still has no subscriptions
// and reports whether it did.
func (e *Engine) forget(r *Room) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.members.Load() != 0 || e.rooms[r.name] != r {
		return false
	}
	delete(e.rooms, r.name)
	if r.fromLog {
		e.logRooms--
	}
	r.gone.Store(true)
	if e.cfg.RoomClosed != nil {
		e.cfg.RoomClosed(r.name)
	}
	return true
}
