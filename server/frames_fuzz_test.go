package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
)

// streamConn is a gnet connection fed by the test: inbound holds what the
// peer sent and the server has not discarded, outbound what the server
// wrote (gnet's Write; the raw write path is off, fd -1).
type streamConn struct {
	gnet.Conn // nil: only the methods below are called
	inbound   []byte
	outbound  []byte
}

func (s *streamConn) InboundBuffered() int  { return len(s.inbound) }
func (s *streamConn) OutboundBuffered() int { return 0 }
func (s *streamConn) Write(b []byte) (int, error) {
	s.outbound = append(s.outbound, b...)
	return len(b), nil
}

func (s *streamConn) Peek(n int) ([]byte, error) {
	if n <= 0 || n > len(s.inbound) {
		n = len(s.inbound)
	}
	return s.inbound[:n], nil
}

func (s *streamConn) Discard(n int) (int, error) {
	if n < 0 || n > len(s.inbound) {
		n = len(s.inbound)
	}
	s.inbound = s.inbound[n:]
	return n, nil
}

// serveStream runs an echo WebSocket over the client bytes in, delivered
// in chunks of the given sizes (cycling; the whole stream at once when
// sizes is empty), as consecutive reads do, and returns everything the
// server wrote, its final state and its close reason.
func serveStream(t *testing.T, in []byte, sizes []byte) ([]byte, connState, closeReason) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.MaxMessage = 4 << 10 // small, so the fuzzer reaches the limit
	el := &fakeEventLoop{}
	l := testLoop(t, cfg, el)
	sc := &streamConn{}
	cs := &conn{gc: sc, fd: -1, loop: l, state: stateOpen, echo: true, wslot: -1}
	cs.member.Init(l.engine, cs)
	endCycle := func() {
		for len(el.tasks) > 0 {
			task := el.tasks[0]
			el.tasks = el.tasks[1:]
			_ = task.Run(context.Background())
		}
	}
	for i := 0; len(in) > 0; i++ {
		n := len(in)
		if len(sizes) > 0 {
			n = min(n, 1+int(sizes[i%len(sizes)]))
		}
		sc.inbound = append(sc.inbound, in[:n]...)
		in = in[n:]
		if a := cs.serveFrames(); a == gnet.Close {
			cs.state = stateClosed
		}
		endCycle()
		if cs.state == stateClosed || cs.peerClosed {
			break
		}
	}
	return sc.outbound, cs.state, cs.reason
}

// clientStream encodes frames as a client sends them (masked), from a
// compact description the fuzzer mutates: each op byte is followed by a
// length byte and that many payload bytes.
func clientStream(desc []byte) []byte {
	var out []byte
	for len(desc) >= 2 {
		b0, n := desc[0], int(desc[1])
		desc = desc[2:]
		n = min(n, len(desc))
		p := desc[:n]
		desc = desc[n:]
		out = append(out, b0, 0x80|byte(min(n, 125)))
		if n > 125 {
			out[len(out)-1] = 0x80 | 126
			out = binary.BigEndian.AppendUint16(out, uint16(n))
		}
		mask := [4]byte{0x11, 0x22, 0x33, 0x44}
		out = append(out, mask[:]...)
		start := len(out)
		out = append(out, p...)
		ws.Cipher(out[start:], mask, 0)
	}
	return out
}

// FuzzFramesSplitAnywhere checks that how TCP splits the client's bytes
// never changes what the server does: fed at once or in chunks of any
// sizes, the same frames come back, the connection ends in the same state
// and for the same reason. Whole frames take the in-place path, split
// ones the streaming path (takePayload), so this holds them to one
// behaviour. The seeds run in every go test.
func FuzzFramesSplitAnywhere(f *testing.F) {
	frames := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	fr := func(b0 byte, p string) []byte { return append([]byte{b0, byte(len(p))}, p...) }
	f.Add(frames(fr(0x81, "hello"), fr(0x82, "\x00\x01\x02"), fr(0x89, "ping")), []byte{0, 1, 2})
	f.Add(frames(fr(0x01, "frag"), fr(0x89, "p"), fr(0x80, "mented")), []byte{3})
	f.Add(frames(fr(0x81, "bad \xff utf8"), fr(0x81, "after")), []byte{5, 0})
	f.Add(frames(fr(0x01, "h\xc3"), fr(0x80, "\xa9llo")), []byte{1})
	f.Add(frames(fr(0x88, "\x03\xe8bye")), []byte{0})
	f.Add(frames(fr(0x88, "\x03")), []byte{2})
	f.Add(frames(fr(0x80, "stray")), []byte{4})
	f.Add(frames(fr(0xC1, "rsv1")), []byte{1})
	f.Add(frames(fr(0x82, string(bytes.Repeat([]byte{'x'}, 200))), fr(0x81, "ok")), []byte{7, 60})
	f.Fuzz(func(t *testing.T, desc []byte, sizes []byte) {
		in := clientStream(desc)
		whole, wholeState, wholeReason := serveStream(t, in, nil)
		split, splitState, splitReason := serveStream(t, in, sizes)
		if !bytes.Equal(whole, split) || wholeState != splitState || wholeReason != splitReason {
			t.Fatalf("split %v changes the outcome:\nwhole %q state %d reason %s\nsplit %q state %d reason %s",
				sizes, whole, wholeState, wholeReason, split, splitState, splitReason)
		}
	})
}
