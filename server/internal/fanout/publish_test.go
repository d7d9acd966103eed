package fanout

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// TestBugHistoryBudgetStolenByTinyMessages is the regression test for
// the history budget attack: pooled buffers grown by large messages were
// charged at their capacity to the tiny messages reusing them (a 2-byte
// message cost about 1 MB of history-max-bytes), and the loop's share was
// paid by whichever room happened to publish, so an attacker who
// published a few large, then many tiny messages wiped every other
// room's history. Now a message costs what it holds, and the room holding
// the most bytes pays.
func TestBugHistoryBudgetStolenByTinyMessages(t *testing.T) {
	cfg := historyConfig(1, 1000)
	cfg.History.MaxBytes = 1 << 20
	e := New(cfg)
	cl := &cycleLoop{}
	l := e.AddLoop(cl)
	victim := framedMember(l, "victim", nil)
	attacker := framedMember(l, "attacker", nil)
	cl.endCycle()
	vr, ar := victim.m.Room(), attacker.m.Room()
	for i := range 500 {
		publish(l, vr, fmt.Sprint("v", i))
	}
	for range 4 { // large messages grow pooled buffers
		l.Publish(ar, Publication{Op: 2, Payload: make([]byte, 256<<10)}, Ack{})
	}
	for range 5000 {
		publish(l, ar, "x")
	}
	cl.endCycle()
	if vr.hist.n != 500 {
		t.Fatalf("the victim room kept %d of its 500 messages", vr.hist.n)
	}
	for i := range ar.hist.n {
		if m := ar.hist.at(i); len(m.buf.B) == 2 && m.size() > 2*2+maxSlackBytes+msgOverhead {
			t.Fatalf("a 2-byte message is charged %d bytes", m.size())
		}
	}
	if l.histBytes > cfg.History.MaxBytes {
		t.Fatalf("history holds %d bytes, over the budget %d", l.histBytes, cfg.History.MaxBytes)
	}
}

// Under the byte budget the room holding the most pays, whoever
// publishes: a small room's append does not cost a small room. (Sizes
// are chosen so that the big room stays the largest whatever buffers the
// pool hands out.)
func TestHistoryBudgetLargestRoomPays(t *testing.T) {
	cfg := historyConfig(1, 1000)
	big := make([]byte, 2000)
	cfg.History.MaxBytes = 20 * (2000 + msgOverhead)
	e := New(cfg)
	cl := &cycleLoop{}
	l := e.AddLoop(cl)
	br := framedMember(l, "big", nil).m.Room()
	sr := framedMember(l, "small", nil).m.Room()
	for range 35 {
		l.Publish(br, Publication{Op: 2, Payload: big}, Ack{})
	}
	for range 15 { // over the budget: big loses its oldest each time
		publish(l, sr, "0123456789abcdef")
	}
	if sr.hist.n != 15 || br.hist.n >= 35 || l.histBytes > cfg.History.MaxBytes {
		t.Fatalf("small kept %d of 15, big %d of 35, %d bytes of %d", sr.hist.n, br.hist.n, l.histBytes, cfg.History.MaxBytes)
	}
	if first := br.hist.at(0).offset; first <= 1 {
		t.Fatalf("big kept its oldest message (%d): the newest should stay", first)
	}
}

// A publication's key is remembered: a retry is answered with the first
// one's offset, marked a duplicate, and reaches nobody again; a room
// that started a new epoch forgot its keys; keys are forgotten after
// DedupeWindow.
func TestPublicationKeys(t *testing.T) {
	e := New(historyConfig(1, 100))
	cl := &cycleLoop{}
	l := e.AddLoop(cl)
	sub := framedMember(l, "r", nil)
	cl.endCycle()
	sub.take()
	r := sub.m.Room()
	pub := &fakeConn{}
	pub.m.Init(l, pub)
	send := func(key string, id uint32) {
		l.Publish(r, Publication{Op: 1, Payload: []byte(key), Key: key}, Ack{Member: &pub.m, ID: id})
		cl.endCycle()
	}
	send("k1", 1)
	send("k2", 2)
	send("k1", 3) // a retry
	if fmt.Sprint(pub.acks) != "[{1 r 1} {2 r 2} {3 r 1}]" {
		t.Fatalf("answers %v", pub.acks)
	}
	if _, offs := offsets(t, sub.take()); fmt.Sprint(offs) != "[1 2]" {
		t.Fatalf("delivered %v, want the retry once only", offs)
	}
	e.Renew("r")
	cl.endCycle()
	send("k1", 4) // the room's offsets started again: so did its keys
	if a := pub.acks[3]; a.offset != 1 {
		t.Fatalf("after the room's new epoch: %+v", a)
	}
	l.now += int64(DedupeWindow) + 1
	send("k2", 5)
	if a := pub.acks[4]; a.offset != 2 || len(sub.take()) == 0 {
		t.Fatalf("after the window: %+v", a)
	}
}

// The key table is bounded: past maxDedupeKeys the oldest is forgotten,
// and counted.
func TestPublicationKeysBounded(t *testing.T) {
	e := New(historyConfig(1, 10))
	cl := &cycleLoop{}
	l := e.AddLoop(cl)
	r := framedMember(l, "r", nil).m.Room()
	for i := range maxDedupeKeys + 10 {
		l.Publish(r, Publication{Op: 1, Key: fmt.Sprint(i)}, Ack{})
	}
	if n := e.Counters().DedupeEvicted; n != 10 || len(l.dedupe.seen) != maxDedupeKeys {
		t.Fatalf("evicted %d, remembered %d", n, len(l.dedupe.seen))
	}
}

// TestBugStalePositionsAfterLogRestart is the regression test for a
// memory stream recreated after a NATS restart: the rooms kept the old
// stream's offsets, so a plain sub answered the old offset (7645) and
// then delivered offsets 4, 5, 6 below it. Restart switches every room
// of every loop to the new epoch before its first message.
func TestBugStalePositionsAfterLogRestart(t *testing.T) {
	log := &externalLog{}
	log.epoch.Store(7)
	cfg := externalConfig(log, 100)
	cfg.Loops = 2
	e := New(cfg)
	cl0, cl1 := &cycleLoop{}, &cycleLoop{}
	l0, l1 := e.AddLoop(cl0), e.AddLoop(cl1)
	live := framedMember(l1, "r", nil)
	cycle := func() { cl0.endCycle(); cl1.endCycle(); cl0.endCycle(); cl1.endCycle() }
	cycle()
	for off := uint64(7640); off <= 7645; off++ {
		log.deliver(t, e, "r", off)
		log.deliver(t, e, "other", off+10000)
	}
	cycle()
	live.take()
	waiting := framedMember(l0, "r", &Resume{Epoch: 7, Offset: 99999}) // ahead of the log: waits
	cycle()

	log.epoch.Store(8)
	log.covered.Store(0)
	e.Restart(8, 0)
	_, _ = e.PublishAt("r", 1, []byte("stale"), 7, 7646) // the old consumer's last message, late: dropped
	log.deliver(t, e, "r", 4)
	cycle()
	if len(waiting.joins) != 1 || waiting.joins[0].Why != EpochChanged || waiting.joins[0].Epoch != 8 {
		t.Fatalf("the waiting resume of the old epoch: %+v", waiting.joins)
	}
	plain := framedMember(l0, "r", nil)
	cycle()
	if res := plain.joins[0]; res.Epoch != 8 || res.Offset != 4 {
		t.Fatalf("plain sub after the restart: epoch %d offset %d, want epoch 8 offset 4", res.Epoch, res.Offset)
	}
	if _, offs := offsets(t, live.take()); fmt.Sprint(offs) != "[4]" {
		t.Fatalf("live after the restart: %v", offs)
	}
	for _, r := range []string{"r", "other"} {
		var info RoomInfo
		e.EachRoom(func(ri RoomInfo) {
			if ri.Name == r {
				info = ri
			}
		})
		if info.Epoch != 8 || (r == "other" && (info.Offset != 0 || info.History != 0)) {
			t.Fatalf("room %s after the restart: %+v", r, info)
		}
	}
}

// Renew starts a room's new epoch here: offsets from 1, history gone, the
// live subscriber's next message carries the new epoch.
func TestRenew(t *testing.T) {
	e := New(historyConfig(2, 100))
	cl0, cl1 := &cycleLoop{}, &cycleLoop{}
	l0, l1 := e.AddLoop(cl0), e.AddLoop(cl1)
	owner := framedMember(l0, "r", nil)
	remote := framedMember(l1, "r", nil)
	cycle := func() { cl0.endCycle(); cl1.endCycle(); cl0.endCycle(); cl1.endCycle() }
	cycle()
	r := owner.m.Room()
	old := r.Epoch()
	publish(l0, r, "a")
	cycle()
	e.Renew("r")
	publish(l1, r, "b") // from the other loop: after the renewal
	cycle()
	if r.Epoch() == old || r.Top() != 1 || r.hist.n != 1 {
		t.Fatalf("after Renew: epoch %x (was %x), top %d, %d kept", r.Epoch(), old, r.Top(), r.hist.n)
	}
	if _, offs := offsets(t, remote.take()); fmt.Sprint(offs) != "[1 1]" {
		t.Fatalf("remote got %v", offs)
	}
}

// A small message does not keep a large pooled buffer.
func TestSharedMessageRightSized(t *testing.T) {
	big := newSharedMsg(1, make([]byte, 1<<20))
	big.release()
	for range 10 {
		f := newSharedMsg(1, []byte("hi"))
		if c := cap(f.buf.B); c > 2*2+maxSlackBytes {
			t.Fatalf("a 2-byte message holds a %d-byte buffer", c)
		}
		if !bytes.Equal(f.buf.B, []byte("hi")) {
			t.Fatalf("payload %q", f.buf.B)
		}
		f.release()
	}
}

// Rooms the external log's messages create count apart for MaxRooms: a
// publisher filling the log with new rooms cannot use up the rooms
// members need.
func TestLogRoomsCountApart(t *testing.T) {
	log := &externalLog{}
	log.epoch.Store(1)
	cfg := externalConfig(log, 10)
	cfg.MaxRooms = 2
	e := New(cfg)
	cl := &cycleLoop{}
	l := e.AddLoop(cl)
	for i, room := range []string{"a", "b", "c"} {
		_, err := e.PublishAt(room, 1, nil, 1, uint64(i+1))
		if (i < 2) != (err == nil) {
			t.Fatalf("log room %s: %v", room, err)
		}
	}
	for _, room := range []string{"x", "y"} {
		c := &fakeConn{}
		c.m.Init(l, c)
		if _, err := c.m.Subscribe([]byte(room), Framed, nil, 0); err != nil {
			t.Fatalf("member room %s: %v", room, err)
		}
	}
	c := &fakeConn{}
	c.m.Init(l, c)
	if _, err := c.m.Subscribe([]byte("z"), Framed, nil, 0); err != ErrTooManyRooms {
		t.Fatalf("a third member room: %v", err)
	}
	if _, err := c.m.Subscribe([]byte("a"), Framed, nil, 0); err != nil {
		t.Fatalf("joining a log room: %v", err)
	}
}

// Replays count the messages a resuming member was actually given: one
// closed as a slow consumer in the middle of its replay counts only the
// frames queued before (they counted all of them, queued or not).
func TestBugReplayedCountsOnlyWhatWasQueued(t *testing.T) {
	cfg := historyConfig(1, 100)
	cfg.MaxPending = 100
	cfg.CorkLimit = 40 // each replayed frame (27 bytes) past the first is written at once
	e := New(cfg)
	cl := &cycleLoop{}
	l := e.AddLoop(cl)
	r := framedMember(l, "r", nil).m.Room()
	cl.endCycle()
	epoch := r.Epoch()
	for range 10 {
		publish(l, r, "0123456789abcdef")
	}
	cl.endCycle()
	slow := &fakeConn{}
	slow.m.Init(l, slow)
	slow.onWrite = func() { // after the acknowledgement and the first replayed frames, the socket takes nothing more
		if slow.writes > 1 {
			slow.backlog = cfg.MaxPending
		}
	}
	slow.onJoin = func(_ *Sub, res JoinResult) {
		slow.joins = slow.joins[:0]
		slow.joins = append(slow.joins, res)
		slow.m.Send([]byte("A"))
	}
	if _, err := slow.m.Subscribe([]byte("r"), Framed, &Resume{Epoch: epoch, Offset: 0}, 0); err != nil {
		t.Fatal(err)
	}
	cl.endCycle()
	if slow.overflows != 1 || len(slow.joins) != 1 || slow.joins[0].Replayed != 10 {
		t.Fatalf("overflows %d, joins %+v", slow.overflows, slow.joins)
	}
	if n := e.Counters().Replayed; n >= 10 || n == 0 {
		t.Fatalf("replayed %d: want the frames queued before the close only", n)
	}
}

// TestBugSubscribeBeforeTheLogsEpoch: a sub on an instance that has not
// reached the log yet was answered in epoch 0 (and a resume was told
// its epoch changed); then the log's messages came in the real epoch.
// Now joins wait for the log's epoch (Restart), at most MaxWait, then
// are refused.
func TestBugSubscribeBeforeTheLogsEpoch(t *testing.T) {
	log := &externalLog{} // epoch 0: not reached yet
	e := New(externalConfig(log, 10))
	cl := &cycleLoop{}
	l := e.AddLoop(cl)
	plain := framedMember(l, "r", nil)
	resume := framedMember(l, "r", &Resume{Epoch: 9, Offset: 0})
	cl.endCycle()
	if len(plain.joins)+len(resume.joins) != 0 {
		t.Fatalf("answered before the log's epoch was known: %+v %+v", plain.joins, resume.joins)
	}
	log.epoch.Store(9)
	e.Restart(9, 0)
	cl.endCycle()
	if len(plain.joins) != 1 || plain.joins[0].Epoch != 9 || plain.joins[0].Err != nil {
		t.Fatalf("plain sub after the epoch came: %+v", plain.joins)
	}
	if len(resume.joins) != 1 || !resume.joins[0].Recovered() || resume.joins[0].Epoch != 9 {
		t.Fatalf("resume in the log's epoch: %+v, want recovered", resume.joins)
	}

	never := New(externalConfig(&externalLog{}, 10))
	cl2 := &cycleLoop{}
	l2 := never.AddLoop(cl2)
	m := framedMember(l2, "r", nil)
	cl2.endCycle()
	l2.now += int64(2 * time.Second)
	l2.retryWaiting()
	cl2.endCycle()
	if len(m.joins) != 1 || m.joins[0].Err != ErrNotReady || len(m.m.Subs()) != 0 {
		t.Fatalf("never reached: %+v", m.joins)
	}
}
