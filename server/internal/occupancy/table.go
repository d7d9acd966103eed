package occupancy

import (
	"sync"
	"sync/atomic"
)

// Table holds the other instances' counts and their sum per room. Apply
// and Expire take its lock (once per batch and interval, off the event
// loops); Remote reads the sums without a lock, from any goroutine.
type Table struct {
	// Self is this instance's id: its own batches (NATS delivers them
	// back) are ignored.
	Self uint64

	mu   sync.Mutex
	pods map[uint64]*pod
	sums map[string]int64 // per room, over pods (non-zero)
	// read mirrors sums for Remote: room -> *atomic.Int64. An entry is
	// created once per room and stays while the room has a sum.
	read sync.Map
	// Dropped counts instances dropped for silence (Expire).
	dropped atomic.Int64
}

// pod is one other instance's counts.
type pod struct {
	seen  int64  // the clock (ns) at its last batch
	seq   uint64 // its last batch's sequence
	cycle uint64 // its last batch's cycle
	rooms map[string]stamped
}

// stamped is a count and the sender's cycle when it was last sent.
type stamped struct {
	count int64
	cycle uint64
}

// Apply reads one batch received at now (ns, any clock Expire uses too).
// A malformed batch is refused whole (nothing applied).
func (t *Table) Apply(b []byte, now int64) error {
	h, err := ParseHeader(b)
	if err != nil {
		return err
	}
	if h.From == t.Self {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pods == nil {
		t.pods = map[uint64]*pod{}
		t.sums = map[string]int64{}
	}
	p := t.pods[h.From]
	if p == nil {
		p = &pod{rooms: map[string]stamped{}}
		t.pods[h.From] = p
	} else if h.Seq <= p.seq {
		return nil // late or doubled: a newer batch said more
	}
	contiguous := p.seq != 0 && h.Seq == p.seq+1
	p.seen, p.seq = now, h.Seq
	_, _ = Parse(b, func(room []byte, count int64) {
		old, had := p.rooms[string(room)]
		switch {
		case count == 0 && had:
			delete(p.rooms, string(room))
			t.add(string(room), -old.count)
		case count > 0:
			name := string(room)
			p.rooms[name] = stamped{count, h.Cycle}
			t.add(name, count-old.count)
		}
	})
	if h.Cycle > p.cycle {
		// The sender repeated every room it has during its previous
		// cycle: a count older than that is one whose 0 was lost. Only
		// when no batch was missed in between (a missed batch may have
		// held the repetitions).
		if contiguous && h.Cycle == p.cycle+1 {
			for room, s := range p.rooms {
				if s.cycle < p.cycle {
					delete(p.rooms, room)
					t.add(room, -s.count)
				}
			}
		}
		p.cycle = h.Cycle
	}
	return nil
}

// Expire drops every instance not heard from since now-ttl, with its
// counts, and reports how many it dropped.
func (t *Table) Expire(now, ttl int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for id, p := range t.pods {
		if now-p.seen <= ttl {
			continue
		}
		for room, s := range p.rooms {
			t.add(room, -s.count)
		}
		delete(t.pods, id)
		n++
	}
	t.dropped.Add(int64(n))
	return n
}

// add moves room's sum by d, under t.mu.
func (t *Table) add(room string, d int64) {
	if d == 0 {
		return
	}
	v := t.sums[room] + d
	c, _ := t.read.Load(room)
	if v == 0 {
		delete(t.sums, room)
		if c != nil {
			t.read.Delete(room)
		}
		return
	}
	t.sums[room] = v
	if c == nil {
		c, _ = t.read.LoadOrStore(room, new(atomic.Int64))
	}
	c.(*atomic.Int64).Store(v)
}

// Remote is the sum of the other instances' counts for room.
func (t *Table) Remote(room string) int64 {
	if c, ok := t.read.Load(room); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// Instances is the number of other instances counted.
func (t *Table) Instances() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pods)
}

// Dropped counts the instances dropped for silence so far.
func (t *Table) Dropped() int64 { return t.dropped.Load() }
