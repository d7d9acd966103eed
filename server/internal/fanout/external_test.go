package fanout

import (
	"sync/atomic"
	"testing"
	"time"
)

// externalLog stands for JetStream in the engine's tests: an epoch, the
// position where this engine's view of the log began, and how far
// Deliver has handed messages.
type externalLog struct {
	epoch, covered atomic.Uint64
	handed         atomic.Uint64
}

func externalConfig(log *externalLog, messages int) Config {
	cfg := historyConfig(1, messages)
	cfg.External = &External{
		Epoch:   log.epoch.Load,
		Covered: log.covered.Load,
		Handed:  log.handed.Load,
		MaxWait: time.Second,
	}
	return cfg
}

func (x *externalLog) deliver(t *testing.T, e *Engine, room string, offset uint64) {
	t.Helper()
	if _, err := e.PublishAt(room, 1, []byte(room), x.epoch.Load(), offset); err != nil {
		t.Fatal(err)
	}
	x.handed.Store(offset)
}

// With external offsets the log's numbers are the room's: increasing,
// not consecutive; duplicates are dropped; a resume replays exactly what
// the log sent after the client's offset, and history is complete only
// after where this engine's view of the log began.
func TestExternalOffsets(t *testing.T) {
	log := &externalLog{}
	log.epoch.Store(7)
	log.covered.Store(100) // this node started reading the log at 101
	e := New(externalConfig(log, 100))
	cl := &cycleLoop{}
	l := e.AddLoop(cl)
	live := framedMember(l, "r", nil)
	cl.endCycle()
	if res := live.joins[0]; res.Epoch != 7 || res.Offset != 0 {
		t.Fatalf("join %+v", res)
	}
	for _, off := range []uint64{103, 110, 110, 105, 150} { // 110 twice and 105 late: duplicates
		log.deliver(t, e, "r", off)
	}
	cl.endCycle()
	if _, offs := offsets(t, live.take()); len(offs) != 3 || offs[0] != 103 || offs[1] != 110 || offs[2] != 150 {
		t.Fatalf("live offsets %v, want [103 110 150]", offs)
	}
	for _, tc := range []struct {
		since  uint64
		why    NotRecovered
		replay []uint64
	}{
		{100, Recovered, []uint64{103, 110, 150}},
		{104, Recovered, []uint64{110, 150}},
		{150, Recovered, nil},
		{99, HistoryPassed, nil}, // before this node's view of the log
	} {
		m := framedMember(l, "r", &Resume{Epoch: 7, Offset: tc.since})
		cl.endCycle()
		res := m.joins[0]
		_, offs := offsets(t, m.take())
		if res.Why != tc.why || res.Err != nil || len(offs) != len(tc.replay) || res.Offset != 150 {
			t.Fatalf("resume from %d: %+v, replayed %v; want %v", tc.since, res, offs, tc.replay)
		}
		for i := range offs {
			if offs[i] != tc.replay[i] {
				t.Fatalf("resume from %d: replayed %v, want %v", tc.since, offs, tc.replay)
			}
		}
		m.m.Release()
	}
	// The log started again (stream recreated): a new epoch, history of
	// the old one gone; a resume in the old epoch is told so.
	log.epoch.Store(8)
	e.Restart(8, 0)
	log.deliver(t, e, "r", 1)
	cl.endCycle()
	if _, offs := offsets(t, live.take()); len(offs) != 1 || offs[0] != 1 {
		t.Fatalf("after the epoch change: %v", offs)
	}
	m := framedMember(l, "r", &Resume{Epoch: 7, Offset: 150})
	cl.endCycle()
	if res := m.joins[0]; res.Why != EpochChanged || res.Epoch != 8 {
		t.Fatalf("resume in the old epoch: %+v", res)
	}
}

// A resume newer than the room's messages here (the client saw them on
// another node, faster) waits for the log, then starts exactly after its
// offset: the messages up to it are not sent again.
func TestExternalResumeWaitsForTheLog(t *testing.T) {
	log := &externalLog{}
	log.epoch.Store(1)
	e := New(externalConfig(log, 100))
	cl := &cycleLoop{}
	l := e.AddLoop(cl)
	keep := framedMember(l, "r", nil) // the room exists
	log.deliver(t, e, "r", 5)
	cl.endCycle()

	ahead := framedMember(l, "r", &Resume{Epoch: 1, Offset: 9})
	cl.endCycle()
	if len(ahead.joins) != 0 {
		t.Fatalf("answered before the log caught up: %+v", ahead.joins)
	}
	log.deliver(t, e, "r", 8)
	log.deliver(t, e, "r", 9)
	log.deliver(t, e, "other", 12) // the log is past 9
	log.deliver(t, e, "r", 13)
	l.Tick()
	cl.endCycle()
	// Answered behind the log's messages: 13 came before the answer, so
	// it is replayed; 8 and 9 are not sent again.
	if len(ahead.joins) != 1 || !ahead.joins[0].Recovered() || ahead.joins[0].Offset != 13 {
		t.Fatalf("joins %+v", ahead.joins)
	}
	log.deliver(t, e, "r", 20)
	cl.endCycle()
	if _, offs := offsets(t, ahead.take()); len(offs) != 2 || offs[0] != 13 || offs[1] != 20 {
		t.Fatalf("got %v, want 13 then 20", offs)
	}
	keep.take()

	// Never reached: refused after MaxWait.
	never := framedMember(l, "r", &Resume{Epoch: 1, Offset: 1000})
	cl.endCycle()
	l.now += int64(2 * time.Second)
	l.retryWaiting()
	cl.endCycle()
	if len(never.joins) != 1 || never.joins[0].Err != ErrOffsetAhead || len(never.m.Subs()) != 0 {
		t.Fatalf("joins %+v", never.joins)
	}
}
