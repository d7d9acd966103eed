// Package hist is a log-linear latency histogram in the style of HdrHistogram:
// values below 2^SubBits are counted exactly, larger ones in buckets whose
// width is 1/2^SubBits of their magnitude, so any quantile is within 1/128
// (0.8%) of the true value. Recording is one atomic add and allocation-free,
// so many goroutines can share one Histogram; values are nanoseconds by
// convention but the package does not care.
package hist

import (
	"math"
	"math/bits"
	"sync/atomic"
)

const (
	// SubBits sets the precision: 2^SubBits sub-buckets per power of two,
	// a relative error of at most 2^-SubBits (0.78%).
	SubBits = 7
	sub     = 1 << SubBits

	// MaxValue is the largest value recorded exactly into its bucket;
	// larger values are clamped to it (2^40 ns is about 18 minutes).
	MaxValue = 1<<40 - 1

	maxExp  = 40 - SubBits // exponent of the top bucket row
	buckets = (maxExp + 1) * sub
)

// Histogram counts values. The zero value is empty and ready to use. All
// methods are safe for concurrent use; Quantile and friends read a moving
// target while recording goes on, which is fine for progress lines.
type Histogram struct {
	counts [buckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	min    atomic.Uint64 // stored as ^v so that the zero value means "none"
	max    atomic.Uint64
}

// index maps v to its bucket.
func index(v uint64) int {
	if v < sub {
		return int(v)
	}
	e := bits.Len64(v) - SubBits - 1 // shift that leaves SubBits+1 significant bits
	m := v >> uint(e)                // in [sub, 2*sub)
	return (e+1)<<SubBits + int(m-sub)
}

// bounds returns the smallest and largest value counted in bucket i.
func bounds(i int) (lo, hi uint64) {
	if i < sub {
		return uint64(i), uint64(i)
	}
	e := uint(i>>SubBits) - 1
	m := uint64(i&(sub-1)) + sub
	return m << e, (m+1)<<e - 1
}

// clamp maps a recorded value into [0, MaxValue].
func clamp(v int64) uint64 {
	return uint64(min(max(v, 0), MaxValue))
}

// Record counts one value, clamped to [0, MaxValue]. It does not allocate.
func (h *Histogram) Record(v int64) {
	u := clamp(v)
	h.counts[index(u)].Add(1)
	h.n.Add(1)
	h.sum.Add(u)
	h.widen(u, u)
}

// widen makes h's min and max cover [lo, hi].
func (h *Histogram) widen(lo, hi uint64) {
	for {
		cur := h.max.Load()
		if hi <= cur || h.max.CompareAndSwap(cur, hi) {
			break
		}
	}
	for {
		cur := h.min.Load()
		if (cur != 0 && lo >= ^cur) || h.min.CompareAndSwap(cur, ^lo) {
			break
		}
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max is the largest recorded value, 0 when empty.
func (h *Histogram) Max() int64 { return int64(h.max.Load()) }

// Min is the smallest recorded value, 0 when empty.
func (h *Histogram) Min() int64 {
	m := h.min.Load()
	if m == 0 {
		return 0
	}
	return int64(^m)
}

// Mean is the arithmetic mean, 0 when empty.
func (h *Histogram) Mean() float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return float64(h.sum.Load()) / float64(n)
}

// Quantile returns a value v such that a fraction q (0..1) of the recorded
// values is at or below v: the upper bound of the bucket holding the
// ceil(q*n)-th value, clamped to [Min, Max]. Empty histograms return 0.
func (h *Histogram) Quantile(q float64) int64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	if q <= 0 {
		return h.Min()
	}
	if q >= 1 {
		return h.Max()
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			_, hi := bounds(i)
			v := int64(hi)
			if mx := h.Max(); v > mx {
				v = mx
			}
			if mn := h.Min(); v < mn {
				v = mn
			}
			return v
		}
	}
	return h.Max()
}

// Merge adds o's counts into h. o should not be recording at the same time
// if an exact result is wanted.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	if o.n.Load() == 0 {
		return
	}
	h.widen(uint64(o.Min()), uint64(o.Max()))
}

// Reset empties h. Not atomic as a whole: call it while nothing records.
func (h *Histogram) Reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.n.Store(0)
	h.sum.Store(0)
	h.min.Store(0)
	h.max.Store(0)
}
