package hist

import (
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
)

func TestIndexBoundsRoundTrip(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 257, 511, 512, 1000, 1 << 20, 1<<20 + 12345, 1<<39 + 7, MaxValue} {
		i := index(v)
		lo, hi := bounds(i)
		if v < lo || v > hi {
			t.Fatalf("value %d: bucket %d covers [%d, %d]", v, i, lo, hi)
		}
		if i < prev {
			t.Fatalf("index not monotonic at %d", v)
		}
		prev = i
		if v >= sub && float64(hi-lo+1)/float64(lo) > 1.0/sub+1e-12 {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d of its value", i, lo, hi, sub)
		}
	}
	if index(MaxValue) != buckets-1 {
		t.Fatalf("index(MaxValue) = %d, want %d", index(MaxValue), buckets-1)
	}
	// Buckets tile the value range with no holes.
	for i := 1; i < buckets; i++ {
		_, phi := bounds(i - 1)
		lo, _ := bounds(i)
		if lo != phi+1 {
			t.Fatalf("hole between bucket %d and %d: %d, %d", i-1, i, phi, lo)
		}
	}
}

func TestQuantileUniform(t *testing.T) {
	var h Histogram
	for v := int64(1); v <= 100000; v++ {
		h.Record(v)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 50000}, {0.9, 90000}, {0.99, 99000}, {0.999, 99900}, {1, 100000}, {0, 1}} {
		got := h.Quantile(c.q)
		if got < c.want || float64(got-c.want) > float64(c.want)/sub+1 {
			t.Errorf("q%.3f = %d, want %d (+%.1f%%)", c.q, got, c.want, 100.0/sub)
		}
	}
	if h.Count() != 100000 || h.Min() != 1 || h.Max() != 100000 {
		t.Fatalf("count/min/max = %d/%d/%d", h.Count(), h.Min(), h.Max())
	}
	if m := h.Mean(); m != 50000.5 {
		t.Fatalf("mean = %v", m)
	}
}

func TestQuantileAgainstSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	vals := make([]int64, 20000)
	for i := range vals {
		// Log-normal-ish latencies from 10µs to 100ms.
		v := int64(10_000 * (1 + r.ExpFloat64()*r.ExpFloat64()*50))
		vals[i] = v
		h.Record(v)
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		rank := int(float64(len(vals))*q+0.999999) - 1
		exact := vals[rank]
		got := h.Quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/sub {
			t.Errorf("q%v: got %d, exact %d", q, got, exact)
		}
	}
}

func TestSmallAndEdgeValues(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram should report zeros")
	}
	h.Record(-5) // clamped to 0
	h.Record(3)
	h.Record(1 << 50) // clamped to MaxValue
	if h.Min() != 0 || h.Max() != MaxValue {
		t.Fatalf("min/max = %d/%d", h.Min(), h.Max())
	}
	if got := h.Quantile(0.5); got != 3 {
		t.Fatalf("median = %d, want 3 (exact below %d)", got, sub)
	}
	var one Histogram
	one.Record(123456)
	for _, q := range []float64{0.01, 0.5, 0.99} {
		if got := one.Quantile(q); got != 123456 {
			t.Fatalf("single value q%v = %d (should clamp to min/max)", q, got)
		}
	}
}

func TestMergeAndConcurrentRecord(t *testing.T) {
	var a, b Histogram
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				a.Record(int64(g*1000 + i + 1))
			}
		}(g)
	}
	wg.Wait()
	b.Record(1_000_000)
	a.Merge(&b)
	if a.Count() != 8001 || a.Max() != 1_000_000 || a.Min() != 1 {
		t.Fatalf("merged count/min/max = %d/%d/%d", a.Count(), a.Min(), a.Max())
	}
	a.Reset()
	if a.Count() != 0 || a.Quantile(0.5) != 0 {
		t.Fatal("reset did not empty")
	}
}

func BenchmarkRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Record(int64(i&0xfffff) * 1000)
	}
}

// A Local recording the same values as a Histogram gives the same
// quantiles, count, sum, min and max once flushed, across several flushes.
func TestLocalMatchesShared(t *testing.T) {
	var direct, shared Histogram
	l := NewLocal(&shared)
	rng := rand.New(rand.NewPCG(7, 9))
	n := 3*FlushEvery + 123
	for i := 0; i < n; i++ {
		v := int64(rng.ExpFloat64() * 1e6)
		direct.Record(v)
		l.Record(v)
	}
	if shared.Count() != uint64(3*FlushEvery) {
		t.Fatalf("before Flush: shared has %d values, want the %d of three automatic flushes", shared.Count(), 3*FlushEvery)
	}
	l.Flush()
	l.Flush() // nothing new: a no-op
	if shared.Count() != direct.Count() || shared.Mean() != direct.Mean() || shared.Min() != direct.Min() || shared.Max() != direct.Max() {
		t.Fatalf("shared n=%d mean=%v min=%d max=%d; direct n=%d mean=%v min=%d max=%d",
			shared.Count(), shared.Mean(), shared.Min(), shared.Max(), direct.Count(), direct.Mean(), direct.Min(), direct.Max())
	}
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		if a, b := shared.Quantile(q), direct.Quantile(q); a != b {
			t.Errorf("q%v: local %d, direct %d", q, a, b)
		}
	}
}
