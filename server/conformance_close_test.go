package server_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/loopcast/loopcast/server"
)

// "Closes TCP at once, without waiting for the peer's close frame" is
// the one property here that only time can tell apart: a server that
// waited would close when its close grace ran out instead (closeGrace,
// 2 s in limits.go), a server that does not closes right after its close
// frame. So the TCP close is compared with that grace, not with a speed:
// promptClose is half of it, and the tests that check it run with fine
// ticks (promptConfig), so a waiting server would close no sooner than
// 2 s minus a 10 ms tick after its close frame. Only a client held off
// the CPU for a whole second between reading the close frame and reading
// the end of the connection could fail a correct server.
const (
	closeGrace  = 2 * time.Second // server/limits.go
	promptClose = closeGrace / 2
)

// promptConfig is testConfig with a 10 ms timing wheel (a short drain
// duration sets it; nothing here drains), so the close grace is 2 s to
// the tick.
func promptConfig() server.Config {
	cfg := testConfig()
	cfg.DrainDuration = 200 * time.Millisecond
	return cfg
}

// expectCloseThenEOF reads the server's close frame, checks its code, does
// not answer it, and checks that the server closes TCP without waiting
// for the close grace (promptClose).
func (c *rawClient) expectCloseThenEOF(code int) {
	c.t.Helper()
	f := c.mustFrame()
	if f.op != opClose || f.closeCode() != code {
		c.t.Fatalf("got %v, want a close frame with code %d", f, code)
	}
	if took := c.readUntilClosed(ioTimeout); took > promptClose {
		c.t.Fatalf("TCP closed %s after the close frame: it waited for the peer's close (the close grace is %s)", took.Round(time.Millisecond), closeGrace)
	}
}

// RFC 6455 §7.1.7: to _Fail the WebSocket Connection_ an endpoint may send
// a close frame, then must _Close the WebSocket Connection_ and "SHOULD
// NOT continue to attempt to process data (including a responding Close
// frame) from the remote endpoint". The server fails the connection when
// the peer's close frame is itself invalid (Autobahn 7.3.2, 7.3.6, 7.5.1,
// 7.9.x) or on any other violation: its TCP close follows its close frame
// at once, without waiting for an answer.
func TestFailClosesTCPAfterCloseFrame(t *testing.T) {
	t.Parallel()
	srv := startServer(t, promptConfig())
	for _, tc := range []struct {
		name  string
		frame []byte
		code  int
	}{
		{"close body of one byte", frameBytes(true, opClose, []byte{0x03}), 1002},
		{"close code 999", frameBytes(true, opClose, closePayload(999, "")), 1002},
		{"close code 1004", frameBytes(true, opClose, closePayload(1004, "")), 1002},
		{"close code 1005", frameBytes(true, opClose, closePayload(1005, "")), 1002},
		{"close code 1006", frameBytes(true, opClose, closePayload(1006, "")), 1002},
		{"close code 1015", frameBytes(true, opClose, closePayload(1015, "")), 1002},
		{"close code 2999", frameBytes(true, opClose, closePayload(2999, "")), 1002},
		{"close code 5000", frameBytes(true, opClose, closePayload(5000, "")), 1002},
		{"close reason not UTF-8", frameBytes(true, opClose, closePayload(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64")), 1007},
		{"close payload of 126 bytes", frameBytes(true, opClose, closePayload(1000, string(bytes.Repeat([]byte{'x'}, 124)))), 1002},
		{"reserved opcode", frameBytes(true, 0x3, nil), 1002},
		{"reserved bit", frameSpec{fin: true, rsv: 4, op: opText, payload: []byte("x")}.encode(), 1002},
		{"unmasked frame", frameSpec{fin: true, op: opText, payload: []byte("x"), unmasked: true}.encode(), 1002},
		{"continuation without a start", frameBytes(true, opCont, []byte("x")), 1002},
		{"text not UTF-8", frameBytes(true, opText, []byte("\xff")), 1007},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialWS(t, srv.Addr(), "/echo")
			c.write(tc.frame)
			c.expectCloseThenEOF(tc.code)
		})
	}
}

// RFC 6455 §7.1.1: once the server has both sent and received a close
// frame it closes TCP first, at once: the peer's close is echoed and the
// connection closed without anything more from the peer.
func TestPeerCloseClosesTCPAtOnce(t *testing.T) {
	srv := startServer(t, promptConfig())
	c := dialWS(t, srv.Addr(), "/ws/close-timing")
	c.write(frameBytes(true, opClose, closePayload(1000, "bye")))
	c.expectCloseThenEOF(1000)
}

// RFC 6455 §8.1: "When an endpoint is to interpret a byte stream as UTF-8
// but finds that the byte stream is not, in fact, a valid UTF-8 stream,
// that endpoint MUST _Fail the WebSocket Connection_." The server checks a
// text frame's payload as it arrives, so it fails at the first invalid
// byte even when the rest of the frame never comes (Autobahn 6.4.3, 6.4.4
// are NON-STRICT for servers that wait for the whole frame).
func TestInvalidUTF8FailsBeforeTheFrameEnds(t *testing.T) {
	t.Parallel()
	srv := startServer(t, promptConfig())
	// partial is a text frame of 1000 bytes starting with prefix: its
	// 8-byte header (16-bit length, mask) and the first bytes of prefix.
	partial := func(op byte, fin bool, prefix string) []byte {
		p := append([]byte(prefix), bytes.Repeat([]byte{'a'}, 1000-len(prefix))...)
		return frameSpec{fin: fin, op: op, payload: p}.encode()[:8+len(prefix)]
	}
	t.Run("the rest never comes", func(t *testing.T) {
		t.Parallel()
		c := dialWS(t, srv.Addr(), "/echo")
		c.write(partial(opText, true, "hello\xffworld"))
		c.expectCloseThenEOF(1007)
	})
	t.Run("an invalid sequence split across reads", func(t *testing.T) {
		t.Parallel()
		c := dialWS(t, srv.Addr(), "/echo")
		b := partial(opText, true, "ab\xe0\x80") // overlong: 0xE0 must be followed by 0xA0..0xBF
		c.write(b[:len(b)-1])
		time.Sleep(50 * time.Millisecond) // a separate read on the server
		c.write(b[len(b)-1:])
		c.expectCloseThenEOF(1007)
	})
	t.Run("in a continuation frame", func(t *testing.T) {
		t.Parallel()
		c := dialWS(t, srv.Addr(), "/echo")
		c.write(frameBytes(false, opText, []byte("first ")))
		c.write(partial(opCont, true, "then \xed\xa0\x80")) // a surrogate
		c.expectCloseThenEOF(1007)
	})
	t.Run("a valid prefix waits, then the message is whole", func(t *testing.T) {
		t.Parallel()
		c := dialWS(t, srv.Addr(), "/echo")
		head := "h\xc3\xa9llo \xf0\x9f\x98" // é, then an emoji cut after 3 of its 4 bytes
		msg := append([]byte(head+"\x80"), bytes.Repeat([]byte{'.'}, 100)...)
		f := frameSpec{fin: true, op: opText, payload: msg}.encode()
		cut := 2 + 4 + len(head) // 7-bit length header and mask, then up to the cut
		c.write(f[:cut])
		time.Sleep(50 * time.Millisecond)
		c.write(f[cut:])
		c.expectFrame(opText, msg)
		c.closeHandshake()
	})
}
