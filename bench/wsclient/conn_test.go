package wsclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, l := range []uint64{0, 1, 124, 125, 126, 127, 65535, 65536, 1 << 20} {
		for _, masked := range []bool{false, true} {
			h := Header{Fin: true, Op: OpBinary, Masked: masked, Length: l}
			if masked {
				h.Mask = [4]byte{1, 2, 3, 4}
			}
			var b [maxHeader]byte
			n := PutHeader(b[:], h)
			for cut := 0; cut < n; cut++ {
				if _, _, err := ParseHeader(b[:cut]); err != ErrShort {
					t.Fatalf("len %d cut at %d: err %v, want ErrShort", l, cut, err)
				}
			}
			got, m, err := ParseHeader(b[:n])
			if err != nil || m != n || got != h {
				t.Fatalf("len %d masked %v: got %+v/%d/%v, want %+v/%d", l, masked, got, m, err, h, n)
			}
		}
	}
}

func TestMask(t *testing.T) {
	key := [4]byte{0xde, 0xad, 0xbe, 0xef}
	for n := 0; n < 40; n++ {
		p := bytes.Repeat([]byte{0x5a}, n)
		Mask(p, key)
		for i := range p {
			if p[i] != 0x5a^key[i%4] {
				t.Fatalf("n=%d byte %d = %#x", n, i, p[i])
			}
		}
		Mask(p, key)
		if !bytes.Equal(p, bytes.Repeat([]byte{0x5a}, n)) {
			t.Fatalf("n=%d: masking twice is not identity", n)
		}
	}
}

// serve runs a one-connection WebSocket server that answers the handshake
// with status and then writes frames.
func serve(t *testing.T, status int, frames [][]byte, read func(net.Conn, *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if status != 101 {
			c.Write([]byte("HTTP/1.1 " + http.StatusText(status) + "\r\n"))
			c.Write([]byte("HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nno route\r\n"))
			return
		}
		var out bytes.Buffer
		out.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			AcceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n")
		for _, f := range frames {
			out.Write(f) // all in one write: frames arrive with the head
		}
		c.Write(out.Bytes())
		if read != nil {
			read(c, br)
		}
	}()
	return ln.Addr().String()
}

func frame(fin bool, op byte, p string) []byte {
	b := make([]byte, maxHeader+len(p))
	n := PutHeader(b, Header{Fin: fin, Op: op, Length: uint64(len(p))})
	return append(b[:n], p...)
}

// readPong reads the client's answer to a ping and returns its
// unmasked payload, or "bad" if it is not a masked pong.
func readPong(br *bufio.Reader) string {
	var b [64]byte
	n, _ := br.Read(b[:])
	h, m, err := ParseHeader(b[:n])
	if err != nil || !h.Masked || h.Op != OpPong {
		return "bad"
	}
	p := b[m : m+int(h.Length)]
	Mask(p, h.Mask)
	return string(p)
}

func TestReadMessages(t *testing.T) {
	big := strings.Repeat("x", 70000) // grows the read buffer
	pong := make(chan string, 1)
	addr := serve(t, 101, [][]byte{
		frame(true, OpText, "hello"),
		frame(false, OpBinary, "frag"),
		frame(true, OpPing, "p"),
		frame(true, OpContinuation, "ment"),
		frame(true, OpBinary, big),
		frame(true, OpClose, "\x03\xf5bye"), // 1013
	}, func(c net.Conn, br *bufio.Reader) {
		pong <- readPong(br)
	})
	c, err := Dial(context.Background(), addr, "/ws/x", Options{ReadBuffer: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := []struct {
		op byte
		p  string
	}{{OpText, "hello"}, {OpBinary, "fragment"}, {OpBinary, big}}
	for i, w := range want {
		op, p, err := c.ReadMessage()
		if err != nil || op != w.op || string(p) != w.p {
			t.Fatalf("message %d: op %d len %d err %v", i, op, len(p), err)
		}
	}
	if got := <-pong; got != "p" {
		t.Fatalf("pong payload %q", got)
	}
	_, _, err = c.ReadMessage()
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 1013 || ce.Reason != "bye" || !IsClosedByPeer(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestHandshakeRefused(t *testing.T) {
	addr := serve(t, 404, nil, nil)
	_, err := Dial(context.Background(), addr, "/nope", Options{})
	var he *HandshakeError
	if !errors.As(err, &he) {
		t.Fatalf("err = %v, want HandshakeError", err)
	}
}

func TestCheckResponse(t *testing.T) {
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
	if err := checkResponse("u", []byte(ok), nil, key); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"HTTP/1.1 400 Bad Request\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
		"SSH-2.0\r\n",
	} {
		if err := checkResponse("u", []byte(bad), []byte("why\r\n"), key); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
}

func TestWriteFrameNoAlloc(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		var buf [256]byte
		for {
			if _, err := b.Read(buf[:]); err != nil {
				return
			}
		}
	}()
	c := &Conn{nc: a, rng: 1}
	p := make([]byte, 64)
	c.WriteFrame(OpBinary, p)
	if n := testing.AllocsPerRun(100, func() { c.WriteFrame(OpBinary, p) }); n != 0 {
		t.Fatalf("WriteFrame allocates %v", n)
	}
	b.Close()
}

// A frame with an RSV bit set (RSV1 is compression) that this client never
// negotiated is a protocol error, and the messages before it still
// arrive. The Poller takes such a frame through the same onFrame: its
// fast path only matches first bytes 0x81 and 0x82, RSV clear.
func TestRejectsReservedBits(t *testing.T) {
	for _, rsv := range []byte{0x40, 0x20, 0x10} {
		compressed := frame(true, OpText, "hi")
		compressed[0] |= rsv
		addr := serve(t, 101, [][]byte{frame(true, OpText, "ok"), compressed}, nil)
		c, err := Dial(context.Background(), addr, "/ws/x", Options{})
		if err != nil {
			t.Fatal(err)
		}
		if op, p, err := c.ReadMessage(); err != nil || op != OpText || string(p) != "ok" {
			t.Fatalf("first message: %d %q %v", op, p, err)
		}
		if _, _, err := c.ReadMessage(); !errors.Is(err, ErrProtocol) {
			t.Fatalf("rsv %#x: err = %v, want a protocol error", rsv, err)
		}
		c.Close()
	}
}
