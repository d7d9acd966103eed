package occupancy

import (
	"bytes"
	"sync"
	"sync/atomic"
)

// Table holds the other instances' entries of one Kind and their sum per
// key. Apply and Expire take its lock (once per batch and interval, off
// the event loops); Remote reads the sums without a lock, from any
// goroutine; Users and Data take the lock.
type Table struct {
	// Kind is what the table counts: a batch of another kind is refused.
	Kind Kind
	// Self is this instance's id: its own batches (NATS delivers them
	// back) are ignored.
	Self uint64

	mu   sync.Mutex
	pods map[uint64]*pod
	sums map[string]int64 // per key, over pods (non-zero)
	// data is each key's data as the last batch that named it said
	// (Users: the user's info).
	data map[string][]byte
	// rooms indexes a Users table's keys by room: room -> user -> struct;
	// dirty are the rooms whose users came or went since TakeDirtyRooms.
	rooms map[string]map[string]struct{}
	dirty map[string]struct{}
	// read mirrors sums for Remote: key -> *atomic.Int64. An entry is
	// created once per key and stays while the key has a sum.
	read sync.Map
	// dropped counts instances dropped for silence (Expire).
	dropped atomic.Int64
}

// pod is one other instance's entries.
type pod struct {
	seen  int64  // the clock (ns) at its last batch
	seq   uint64 // its last batch's sequence
	cycle uint64 // its last batch's cycle
	keys  map[string]stamped
}

// stamped is a count and the sender's cycle when it was last sent.
type stamped struct {
	count int64
	cycle uint64
}

// Apply reads one batch received at now (ns, any clock Expire uses too).
// A malformed batch, or one of another Kind, is refused whole (nothing
// applied).
func (t *Table) Apply(b []byte, now int64) error {
	h, err := ParseHeader(b)
	if err != nil {
		return err
	}
	if h.Kind != t.Kind {
		return ErrBadBatch
	}
	if h.From == t.Self {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pods == nil {
		t.pods = map[uint64]*pod{}
		t.sums = map[string]int64{}
		t.data = map[string][]byte{}
		t.rooms = map[string]map[string]struct{}{}
	}
	p := t.pods[h.From]
	if p == nil {
		p = &pod{keys: map[string]stamped{}}
		t.pods[h.From] = p
	} else if h.Seq <= p.seq {
		return nil // late or doubled: a newer batch said more
	}
	contiguous := p.seq != 0 && h.Seq == p.seq+1
	p.seen, p.seq = now, h.Seq
	_, _ = Parse(b, func(key []byte, count int64, data []byte) {
		old, had := p.keys[string(key)]
		switch {
		case count == 0 && had:
			delete(p.keys, string(key))
			t.add(string(key), -old.count)
		case count > 0:
			name := string(key)
			p.keys[name] = stamped{count, h.Cycle}
			t.add(name, count-old.count)
			if t.Kind == Users && !bytes.Equal(t.data[name], data) {
				t.data[name] = bytes.Clone(data)
			}
		}
	})
	if h.Cycle > p.cycle {
		// The sender repeated every key it has during its previous
		// cycle: an entry older than that is one whose 0 was lost. Only
		// when no batch was missed in between (a missed batch may have
		// held the repetitions).
		if contiguous && h.Cycle == p.cycle+1 {
			for key, s := range p.keys {
				if s.cycle < p.cycle {
					delete(p.keys, key)
					t.add(key, -s.count)
				}
			}
		}
		p.cycle = h.Cycle
	}
	return nil
}

// Expire drops every instance not heard from since now-ttl, with its
// entries, and reports how many it dropped.
func (t *Table) Expire(now, ttl int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for id, p := range t.pods {
		if now-p.seen <= ttl {
			continue
		}
		for key, s := range p.keys {
			t.add(key, -s.count)
		}
		delete(t.pods, id)
		n++
	}
	t.dropped.Add(int64(n))
	return n
}

// add moves key's sum by d, under t.mu.
func (t *Table) add(key string, d int64) {
	if d == 0 {
		return
	}
	v := t.sums[key] + d
	c, _ := t.read.Load(key)
	if v == 0 {
		delete(t.sums, key)
		delete(t.data, key)
		if c != nil {
			t.read.Delete(key)
		}
		if t.Kind == Users {
			room, user := SplitUserKey(key)
			if us := t.rooms[room]; us != nil {
				delete(us, user)
				if len(us) == 0 {
					delete(t.rooms, room)
				}
			}
			t.markDirty(room)
		}
		return
	}
	if t.sums[key] == 0 && t.Kind == Users {
		room, user := SplitUserKey(key)
		us := t.rooms[room]
		if us == nil {
			us = map[string]struct{}{}
			t.rooms[room] = us
		}
		us[user] = struct{}{}
		t.markDirty(room)
	}
	t.sums[key] = v
	if c == nil {
		c, _ = t.read.LoadOrStore(key, new(atomic.Int64))
	}
	c.(*atomic.Int64).Store(v)
}

// markDirty notes that room's users changed; t.mu held.
func (t *Table) markDirty(room string) {
	if t.dirty == nil {
		t.dirty = map[string]struct{}{}
	}
	t.dirty[room] = struct{}{}
}

// TakeDirtyRooms calls fn for each room whose users came or went since
// the last call (a Users table), and forgets them.
func (t *Table) TakeDirtyRooms(fn func(room string)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for room := range t.dirty {
		fn(room)
	}
	clear(t.dirty)
}

// Remote is the sum of the other instances' counts for key.
func (t *Table) Remote(key string) int64 {
	if c, ok := t.read.Load(key); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// Users calls fn for each user of room on the other instances (a Users
// table), with the user's info, in no order, under the table's lock: fn
// must not call back into the table. info is the table's: read it during
// the call only.
func (t *Table) Users(room string, fn func(user string, info []byte)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for user := range t.rooms[room] {
		fn(user, t.data[UserKey(room, user)])
	}
}

// Instances is the number of other instances counted.
func (t *Table) Instances() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pods)
}

// Dropped counts the instances dropped for silence so far.
func (t *Table) Dropped() int64 { return t.dropped.Load() }
