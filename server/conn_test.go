package server

import (
	"bytes"
	"github.com/loopcast/loopcast/server/internal/fanout"
	"testing"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/loopcast/loopcast/server/internal/frame"
)

// readAvailable is everything the peer end of a socketpair can read now.
func readAvailable(t *testing.T, fd int) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if n <= 0 || err != nil {
			return out
		}
		out = append(out, buf[:n]...)
	}
}

// A member closed by the server in the middle of a poll cycle has its
// room frames and its close frame corked; when the peer's close frame
// arrives before the cycle ends (both sides closing at once), they are
// written before TCP closes, not dropped with the connection.
func TestPeerCloseWritesCorkedFramesFirst(t *testing.T) {
	l := testLoop(t, DefaultConfig(), &fakeEventLoop{})
	cs, peer := testConn(t, l, stateOpen)
	cs.member.Join([]byte("r"), fanout.Raw)
	msg := append(frame.AppendHeader(nil, true, ws.OpText, 2), "hi"...)
	l.engine.Publish(cs.member.Room(), fanout.Publication{Op: byte(ws.OpText), Payload: msg[2:]}, fanout.Ack{})
	cs.closeWith(closeGoingAway) // leaves the room: its part and the close frame wait in its cork
	if got := readAvailable(t, peer); len(got) != 0 {
		t.Fatalf("written before the end of the cycle: %q", got)
	}
	if a := cs.closeAfterFlush(); a != gnet.Close {
		t.Fatalf("closeAfterFlush = %v with nothing queued, want gnet.Close", a)
	}
	want := append(append([]byte(nil), msg...), closeFrames[closeGoingAway]...)
	if got := readAvailable(t, peer); !bytes.Equal(got, want) {
		t.Fatalf("peer read %q before the close, want %q", got, want)
	}
}
