package server_test

import (
	"bytes"
	"compress/flate"
	"io"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/server"
)

// permessage-deflate (RFC 7692), written from the RFC: negotiation, RSV1,
// compressed messages in and out, and their limits.

// deflateMsg is what a client sends for msg (§7.2.1): a flushed DEFLATE
// stream without its final 00 00 ff ff.
func deflateMsg(t testing.TB, msg []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, 6)
	w.Write(msg)
	w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// inflateMsg reverses it (§7.2.2).
func inflateMsg(t testing.TB, z []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(z), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
	out, err := io.ReadAll(r)
	if err != nil && err != io.ErrUnexpectedEOF {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

// dialDeflate opens /path offering ext and returns the client and the
// Sec-WebSocket-Extensions of the 101.
func dialDeflate(t testing.TB, srv *server.Server, path string, ext ...string) (*rawClient, string) {
	t.Helper()
	c := dialRaw(t, srv.Addr())
	k := newKey()
	req := strings.TrimSuffix(upgradeRequest(path, k), "\r\n")
	for _, e := range ext {
		req += "Sec-WebSocket-Extensions: " + e + "\r\n"
	}
	c.write([]byte(req + "\r\n"))
	r := c.readResponse(false)
	if r.status != 101 || r.header.Get("Sec-WebSocket-Accept") != acceptFor(k) {
		t.Fatalf("handshake with %q: %+v", ext, r)
	}
	c.deflate = r.header.Get("Sec-WebSocket-Extensions") != ""
	return c, r.header.Get("Sec-WebSocket-Extensions")
}

const accepted = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// §5, §7: each parameter, bad values, duplicates, unknown extensions
// offered alongside. A declined offer is answered without the extension,
// never with a failed handshake.
func TestDeflateNegotiation(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	for _, tc := range []struct {
		offer []string
		want  string
	}{
		{[]string{"permessage-deflate"}, accepted},
		{[]string{"permessage-deflate; server_no_context_takeover"}, accepted},
		{[]string{"permessage-deflate; client_no_context_takeover"}, accepted},
		{[]string{"permessage-deflate; client_max_window_bits"}, accepted},
		{[]string{"permessage-deflate; client_max_window_bits=10"}, accepted},
		{[]string{"permessage-deflate; server_max_window_bits=15"}, accepted},
		{[]string{"permessage-deflate; server_max_window_bits=10"}, ""},                              // a smaller server window: declined
		{[]string{"permessage-deflate; server_max_window_bits=10, permessage-deflate"}, accepted},    // the next offer
		{[]string{"permessage-deflate; server_max_window_bits=16"}, ""},                              // invalid value
		{[]string{"permessage-deflate; client_max_window_bits=7"}, ""},                               // invalid value
		{[]string{"permessage-deflate; server_max_window_bits"}, ""},                                 // needs a value
		{[]string{"permessage-deflate; client_no_context_takeover=1"}, ""},                           // takes no value
		{[]string{"permessage-deflate; client_no_context_takeover; client_no_context_takeover"}, ""}, // duplicate
		{[]string{"permessage-deflate; foo"}, ""},                                                    // unknown parameter
		{[]string{"x-webkit-deflate-frame, permessage-deflate"}, accepted},                           // unknown extension alongside
		{[]string{"foo", "permessage-deflate; client_max_window_bits"}, accepted},                    // over two header lines
		{[]string{"PerMessage-Deflate"}, accepted},
		{[]string{`permessage-deflate; client_max_window_bits="10"`}, accepted},
		{[]string{"permessage-deflate; =x"}, ""},
		{nil, ""},
	} {
		c, got := dialDeflate(t, srv, "/echo", tc.offer...)
		if got != tc.want {
			t.Errorf("offer %q: answered %q, want %q", tc.offer, got, tc.want)
		}
		c.expectEcho(opText, []byte("still a WebSocket"))
		c.closeHandshake()
	}
}

// With --compression=false the offer is not accepted, so RSV1 stays
// illegal (§6): 1002, then TCP closes.
func TestDeflateOff(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Compression = false
	srv := startServer(t, cfg)
	c, got := dialDeflate(t, srv, "/echo", "permessage-deflate")
	if got != "" {
		t.Fatalf("answered %q with compression off", got)
	}
	c.write(frameSpec{fin: true, rsv: 4, op: opText, payload: deflateMsg(t, []byte("x"))}.encode())
	c.expectClose(1002)
}

func TestDeflateClientMessages(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxMessage = 64 << 10
	srv := startServer(t, cfg)
	big := bytes.Repeat([]byte(`{"bid":1.0842,"ask":1.0844},`), 2000) // 56 KB of JSON
	t.Run("whole", func(t *testing.T) {
		c, _ := dialDeflate(t, srv, "/echo", "permessage-deflate")
		c.write(frameSpec{fin: true, rsv: 4, op: opText, payload: deflateMsg(t, big)}.encode())
		c.expectFrame(opText, big) // echoes go uncompressed (§6: per message, optional)
		c.write(frameSpec{fin: true, rsv: 4, op: opBinary, payload: deflateMsg(t, []byte{0, 1, 2})}.encode())
		c.expectFrame(opBinary, []byte{0, 1, 2})
		c.expectEcho(opText, []byte("plain messages still work")) // RSV1 clear: not compressed
		c.closeHandshake()
	})
	t.Run("split across reads", func(t *testing.T) {
		c, _ := dialDeflate(t, srv, "/echo", "permessage-deflate")
		c.writeChunks(frameSpec{fin: true, rsv: 4, op: opText, payload: deflateMsg(t, big)}.encode(), 7)
		c.expectFrame(opText, big)
		c.closeHandshake()
	})
	t.Run("fragmented, with a ping between fragments", func(t *testing.T) {
		c, _ := dialDeflate(t, srv, "/echo", "permessage-deflate")
		z := deflateMsg(t, big)
		third := len(z) / 3
		c.write(frameSpec{fin: false, rsv: 4, op: opText, payload: z[:third]}.encode()) // RSV1 on the first frame only (§6.1)
		c.write(frameSpec{fin: true, op: opPing, payload: []byte("p")}.encode())
		c.expectFrame(opPong, []byte("p"))
		c.write(frameSpec{fin: false, op: opCont, payload: z[third : 2*third]}.encode())
		c.write(frameSpec{fin: true, op: opCont, payload: z[2*third:]}.encode())
		c.expectFrame(opText, big)
		c.closeHandshake()
	})
	for _, tc := range []struct {
		name   string
		frames [][]byte
		code   int
	}{
		{"RSV1 on a control frame", [][]byte{frameSpec{fin: true, rsv: 4, op: opPing, payload: []byte("p")}.encode()}, 1002},
		{"RSV1 on a continuation frame", [][]byte{
			frameSpec{fin: false, rsv: 4, op: opText, payload: deflateMsg(t, []byte("ab"))[:1]}.encode(),
			frameSpec{fin: true, rsv: 4, op: opCont, payload: []byte{0}}.encode()}, 1002},
		{"RSV2", [][]byte{frameSpec{fin: true, rsv: 2, op: opText, payload: []byte("x")}.encode()}, 1002},
		{"invalid DEFLATE data", [][]byte{frameSpec{fin: true, rsv: 4, op: opBinary, payload: []byte{0xff, 0xff, 0xff, 0xff}}.encode()}, 1007},
		{"invalid UTF-8 once inflated", [][]byte{frameSpec{fin: true, rsv: 4, op: opText, payload: deflateMsg(t, []byte{'a', 0xff})}.encode()}, 1007},
		// A bomb: 16 MiB of zeros in a few KiB; refused at max-message
		// (64 KiB + 257), never inflated further.
		{"decompression bomb", [][]byte{frameSpec{fin: true, rsv: 4, op: opBinary, payload: deflateMsg(t, make([]byte, 16<<20))}.encode()}, 1009},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialDeflate(t, srv, "/echo", "permessage-deflate")
			for _, f := range tc.frames {
				c.write(f)
			}
			c.expectClose(tc.code)
		})
	}
}

// Room messages: one compressed frame (RSV1) per message for the members
// that negotiated compression, the plain frame for the others; messages
// under --compression-min-size go plain to everyone.
func TestDeflateRoomMessages(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	z, _ := dialDeflate(t, srv, "/ws/feed", "permessage-deflate")
	plain := dialWS(t, srv.Addr(), "/ws/feed")
	vz, _ := dialDeflate(t, srv, "/ws/feed", "permessage-deflate")
	waitFor(t, ioTimeout, "members", func() bool { return srv.Stats().WebSockets == 3 })
	big := bytes.Repeat([]byte(`{"symbol":"EURUSD","bid":1.0842},`), 40) // 1.3 KB
	if _, err := srv.Publish("feed", server.Text, big); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Publish("feed", server.Text, []byte("short")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*rawClient{z, vz} {
		f := c.mustFrame()
		if f.rsv != 4 || f.op != opText || !bytes.Equal(inflateMsg(t, f.payload), big) || len(f.payload) > len(big)/4 {
			t.Fatalf("compressed member got %v", f)
		}
		c.expectFrame(opText, []byte("short")) // under the minimum size
	}
	plain.expectFrame(opText, big)
	plain.expectFrame(opText, []byte("short"))
	// Once per message and loop with compressed members (here one or
	// two loops), never per member.
	st := srv.Stats()
	if st.CompressedMessages < 1 || st.CompressedMessages > 2 || st.CompressedPlain != st.CompressedMessages ||
		st.CompressedBytesIn <= 2*st.CompressedBytesOut || st.CompressedBytesOut == 0 {
		t.Fatalf("compression stats: %+v", st)
	}
}

// loopcast.v1 with compression: the whole message, "msg" line and
// payload, is one compressed frame, live and replayed.
func TestDeflateProtocolMessages(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	dial := func() v1 {
		c := dialRaw(t, srv.Addr())
		k := newKey()
		req := strings.TrimSuffix(upgradeRequest("/ws", k), "\r\n") +
			"Sec-WebSocket-Protocol: loopcast.v1\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
		c.write([]byte(req))
		if r := c.readResponse(false); r.status != 101 || r.header.Get("Sec-WebSocket-Extensions") != accepted {
			t.Fatalf("handshake: %+v", r)
		}
		c.deflate = true
		return v1{c}
	}
	big := bytes.Repeat([]byte(`{"bid":1.0842,"ask":1.0844},`), 40)
	a := dial()
	a.cmd("sub 1 feed")
	epoch, _ := a.subscribed(1, "feed", "live")
	if _, err := srv.Publish("feed", server.Binary, big); err != nil {
		t.Fatal(err)
	}
	check := func(c v1, offset string) {
		t.Helper()
		f := c.mustFrame()
		want := append([]byte("msg feed "+epoch+" "+offset+"\n"), big...)
		if f.rsv != 4 || f.op != opBinary || !bytes.Equal(inflateMsg(t, f.payload), want) {
			t.Fatalf("got %v", f)
		}
	}
	check(a, "1")
	b := dial()
	b.cmd("sub 2 feed " + epoch + " 0") // replayed, compressed too
	b.subscribed(2, "feed", "recovered")
	check(b, "1")
}
