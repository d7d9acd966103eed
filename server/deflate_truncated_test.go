package server_test

import (
	"testing"
	"time"
)

// Compressed messages that are not whole (RFC 7692 §7.2.2: with
// 00 00 ff ff appended, the data must end at a block boundary, or at the
// end of the block with BFINAL set) are refused with 1007, and the server
// closes TCP; the room never sees what they would inflate to. A room once
// received "hello worh": "hello world" cut three bytes short.
func TestDeflateTruncatedOrTrailingCloses1007(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	member := dialWS(t, srv.Addr(), "/ws/trunc")
	plain := dialWS(t, srv.Addr(), "/ws/trunc")
	waitFor(t, ioTimeout, "members", func() bool { return srv.Stats().WebSockets == 2 })
	hello := deflateMsg(t, []byte("hello world"))
	final := []byte{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00} // "Hello", BFINAL set
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"cut inside the block", hello[:len(hello)-3]}, // inflated to "hello worh"
		{"cut at the flush", hello[:len(hello)-1]},
		{"bytes after BFINAL", append(final[:len(final):len(final)], 'x')},
		{"a message after BFINAL", append(final[:len(final):len(final)], hello...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialDeflate(t, srv, "/ws/trunc", "permessage-deflate")
			c.write(frameSpec{fin: true, rsv: 4, op: opText, payload: tc.payload}.encode())
			f := c.mustFrame()
			if f.op != opClose || f.closeCode() != 1007 {
				t.Fatalf("got %v, want a close frame with 1007", f)
			}
			// The client does not answer the close: the server closes
			// TCP anyway (within its close grace).
			c.readUntilClosed(time.Minute)
			// Nothing reached the room: the next message is the first.
			plain.send(true, opText, []byte("after "+tc.name))
			member.expectFrame(opText, []byte("after "+tc.name))
			plain.expectFrame(opText, []byte("after "+tc.name))
		})
	}
	// A whole message still goes through, BFINAL set or not.
	c, _ := dialDeflate(t, srv, "/ws/trunc", "permessage-deflate")
	c.write(frameSpec{fin: true, rsv: 4, op: opText, payload: hello}.encode())
	c.write(frameSpec{fin: true, rsv: 4, op: opText, payload: append(final[:len(final):len(final)], 0x00)}.encode()) // RFC 7692 §7.2.3.4
	c.write(frameSpec{fin: true, rsv: 4, op: opText, payload: final}.encode())
	for _, want := range []string{"hello world", "Hello", "Hello"} {
		member.expectFrame(opText, []byte(want))
	}
}
