package server

// wheel is a hashed timing wheel of connection deadlines, one per loop
// and touched only on that loop. Adding, removing and firing cost O(1)
// per connection; connections link into slots through their own fields,
// so the wheel allocates nothing. Activity does not move a connection in
// the wheel: its deadline fires, the owner re-checks the connection's
// timestamps and re-arms it if it is not due yet.
type wheel struct {
	slots [wheelSlots]*conn
	cur   int64 // last tick processed
}

// add arms cs to fire at tick at (or the next tick if at is past).
func (w *wheel) add(cs *conn, at int64) {
	if cs.wslot >= 0 {
		w.remove(cs)
	}
	if at <= w.cur {
		at = w.cur + 1
	}
	s := int32(at & (wheelSlots - 1))
	cs.deadline, cs.wslot = at, s
	cs.wprev, cs.wnext = nil, w.slots[s]
	if cs.wnext != nil {
		cs.wnext.wprev = cs
	}
	w.slots[s] = cs
}

// remove disarms cs; a no-op when it is not armed.
func (w *wheel) remove(cs *conn) {
	if cs.wslot < 0 {
		return
	}
	if cs.wprev != nil {
		cs.wprev.wnext = cs.wnext
	} else {
		w.slots[cs.wslot] = cs.wnext
	}
	if cs.wnext != nil {
		cs.wnext.wprev = cs.wprev
	}
	cs.wprev, cs.wnext, cs.wslot = nil, nil, -1
}

// advance fires, in tick order, every connection whose deadline is at or
// before now. fire may re-arm or close the connection it is given.
func (w *wheel) advance(now int64, fire func(*conn)) {
	if now-w.cur > wheelSlots {
		// Far behind (a stalled loop): one pass over every slot finds
		// everything due.
		w.cur = now - wheelSlots
	}
	for w.cur < now {
		w.cur++
		for cs := w.slots[w.cur&(wheelSlots-1)]; cs != nil; {
			next := cs.wnext
			if cs.deadline <= w.cur {
				w.remove(cs)
				fire(cs)
			}
			cs = next
		}
	}
}
