package fanout

// dedupe remembers the keys of the publications an event loop sequenced
// for the rooms it owns (Publication.Key), for DedupeWindow and at most
// maxDedupeKeys: a retry of a publication whose outcome its publisher
// did not learn is answered with the first one's place and reaches
// nobody twice. Touched by its loop only. One allocation per keyed
// publication (the remembered key); none for a lookup.
type dedupe struct {
	seen map[string]dedupeEntry // room name, 0x00, key
	// order holds the remembered keys oldest first (a ring: head, n), so
	// that expiry and the count limit drop the oldest.
	order    []dedupeKey
	head, n  int
	recorded uint64 // keys recorded so far: each one's id
	scratch  []byte
}

type dedupeEntry struct {
	epoch, offset uint64
	id            uint64 // tells a key recorded again (a new epoch) apart
}

type dedupeKey struct {
	key string
	at  int64 // Loop.now when recorded
	id  uint64
}

// lookupKey builds room name, 0x00, key in the scratch buffer.
func (d *dedupe) lookupKey(r *Room, key string) []byte {
	d.scratch = append(append(append(d.scratch[:0], r.name...), 0), key...)
	return d.scratch
}

// find returns where key's first publication in r was placed, if it is
// remembered and of r's current epoch (a room that started a new epoch
// forgot its keys with its offsets).
func (d *dedupe) find(l *Loop, r *Room, key string) (dedupeEntry, bool) {
	d.expire(l.now)
	e, ok := d.seen[string(d.lookupKey(r, key))]
	if !ok || e.epoch != r.epoch.Load() {
		return dedupeEntry{}, false
	}
	return e, true
}

// record remembers key's publication in r at offset.
func (d *dedupe) record(l *Loop, r *Room, key string, epoch, offset uint64) {
	if d.seen == nil {
		d.seen = map[string]dedupeEntry{}
	}
	if d.n == maxDedupeKeys {
		d.pop()
		l.dedupeEvicted.Add(1)
	}
	k := string(d.lookupKey(r, key))
	d.recorded++
	d.seen[k] = dedupeEntry{epoch: epoch, offset: offset, id: d.recorded}
	if d.n == len(d.order) {
		d.grow()
	}
	d.order[(d.head+d.n)%len(d.order)] = dedupeKey{k, l.now, d.recorded}
	d.n++
}

// expire forgets the keys older than DedupeWindow.
func (d *dedupe) expire(now int64) {
	for d.n > 0 && now-d.order[d.head].at > int64(DedupeWindow) {
		d.pop()
	}
}

// pop forgets the oldest key (unless it was recorded again since).
func (d *dedupe) pop() {
	k := d.order[d.head]
	d.order[d.head] = dedupeKey{}
	d.head = (d.head + 1) % len(d.order)
	d.n--
	if e, ok := d.seen[k.key]; ok && e.id == k.id {
		delete(d.seen, k.key)
	}
}

func (d *dedupe) grow() {
	next := make([]dedupeKey, max(64, 2*len(d.order)))
	for i := range d.n {
		next[i] = d.order[(d.head+i)%len(d.order)]
	}
	d.order, d.head = next, 0
}
