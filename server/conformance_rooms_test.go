package server_test

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---------------------------------------------------------------------
// Rooms and publishing policy

func TestConformanceRoomFanout(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	const members, perMember = 3, 20
	cs := make([]*rawClient, members)
	for i := range cs {
		cs[i] = dialWS(t, srv.Addr(), "/ws/fanout")
	}
	waitFor(t, ioTimeout, "members joined", func() bool { return srv.Stats().WebSockets == members })

	// Every member publishes concurrently; text and binary, some
	// fragmented, some in one write.
	var wg sync.WaitGroup
	errs := make(chan error, members)
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perMember {
				p := []byte(fmt.Sprintf("m%d-%03d", i, j))
				var b []byte
				switch j % 3 {
				case 0:
					b = frameBytes(true, opText, p)
				case 1:
					b = frameBytes(true, opBinary, p)
				default:
					b = concat(fragmentsOf(opText, p, 2)...)
				}
				_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
				if _, err := c.conn.Write(b); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Each member receives every message exactly once, whole, with its
	// opcode; every member sees the same order, and each sender's
	// messages in the order sent.
	var first []string
	for i, c := range cs {
		var got []string
		next := make([]int, members)
		for range members * perMember {
			f := c.mustFrame()
			var from, seq int
			if _, err := fmt.Sscanf(string(f.payload), "m%d-%d", &from, &seq); err != nil || !f.fin {
				t.Fatalf("member %d: unexpected %v", i, f)
			}
			wantOp := opText
			if seq%3 == 1 {
				wantOp = opBinary
			}
			if f.op != wantOp || seq != next[from] {
				t.Fatalf("member %d: got %v, want op %#x seq %d from %d", i, f, wantOp, next[from], from)
			}
			next[from]++
			got = append(got, string(f.payload))
		}
		if i == 0 {
			first = got
		} else if strings.Join(got, ",") != strings.Join(first, ",") {
			t.Fatalf("member %d saw a different order than member 0:\n%v\n%v", i, got, first)
		}
	}
	for _, c := range cs {
		c.closeHandshake()
	}
	// The room keeps its history (for resumes) without members.
	waitFor(t, ioTimeout, "room without members", func() bool {
		rooms := srv.Rooms()
		return len(rooms) == 1 && rooms[0].Members == 0 && rooms[0].History > 0
	})
}

func TestConformanceRoomsAreSeparate(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	a := dialWS(t, srv.Addr(), "/ws/a")
	b := dialWS(t, srv.Addr(), "/ws/b")
	d := dialWS(t, srv.Addr(), "/ws") // room "default"
	waitFor(t, ioTimeout, "members joined", func() bool { return srv.Stats().Rooms == 3 })
	a.send(true, opText, []byte("to a"))
	a.expectFrame(opText, []byte("to a"))
	d.send(true, opText, []byte("to default"))
	d.expectFrame(opText, []byte("to default"))
	// b got nothing: its first frame is the pong to its own ping.
	b.send(true, opPing, []byte("b"))
	b.expectFrame(opPong, []byte("b"))
	for _, c := range []*rawClient{a, b, d} {
		c.closeHandshake()
	}
}

func TestConformanceClientPublishDisabled(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.ClientPublish = false
	srv := startServer(t, cfg)
	runCases(t, srv.Addr(), "/ws/readonly", []wsCase{
		{name: "text", writes: ws1(txt("hello")), close: 1008},
		{name: "binary", writes: ws1(fr(true, opBinary, []byte{1})), close: 1008},
		{name: "fragment", writes: ws1(fr(false, opText, []byte("a"))), close: 1008},
		{name: "ping-still-answered", writes: ws1(fr(true, opPing, []byte("p")), txt("x")), want: []wsFrame{wantPong([]byte("p"))}, close: 1008},
		{name: "close-still-echoed", writes: ws1(fr(true, opClose, closePayload(1000, ""))), close: 1000},
	})
	// Echo is not publishing: it still works.
	c := dialWS(t, srv.Addr(), "/echo")
	c.expectEcho(opText, []byte("echo works"))
	c.closeHandshake()
	waitFor(t, ioTimeout, "policy closes counted", func() bool { return srv.Stats().Closes["policy"] == 4 })
}

// ---------------------------------------------------------------------
// Slow consumers

func TestConformanceSlowConsumer(t *testing.T) {
	cfg := testConfig()
	cfg.MaxPending = 64 << 10
	cfg.HandshakeTimeout = 500 * time.Millisecond // bounds the close grace period
	srv := startServer(t, cfg)
	addr := srv.Addr()

	// pub publishes and reads everything back; slow never reads and
	// has a small receive window so its backlog stays on the server.
	pub := dialWS(t, addr, "/ws/busy")
	slow := dialWS(t, addr, "/ws/busy", dialOpts{rcvBuf: 4096})
	waitFor(t, ioTimeout, "members joined", func() bool { return srv.Stats().WebSockets == 2 })

	const size, batch = 8 << 10, 8
	payload := func(seq int) []byte {
		p := binaryPayload(size)
		binary.BigEndian.PutUint32(p, uint32(seq))
		return p
	}
	seq := 0
	for srv.Stats().SlowConsumers == 0 {
		if seq > 64<<20/size {
			t.Fatalf("no slow consumer after %d messages (%d MiB)", seq, seq*size>>20)
		}
		var wire [][]byte
		for i := range batch {
			wire = append(wire, frameBytes(true, opBinary, payload(seq+i)))
		}
		pub.write(concat(wire...))
		for i := range batch {
			pub.expectFrame(opBinary, payload(seq+i))
		}
		seq += batch
		// The slow consumer is counted when its connection is gone,
		// after the close grace period; past a few MiB, pace the
		// publisher instead of pumping data through that period.
		if seq*size > 4<<20 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The reading member keeps getting every message after the slow
	// one was dropped.
	for i := range 4 {
		pub.send(true, opBinary, payload(seq+i))
		pub.expectFrame(opBinary, payload(seq+i))
	}
	seq += 4
	if got := srv.Stats().SlowConsumers; got != 1 {
		t.Fatalf("SlowConsumers = %d, want 1", got)
	}

	// The slow member got a gap-free prefix of the messages, then close
	// 1013 or the end of the connection: never a silent gap.
	next := 0
	sawClose := false
	for {
		f, err := slow.readFrame()
		if err != nil {
			if !isClosed(err) {
				t.Fatalf("slow consumer: %v", err)
			}
			break
		}
		if f.op == opClose {
			if f.closeCode() != 1013 {
				t.Fatalf("slow consumer closed with %d, want 1013", f.closeCode())
			}
			sawClose = true
			slow.expectEOF()
			break
		}
		if f.op != opBinary || len(f.payload) != size || int(binary.BigEndian.Uint32(f.payload)) != next {
			t.Fatalf("slow consumer: got %v, want message %d", f, next)
		}
		next++
	}
	if next >= seq {
		t.Fatalf("slow consumer received all %d messages; it should have been dropped", seq)
	}
	t.Logf("slow consumer: %d of %d messages then %s", next, seq, map[bool]string{true: "close 1013", false: "TCP close"}[sawClose])
	pub.closeHandshake()
}
