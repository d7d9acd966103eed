package server

import (
	"bytes"
	"testing"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/loopcast/loopcast/server/frame"
)

// fakeGnetConn stands in for gnet's connection in the batch tests: the
// member's socket is one end of a real socketpair (the raw write path
// writes to it), and what goes through gnet's Write is recorded as
// queued output, as gnet queues what the socket does not take.
type fakeGnetConn struct {
	gnet.Conn // nil: the tests call only the methods below
	queued    []byte
	backlog   int // extra unsent bytes to report (a slow reader)
}

func (f *fakeGnetConn) OutboundBuffered() int { return len(f.queued) + f.backlog }

func (f *fakeGnetConn) Write(b []byte) (int, error) {
	f.queued = append(f.queued, b...)
	return len(b), nil
}

// batchMember is a room member on a test loop and the peer end of its
// socket.
type batchMember struct {
	cs   *conn
	gc   *fakeGnetConn
	peer int
}

func newBatchLoop(t *testing.T, maxPending int) *loop {
	t.Helper()
	s := &Server{cfg: Config{MaxPending: maxPending}, nloops: 1}
	s.rooms = rooms{m: map[string]*room{}, nloops: 1}
	l := &loop{idx: 0, srv: s, closeGraceTicks: 1}
	s.loops.Store(&[]*loop{l})
	return l
}

func newBatchMember(t *testing.T, l *loop, room string) *batchMember {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	gc := &fakeGnetConn{}
	cs := &conn{gc: gc, fd: fds[0], loop: l, state: stateOpen, wslot: -1}
	l.srv.rooms.join(cs, []byte(room))
	return &batchMember{cs: cs, gc: gc, peer: fds[1]}
}

// received is everything the member's peer can read now, followed by
// what gnet queued (the tests never leave both non-empty).
func (m *batchMember) received(t *testing.T) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 1<<20)
	for {
		n, err := unix.Read(m.peer, buf)
		if n <= 0 || err != nil {
			break
		}
		out = append(out, buf[:n]...)
	}
	return append(out, m.gc.queued...)
}

func serverFrame(op ws.OpCode, payload string) []byte {
	return append(frame.AppendHeader(nil, true, op, len(payload)), payload...)
}

func deliverText(l *loop, r *room, payload string) {
	f := newSharedFrame(ws.OpText, []byte(payload))
	l.deliver(r, f)
	f.release()
}

// Within one loop turn, each member gets exactly the room frames
// delivered while it was a member, in order, and what it writes itself
// (a pong, a close frame) lands after the room frames delivered before.
func TestBatchGivesEachMemberItsPartInOrder(t *testing.T) {
	l := newBatchLoop(t, 1<<20)
	a := newBatchMember(t, l, "r")
	b := newBatchMember(t, l, "r")
	r := a.cs.room

	deliverText(l, r, "one")
	late := newBatchMember(t, l, "r") // joins mid-turn
	pong := serverFrame(ws.OpPong, "p")
	a.cs.write(pong)
	deliverText(l, r, "two")
	b.cs.closeWith(closeGoingAway)
	deliverText(l, r, "three")

	for _, m := range []*batchMember{a, b, late} {
		if got := m.received(t); len(got) != 0 {
			t.Fatalf("bytes written before the end of the turn: %q", got)
		}
	}
	l.flush()

	one, two, three := serverFrame(ws.OpText, "one"), serverFrame(ws.OpText, "two"), serverFrame(ws.OpText, "three")
	want := map[string][]byte{
		"a (pong mid-turn)":   concatBytes(one, pong, two, three),
		"b (closed mid-turn)": concatBytes(one, two, closeFrames[closeGoingAway]),
		"late (joined)":       concatBytes(two, three),
	}
	got := map[string][]byte{"a (pong mid-turn)": a.received(t), "b (closed mid-turn)": b.received(t), "late (joined)": late.received(t)}
	for k := range want {
		if !bytes.Equal(got[k], want[k]) {
			t.Errorf("member %s got\n%q\nwant\n%q", k, got[k], want[k])
		}
	}
	// a: 3 frames; b: 2 before it left; late: 2.
	if d := l.stats.deliveries.Load(); d != 7 {
		t.Errorf("deliveries = %d, want 7", d)
	}
	if len(l.batched) != 0 || r.shards[0].batch != nil {
		t.Error("batch still held after the flush")
	}

	// The next turn starts afresh for every member.
	deliverText(l, r, "four")
	l.flush()
	four := serverFrame(ws.OpText, "four")
	for name, m := range map[string]*batchMember{"a": a, "late": late} {
		if got := m.received(t); !bytes.Equal(got, four) {
			t.Errorf("member %s next turn got %q, want %q", name, got, four)
		}
	}
	if got := b.received(t); len(got) != 0 {
		t.Errorf("closed member got %q after leaving", got)
	}
}

// A member whose unsent bytes would pass MaxPending is closed with 1013
// at the flush and gets none of the batch; a member with a small backlog
// gets the batch queued behind it.
func TestBatchClosesSlowConsumerAtFlush(t *testing.T) {
	l := newBatchLoop(t, 1000)
	fast := newBatchMember(t, l, "r")
	behind := newBatchMember(t, l, "r")
	slow := newBatchMember(t, l, "r")
	behind.gc.backlog = 500 // 500 + the batch fits in 1000
	slow.gc.backlog = 990   // 990 + the batch does not
	r := fast.cs.room

	deliverText(l, r, "0123456789")
	deliverText(l, r, "abcdefghij")
	l.flush()

	batch := concatBytes(serverFrame(ws.OpText, "0123456789"), serverFrame(ws.OpText, "abcdefghij"))
	if got := fast.received(t); !bytes.Equal(got, batch) {
		t.Errorf("fast member got %q, want %q", got, batch)
	}
	if got := behind.gc.queued; !bytes.Equal(got, batch) {
		t.Errorf("member with a backlog: gnet queued %q, want the batch %q", got, batch)
	}
	if got := slow.gc.queued; !bytes.Equal(got, closeFrames[closeSlowConsumer]) {
		t.Errorf("slow member: gnet queued %q, want only the 1013 close frame", got)
	}
	if slow.cs.state != stateClosing || slow.cs.room != nil || slow.cs.reason != closeSlowConsumer {
		t.Errorf("slow member: state %d, room %v, reason %d; want closing, out of the room, slow consumer",
			slow.cs.state, slow.cs.room, slow.cs.reason)
	}
	if n := r.shards[0].live.Load(); n != 2 {
		t.Errorf("%d live members after the slow one was closed, want 2", n)
	}
	if d := l.stats.deliveries.Load(); d != 4 {
		t.Errorf("deliveries = %d, want 4 (two frames to two members)", d)
	}
}

// A batch reaching corkLimit is written at once, before the end of the
// turn, so a burst does not hold more than corkLimit per room shard.
func TestBatchWritesAtCorkLimit(t *testing.T) {
	l := newBatchLoop(t, 1<<20)
	m := newBatchMember(t, l, "r")
	r := m.cs.room
	payload := string(bytes.Repeat([]byte{'x'}, 1000))
	var want []byte
	for len(want) < corkLimit {
		deliverText(l, r, payload)
		want = append(want, serverFrame(ws.OpText, payload)...)
	}
	if got := m.received(t); !bytes.Equal(got, want) {
		t.Fatalf("before the end of the turn: got %d bytes, want the %d bytes past corkLimit", len(got), len(want))
	}
	deliverText(l, r, "tail")
	l.flush()
	if got := m.received(t); !bytes.Equal(got, serverFrame(ws.OpText, "tail")) {
		t.Fatalf("after the flush: got %q", got)
	}
}

func concatBytes(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// The loop's free list of cork and batch buffers keeps what recent turns
// used, gives back each tick what no turn needed since the last one, and
// never holds more than maxCorkFreeBytes.
func TestCorkFreeListTrimsAndBounds(t *testing.T) {
	l := &loop{}
	take := func(n, size int) []*bytebufferpool.ByteBuffer {
		var bs []*bytebufferpool.ByteBuffer
		for range n {
			b := l.getCork()
			b.B = append(b.B[:0], make([]byte, size)...)
			bs = append(bs, b)
		}
		return bs
	}
	give := func(bs []*bytebufferpool.ByteBuffer) {
		for _, b := range bs {
			l.putCork(b)
		}
	}
	check := func(step string, n int) {
		t.Helper()
		held := 0
		for _, b := range l.corkFree {
			held += cap(b.B)
		}
		if len(l.corkFree) != n || l.corkFreeBytes != held {
			t.Fatalf("%s: %d free buffers (%d bytes counted, %d held), want %d", step, len(l.corkFree), l.corkFreeBytes, held, n)
		}
	}
	give(take(100, 1000)) // a burst
	l.trimCorks()         // the burst emptied the list: all were needed
	check("after the burst's tick", 100)
	for range 5 { // steady turns of 3 buffers
		give(take(3, 1000))
	}
	l.trimCorks()
	check("after a tick of steady turns", 3)
	l.trimCorks()
	check("after an idle tick", 0)

	big := take(maxCorkFreeBytes/(32<<10)+10, 32<<10)
	give(big)
	if l.corkFreeBytes > maxCorkFreeBytes {
		t.Fatalf("free list holds %d bytes, over %d", l.corkFreeBytes, maxCorkFreeBytes)
	}
	if len(l.corkFree) >= len(big) {
		t.Fatalf("free list kept all %d buffers of 32 KiB", len(big))
	}
	give(take(1, 3*corkLimit)) // oversized: never kept
	for _, b := range l.corkFree {
		if cap(b.B) > 2*corkLimit {
			t.Fatalf("kept an oversized buffer of %d bytes", cap(b.B))
		}
	}
}
