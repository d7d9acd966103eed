package server

import (
	"bytes"
	"context"
	"testing"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/loopcast/loopcast/server/internal/fanout"
)

// fakeGnetConn stands in for gnet's connection: the socket is one end of
// a real socketpair (the raw write path writes to it), and what goes
// through gnet's Write is recorded as queued output, as gnet queues what
// the socket does not take.
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

// fakeEventLoop records the connections the loop closes and the tasks
// handed to it (run by runTasks, the end of a poll cycle).
type fakeEventLoop struct {
	gnet.EventLoop // nil: only the methods below are called
	closed         []gnet.Conn
	tasks          []gnet.Runnable
}

func (f *fakeEventLoop) Close(c gnet.Conn) error {
	f.closed = append(f.closed, c)
	return nil
}

func (f *fakeEventLoop) Execute(_ context.Context, r gnet.Runnable) error {
	f.tasks = append(f.tasks, r)
	return nil
}

// testLoop is a loop of a Server that is never started, on el.
func testLoop(t *testing.T, cfg Config, el *fakeEventLoop) *eventLoop {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return newLoop(s, 0, el)
}

// testConn is a connection on l whose socket is one end of a socketpair;
// the other end is returned for the test to read or write.
func testConn(t *testing.T, l *eventLoop, state connState) (*conn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	cs := &conn{gc: &fakeGnetConn{}, fd: fds[0], loop: l, state: state, wslot: -1}
	cs.member.Init(l.engine, cs)
	return cs, fds[1]
}

// A handshake deadline that finds the request waiting unread in the
// socket (the loop was busy) looks again each tick for up to closeGrace
// (behindTicks, whatever the handshake timeout);
// without unread bytes, or once closeGrace has passed, the connection is
// closed as a handshake timeout.
func TestHandshakeDeadlineGraceForUnreadRequest(t *testing.T) {
	for _, tc := range []struct {
		name       string
		unread     bool
		wantClosed []bool // after each expiry, one tick apart
	}{
		{"nothing unread", false, []bool{true}},
		{"request unread", true, []bool{false, false, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			el := &fakeEventLoop{}
			cfg := DefaultConfig()
			l := testLoop(t, cfg, el)
			l.handshakeTicks, l.behindTicks, l.now, l.wheel.cur = 10, 3, 100, 100
			cs, peer := testConn(t, l, stateHTTP)
			cs.since = 90
			if tc.unread {
				if _, err := unix.Write(peer, []byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
					t.Fatal(err)
				}
			}
			for i, want := range tc.wantClosed {
				l.expire(cs)
				if closed := len(el.closed) > 0; closed != want {
					t.Fatalf("expiry %d: closed %v, want %v", i+1, closed, want)
				}
				if want {
					if cs.reason != closeHandshakeTimeout {
						t.Fatalf("closed with reason %d, want handshake timeout", cs.reason)
					}
					return
				}
				if cs.wslot < 0 || cs.deadline != l.now+1 {
					t.Fatalf("grace: deadline %d (armed %v), want the next tick %d", cs.deadline, cs.wslot >= 0, l.now+1)
				}
				l.now++
				l.wheel.cur = l.now
			}
		})
	}
}

// A ping due on a connection whose unsent bytes would pass MaxPending is
// not skipped: the slow-consumer rule closes the connection with 1013,
// like any other outbound bytes, and the ping is not queued. Below the
// limit the ping is queued behind the backlog.
func TestPingOverMaxPendingClosesSlowConsumer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		backlog   int
		wantQueue []byte
		wantState connState
	}{
		{"fits behind the backlog", 1000 - len(pingFrame), pingFrame, stateOpen},
		{"over max-pending", 1000 - len(pingFrame) + 1, closeFrames[closeSlowConsumer], stateClosing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.MaxPending = 1000
			l := testLoop(t, cfg, &fakeEventLoop{})
			cs, _ := testConn(t, l, stateOpen)
			gc := cs.gc.(*fakeGnetConn)
			gc.backlog = tc.backlog
			cs.handed = true // the backlog came through cs.Write, as all output does
			cs.seen, cs.nextPing = l.now, l.now
			l.expire(cs)
			if !bytes.Equal(gc.queued, tc.wantQueue) {
				t.Fatalf("queued %q, want %q", gc.queued, tc.wantQueue)
			}
			if cs.state != tc.wantState {
				t.Fatalf("state %d, want %d", cs.state, tc.wantState)
			}
			if tc.wantState == stateClosing && cs.reason != closeSlowConsumer {
				t.Fatalf("reason %s, want slow_consumer", cs.reason)
			}
		})
	}
}

var _ fanout.Conn = (*conn)(nil)
