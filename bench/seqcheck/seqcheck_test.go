package seqcheck

import "testing"

func observeAll(t *Tracker, seqs ...uint64) []Kind {
	ks := make([]Kind, len(seqs))
	for i, s := range seqs {
		ks[i] = t.Observe(s)
	}
	return ks
}

func TestTracker(t *testing.T) {
	cases := []struct {
		name      string
		seqs      []uint64
		sent      uint64
		kinds     []Kind
		gaps      uint64
		missing   uint64
		late, dup uint64
		undeliv   uint64
	}{
		{name: "in order", seqs: []uint64{0, 1, 2, 3}, sent: 4,
			kinds: []Kind{InOrder, InOrder, InOrder, InOrder}},
		{name: "one gap", seqs: []uint64{0, 1, 4, 5}, sent: 6,
			kinds: []Kind{InOrder, InOrder, Gap, InOrder}, gaps: 1, missing: 2},
		{name: "swap", seqs: []uint64{0, 2, 1, 3}, sent: 4,
			kinds: []Kind{InOrder, Gap, Late, InOrder}, gaps: 1, missing: 0, late: 1},
		{name: "duplicate", seqs: []uint64{0, 1, 1, 2}, sent: 3,
			kinds: []Kind{InOrder, InOrder, Duplicate, InOrder}, dup: 1},
		{name: "duplicate of a late one", seqs: []uint64{0, 3, 1, 1, 2}, sent: 4,
			kinds: []Kind{InOrder, Gap, Late, Duplicate, Late}, gaps: 1, late: 2, dup: 1},
		{name: "tail not delivered", seqs: []uint64{0, 1}, sent: 5,
			kinds: []Kind{InOrder, InOrder}, undeliv: 3},
		{name: "nothing arrived", seqs: nil, sent: 3, kinds: []Kind{}, undeliv: 3},
		{name: "gap and tail", seqs: []uint64{0, 2}, sent: 4,
			kinds: []Kind{InOrder, Gap}, gaps: 1, missing: 1, undeliv: 1},
		{name: "first lost", seqs: []uint64{1, 2}, sent: 3,
			kinds: []Kind{Gap, InOrder}, gaps: 1, missing: 1},
		{name: "very late arrival beyond window", seqs: []uint64{0, 200, 1}, sent: 201,
			kinds: []Kind{InOrder, Gap, Late}, gaps: 1, missing: 198, late: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tr Tracker
			got := observeAll(&tr, c.seqs...)
			for i := range c.kinds {
				if got[i] != c.kinds[i] {
					t.Fatalf("observation %d (seq %d) = %v, want %v", i, c.seqs[i], got[i], c.kinds[i])
				}
			}
			tr.Finish(0, c.sent)
			if tr.Gaps != c.gaps || tr.Missing != c.missing || tr.Late != c.late || tr.Duplicates != c.dup || tr.Undelivered != c.undeliv {
				t.Fatalf("gaps/missing/late/dup/undelivered = %d/%d/%d/%d/%d, want %d/%d/%d/%d/%d",
					tr.Gaps, tr.Missing, tr.Late, tr.Duplicates, tr.Undelivered, c.gaps, c.missing, c.late, c.dup, c.undeliv)
			}
			if clean := c.gaps == 0 && c.late == 0 && c.dup == 0; tr.Clean() != clean {
				t.Fatalf("Clean() = %v", tr.Clean())
			}
		})
	}
}

func TestStartAndTotals(t *testing.T) {
	var a, b Tracker
	a.Start(100)
	observeAll(&a, 100, 101, 102)
	if a.Finish(100, 3) != 0 || !a.Clean() || a.Next() != 103 {
		t.Fatalf("a not clean: %+v", a)
	}
	b.Start(100)
	observeAll(&b, 101)
	b.Finish(100, 3)
	var s Totals
	s.Add(&a)
	s.Add(&b)
	if s.Streams != 2 || s.DirtyStreams != 1 || s.ShortStreams != 1 || s.Received != 4 || s.Missing != 1 || s.Gaps != 1 || s.Undelivered != 1 {
		t.Fatalf("totals = %+v", s)
	}
}

func TestObserveDoesNotAllocate(t *testing.T) {
	var tr Tracker
	n := testing.AllocsPerRun(1000, func() { tr.Observe(tr.Next()) })
	if n != 0 {
		t.Fatalf("Observe allocates %v per call", n)
	}
}

func TestStampRoundTrip(t *testing.T) {
	b := make([]byte, 64)
	PutStamp(b, 7, 1<<40+5, 1234567890123)
	pub, n, ns, ok := ReadStamp(b)
	if !ok || pub != 7 || n != 1<<40+5 || ns != 1234567890123 {
		t.Fatalf("got %d %d %d %v", pub, n, ns, ok)
	}
	if _, _, _, ok := ReadStamp(b[:StampSize-1]); ok {
		t.Fatal("short payload accepted")
	}
}
