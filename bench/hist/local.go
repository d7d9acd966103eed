package hist

// Local is a histogram for one goroutine on a hot path: Record is plain
// arithmetic, no atomic instruction (at millions of values per second
// the shared Histogram's five atomics per value cost a tenth of a core).
// It adds itself into a shared Histogram every FlushEvery values, so a
// progress line reading the shared one lags by at most that, and on
// Flush. The zero value is empty and ready to use.
type Local struct {
	counts   [buckets]uint64
	n, sum   uint64
	min, max uint64 // min is valid when n > 0
	lo, hi   int    // range of buckets touched since the last flush
	to       *Histogram
}

// FlushEvery is how many values a Local holds before adding them to its
// shared Histogram.
const FlushEvery = 1 << 14

// NewLocal returns a Local that flushes into to.
func NewLocal(to *Histogram) *Local { return &Local{to: to, lo: buckets} }

// Record counts one value, clamped to [0, MaxValue]. Not safe for
// concurrent use.
func (l *Local) Record(v int64) {
	u := clamp(v)
	i := index(u)
	l.counts[i]++
	l.lo, l.hi = min(l.lo, i), max(l.hi, i)
	if l.n == 0 || u < l.min {
		l.min = u
	}
	l.max = max(l.max, u)
	l.sum += u
	l.n++
	if l.n == FlushEvery {
		l.Flush()
	}
}

// Flush adds the values recorded since the last flush to the shared
// Histogram and empties l.
func (l *Local) Flush() {
	if l.n == 0 {
		return
	}
	h := l.to
	for i := l.lo; i <= l.hi; i++ {
		if c := l.counts[i]; c != 0 {
			h.counts[i].Add(c)
			l.counts[i] = 0
		}
	}
	h.sum.Add(l.sum)
	h.widen(l.min, l.max)
	// The count last: a reader that sees it sees the buckets too.
	h.n.Add(l.n)
	l.n, l.sum, l.min, l.max = 0, 0, 0, 0
	l.lo, l.hi = buckets, 0
}
