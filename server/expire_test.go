package server

import (
	"testing"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// fakeEventLoop records the connections the loop closes.
type fakeEventLoop struct {
	gnet.EventLoop // nil: only Close is called
	closed         []gnet.Conn
}

func (f *fakeEventLoop) Close(c gnet.Conn) error {
	f.closed = append(f.closed, c)
	return nil
}

// A handshake deadline that finds the request waiting unread in the
// socket (the loop was busy) waits one tick, once; without unread bytes,
// or the second time, the connection is closed as a handshake timeout.
func TestHandshakeDeadlineGraceForUnreadRequest(t *testing.T) {
	for _, tc := range []struct {
		name       string
		unread     bool
		wantClosed []bool // after each of two expiries
	}{
		{"nothing unread", false, []bool{true}},
		{"request unread", true, []bool{false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fds[0])
			defer unix.Close(fds[1])
			if tc.unread {
				if _, err := unix.Write(fds[1], []byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
					t.Fatal(err)
				}
			}
			el := &fakeEventLoop{}
			l := &loop{el: el, handshakeTicks: 10, now: 100}
			l.wheel.cur = 100
			cs := &conn{gc: &fakeGnetConn{}, fd: fds[0], loop: l, state: stateHTTP, since: 90, wslot: -1}
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
