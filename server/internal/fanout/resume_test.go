package fanout

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// offsetEncode is a test Config.Encode: a Framed frame is 'F', the
// offset (8 bytes), the payload's length (1 byte) and the payload; a Raw
// one is the opcode byte and the payload.
func offsetEncode(dst []byte, k Kind, _ *Room, m Message) []byte {
	if k == Raw {
		return append(append(dst, m.Op), m.Payload...)
	}
	dst = append(dst, 'F')
	dst = binary.BigEndian.AppendUint64(dst, m.Offset)
	dst = append(dst, byte(len(m.Payload)))
	return append(dst, m.Payload...)
}

// offsets parses offsetEncode's Framed frames and "A" acknowledgements
// (queued by onJoin) out of what a connection was written.
func offsets(t *testing.T, b []byte) (acks int, offs []uint64) {
	t.Helper()
	for len(b) > 0 {
		switch b[0] {
		case 'A':
			acks++
			b = b[1:]
		case 'F':
			if len(b) < 10 || len(b) < 10+int(b[9]) {
				t.Fatalf("truncated frame % x", b)
			}
			offs = append(offs, binary.BigEndian.Uint64(b[1:9]))
			b = b[10+int(b[9]):]
		default:
			t.Fatalf("unexpected byte %q in % x", b[0], b)
		}
	}
	return acks, offs
}

func historyConfig(loops, messages int) Config {
	cfg := testConfig(loops, 1<<30)
	cfg.Encode = offsetEncode
	cfg.History = HistoryConfig{Messages: messages, TTL: time.Minute, MaxBytes: 1 << 30}
	return cfg
}

// framedMember subscribes a new member to room (Framed) and makes its
// acknowledgement an "A" queued like the server's.
func framedMember(l *Loop, room string, resume *Resume) *fakeConn {
	c := &fakeConn{}
	c.m.Init(l, c)
	c.onJoin = func(_ *Sub, res JoinResult) {
		if res.Err == nil {
			c.m.Send([]byte("A"))
		}
	}
	if _, err := c.m.Subscribe([]byte(room), Framed, resume, 0); err != nil {
		panic(err)
	}
	return c
}

func wantOffsets(t *testing.T, got []uint64, from, to uint64) {
	t.Helper()
	if len(got) != int(to-from+1) {
		t.Fatalf("offsets %v, want %d to %d", got, from, to)
	}
	for i, o := range got {
		if o != from+uint64(i) {
			t.Fatalf("offsets %v, want %d to %d", got, from, to)
		}
	}
}

// A resume replays what history holds after the client's offset, after
// the acknowledgement and before live messages; the room outlives its
// members while it has history.
func TestResumeReplaysThenLive(t *testing.T) {
	e := New(historyConfig(1, 100))
	cl := &cycleLoop{}
	l := e.AddLoop(cl)
	first := framedMember(l, "r", nil)
	r := first.m.Room()
	for i := range 5 {
		publish(l, r, fmt.Sprint(i))
	}
	cl.endCycle()
	if acks, offs := offsets(t, first.take()); acks != 1 {
		t.Fatalf("%d acknowledgements", acks)
	} else {
		wantOffsets(t, offs, 1, 5)
	}
	first.m.Release() // the gateway drops the connection
	publish(l, r, "missed-6")
	publish(l, r, "missed-7")
	cl.endCycle()
	if e.RoomCount() != 1 {
		t.Fatal("room with history forgotten when its last member left")
	}

	again := framedMember(l, "r", &Resume{Epoch: r.Epoch(), Offset: 5})
	publish(l, r, "live-8")
	cl.endCycle()
	res := again.joins[0]
	if !res.Recovered() || res.Offset != 7 || res.Replayed != 2 || res.Epoch != r.Epoch() {
		t.Fatalf("join result %+v", res)
	}
	acks, offs := offsets(t, again.take())
	if acks != 1 {
		t.Fatalf("%d acknowledgements", acks)
	}
	wantOffsets(t, offs, 6, 8)
}

// Every way a resume cannot be exact is said, never silent.
func TestResumeRefusalsAndLosses(t *testing.T) {
	e := New(historyConfig(1, 3))
	cl := &cycleLoop{}
	l := e.AddLoop(cl)
	c := framedMember(l, "r", nil)
	r := c.m.Room()
	for i := range 10 {
		publish(l, r, fmt.Sprint(i))
	}
	cl.endCycle()
	c.take()

	for _, tc := range []struct {
		name   string
		epoch  uint64
		behind int // the resume's offset is the room's top minus behind
		why    NotRecovered
		err    error
		replay int // messages replayed: the last ones
	}{
		{"in history", r.Epoch(), 3, Recovered, nil, 3},
		{"up to date", r.Epoch(), 0, Recovered, nil, 0},
		{"history passed", r.Epoch(), 4, HistoryPassed, nil, 0},
		{"epoch changed", r.Epoch() + 1, 2, EpochChanged, nil, 0},
		{"offset ahead", r.Epoch(), -1, Recovered, ErrOffsetAhead, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := r.Top()
			m := framedMember(l, "r", &Resume{tc.epoch, uint64(int(top) - tc.behind)})
			cl.endCycle()
			res := m.joins[0]
			if res.Err != tc.err || res.Why != tc.why || !res.Resumed {
				t.Fatalf("result %+v, want why %d err %v", res, tc.why, tc.err)
			}
			acks, offs := offsets(t, m.take())
			if tc.replay > 0 {
				wantOffsets(t, offs, top-uint64(tc.replay)+1, top)
			} else if len(offs) != 0 {
				t.Fatalf("replayed %v, want nothing", offs)
			}
			if tc.err != nil {
				if acks != 0 || len(m.m.Subs()) != 0 || r.members.Load() != 1 {
					t.Fatalf("refused subscription kept: %d acks, %d subs, room counts %d", acks, len(m.m.Subs()), r.members.Load())
				}
				return
			}
			publish(l, r, "next")
			cl.endCycle()
			if _, offs := offsets(t, m.take()); len(offs) != 1 || offs[0] != r.Top() {
				t.Fatalf("live after the resume: %v, want [%d]", offs, r.Top())
			}
			c.take()
			m.m.Release()
		})
	}
}

// The seam between replay and live holds when the subscriber's loop is
// not the owner and messages are in flight between them: subscribers
// resuming at random moments from random offsets each see every offset
// after theirs exactly once, in order.
func TestResumeSeamAcrossLoops(t *testing.T) {
	const messages, subscribers = 3000, 200
	e := New(historyConfig(2, messages))
	g0, g1 := startGoLoop(), startGoLoop()
	defer g0.stop()
	defer g1.stop()
	l0, l1 := e.AddLoop(g0), e.AddLoop(g1)
	var r *Room
	g0.do(func() { r = framedMember(l0, "r", nil).m.Room() }) // owner: loop 0

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range messages {
			_ = g0.Execute(context.Background(), taskFunc(func() { publish(l0, r, fmt.Sprint(i)) }))
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	var subs []*fakeConn
	var since []uint64
	rng := rand.New(rand.NewPCG(1, 2))
	for range subscribers {
		time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
		top := r.Top()
		s := top - min(top, uint64(rng.IntN(20)))
		g1.do(func() { subs = append(subs, framedMember(l1, "r", &Resume{Epoch: r.Epoch(), Offset: s})) })
		since = append(since, s)
	}
	<-done
	// Wait until the owner sequenced everything and loop 1 flushed it.
	for r.Top() != messages {
		time.Sleep(time.Millisecond)
	}
	g0.do(func() {})
	g1.do(func() {})
	g1.do(func() {
		for i, c := range subs {
			res := c.joins[0]
			if !res.Recovered() {
				t.Errorf("subscriber %d: not recovered: %+v", i, res)
				continue
			}
			acks, offs := offsets(t, c.take())
			if acks != 1 {
				t.Errorf("subscriber %d: %d acknowledgements", i, acks)
			}
			wantOffsets(t, offs, since[i]+1, messages)
		}
	})
}

// A publish with an id is acknowledged with its offset on the
// publisher's loop, whichever loop owns the room; Engine.Publish with a
// Wait channel gets the offset too.
func TestPublishAcknowledgements(t *testing.T) {
	e := New(historyConfig(2, 10))
	g0, g1 := startGoLoop(), startGoLoop()
	defer g0.stop()
	defer g1.stop()
	l0, l1 := e.AddLoop(g0), e.AddLoop(g1)
	var owner, remote *fakeConn
	g0.do(func() { owner = framedMember(l0, "r", nil) })
	g1.do(func() { remote = framedMember(l1, "r", nil) })
	r := owner.m.Room()
	g1.do(func() { l1.Publish(r, Publication{Op: 1, Payload: []byte("a")}, Ack{Member: &remote.m, ID: 7}) })
	g0.do(func() { l0.Publish(r, Publication{Op: 1, Payload: []byte("b")}, Ack{Member: &owner.m, ID: 8}) })
	wait := make(chan Answer, 1)
	if _, err := e.Publish("r", Publication{Op: 1, Payload: []byte("c")}, Ack{Wait: wait}); err != nil {
		t.Fatal(err)
	}
	if a := <-wait; a.Offset != 3 || a.Epoch != r.Epoch() || a.Room != "r" || a.Err != nil {
		t.Fatalf("Publish with Wait: %+v; want offset 3 in epoch %x", a, r.Epoch())
	}
	g1.do(func() {})
	var got []ack
	g1.do(func() { got = append(got, remote.acks...) })
	g0.do(func() { got = append(got, owner.acks...) })
	if fmt.Sprint(got) != "[{7 r 1} {8 r 2}]" {
		t.Fatalf("acknowledgements %v", got)
	}
	// With history on, publishing creates the room; without, it does not.
	if _, err := e.Publish("new", Publication{Op: 1}, Ack{Wait: wait}); err != nil {
		t.Fatal(err)
	}
	if a := <-wait; a.Offset != 1 || e.RoomCount() != 2 {
		t.Fatalf("publish to a new room: %+v, %d rooms", a, e.RoomCount())
	}
}

// History is bounded by count, by age and by bytes; an expired room
// without members is forgotten, and created again with another epoch.
func TestHistoryLimitsAndExpiry(t *testing.T) {
	cfg := historyConfig(1, 4)
	cfg.History.MaxBytes = 10 * (msgOverhead + 64) // bytebufferpool buffers are at least 64 B
	e := New(cfg)
	cl := &cycleLoop{}
	l := e.AddLoop(cl)
	c := framedMember(l, "r", nil)
	r := c.m.Room()
	for i := range 6 {
		publish(l, r, fmt.Sprint(i))
	}
	if r.hist.n != 4 || r.hist.at(0).offset != 3 {
		t.Fatalf("count limit: %d kept from %d", r.hist.n, r.hist.at(0).offset)
	}
	big := make([]byte, 20*(msgOverhead+64))
	l.Publish(r, Publication{Op: 2, Payload: big}, Ack{})
	if l.histBytes > cfg.History.MaxBytes || r.hist.n != 0 {
		t.Fatalf("byte limit: %d bytes in %d messages", l.histBytes, r.hist.n)
	}
	publish(l, r, "last")
	cl.endCycle()
	c.m.Release()
	epoch := r.Epoch()

	l.now += int64(cfg.History.TTL) - 1
	l.expire()
	if e.RoomCount() != 1 || r.hist.n != 1 {
		t.Fatal("history expired early")
	}
	l.now += 2
	l.expire()
	if e.RoomCount() != 0 || l.histBytes != 0 || len(l.owned) != 0 {
		t.Fatalf("expired room kept: %d rooms, %d bytes, %d owned", e.RoomCount(), l.histBytes, len(l.owned))
	}
	d := framedMember(l, "r", &Resume{Epoch: epoch, Offset: 8})
	cl.endCycle()
	if res := d.joins[0]; res.Why != EpochChanged || d.m.Room().Epoch() == epoch || res.Offset != 0 {
		t.Fatalf("after expiry: %+v", res)
	}
}

// A subscription that ends before the owner's answer comes is forgotten
// cleanly, and the answer is dropped.
func TestSubscriptionEndsWhilePending(t *testing.T) {
	e := New(historyConfig(2, 10))
	c0, c1 := &cycleLoop{}, &cycleLoop{}
	l0, l1 := e.AddLoop(c0), e.AddLoop(c1)
	owner := framedMember(l0, "r", nil)
	r := owner.m.Room()
	publish(l0, r, "x")
	pending := framedMember(l1, "r", &Resume{Epoch: r.Epoch(), Offset: 0})
	var mu sync.Mutex
	mu.Lock()
	pending.m.Release()
	mu.Unlock()
	c0.endCycle() // the owner answers
	c1.endCycle() // the answer arrives for a released member
	if len(pending.joins) != 0 || r.members.Load() != 1 || r.shards[1].live.Load() != 0 {
		t.Fatalf("pending subscription left traces: %d answers, %d members, live %d", len(pending.joins), r.members.Load(), r.shards[1].live.Load())
	}
}

// Replays to compressing subscriptions encode (compress) each message
// once, however many subscriptions resume: a reconnect storm costs one
// compression per replayed message, not one per member.
func TestCompressedReplayEncodedOnce(t *testing.T) {
	cfg := historyConfig(1, 100)
	var compressedEncodes int
	cfg.Encode = func(dst []byte, k Kind, r *Room, m Message) []byte {
		if k == Framed|Compressed {
			compressedEncodes++
		}
		return offsetEncode(dst, k&^Compressed, r, m)
	}
	e := New(cfg)
	cl := &cycleLoop{}
	l := e.AddLoop(cl)
	first := framedMember(l, "r", nil)
	r := first.m.Room()
	for i := range 10 {
		publish(l, r, fmt.Sprint(i))
	}
	cl.endCycle()
	for range 5 {
		c := &fakeConn{}
		c.m.Init(l, c)
		if _, err := c.m.Subscribe([]byte("r"), Framed|Compressed, &Resume{Epoch: r.Epoch(), Offset: 0}, 0); err != nil {
			t.Fatal(err)
		}
		cl.endCycle()
		if _, offs := offsets(t, c.take()); len(offs) != 10 {
			t.Fatalf("replayed %v", offs)
		}
	}
	if compressedEncodes != 10 {
		t.Fatalf("%d compressed encodings for 10 messages replayed to 5 subscriptions, want 10", compressedEncodes)
	}
}
