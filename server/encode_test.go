package server

import (
	"context"
	"testing"

	"github.com/loopcast/loopcast/server/internal/fanout"
)

// A room message's loopcast.v1 frame is encoded without allocating (it
// runs once per message, lane and loop, on the hot path), and reads back
// as PROTOCOL.md says.
func TestEncodeFrameV1(t *testing.T) {
	e := fanout.New(fanout.Config{Loops: 1, MaxPending: 1 << 20, CorkLimit: 1 << 16, MaxFreeBytes: 1 << 20, Encode: encodeFrame})
	l := e.AddLoop(noExec{})
	var m fanout.Member
	m.Init(l, nopConn{})
	if !m.Join([]byte("prices.eu"), fanout.Raw) {
		t.Fatal("join")
	}
	r := m.Room()
	msg := fanout.Message{Op: 1, Epoch: 0xfeed, Offset: 1043, Payload: []byte(`{"bid":1}`)}
	dst := make([]byte, 0, 256)
	got := encodeFrame(dst, fanout.Framed, r, msg)
	want := "\x81\x2dmsg prices.eu 000000000000feed 1043\n{\"bid\":1}"
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { _ = encodeFrame(dst[:0], fanout.Framed, r, msg) }); n != 0 {
		t.Fatalf("%v allocations per frame", n)
	}
	if raw := encodeFrame(dst[:0], fanout.Raw, r, msg); string(raw) != "\x81\x09{\"bid\":1}" {
		t.Fatalf("raw frame %q", raw)
	}
}

type noExec struct{}

func (noExec) Execute(context.Context, fanout.Task) error { return nil }

type nopConn struct{}

func (nopConn) Queued() int                               { return 0 }
func (nopConn) Write([]byte)                              {}
func (nopConn) Overflow()                                 {}
func (nopConn) Subscribed(*fanout.Sub, fanout.JoinResult) {}
func (nopConn) Published(uint32, fanout.Answer)           {}
