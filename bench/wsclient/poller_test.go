package wsclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

type polledMsg struct {
	tag int
	op  byte
	p   string
}

// runPoller polls conns until every one ended and returns the messages
// and the close errors by tag.
func runPoller(t *testing.T, conns ...*Conn) ([]polledMsg, map[int]error) {
	t.Helper()
	var got []polledMsg
	ends := map[int]error{}
	p, err := NewPoller(func(c *Conn, op byte, payload []byte, now int64) {
		if now <= 0 {
			t.Errorf("no read time")
		}
		got = append(got, polledMsg{c.Tag, op, string(payload)})
	}, func(c *Conn, err error) { ends[c.Tag] = err })
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		c.Tag = i
		if err := p.Add(c); err != nil {
			t.Fatal(err)
		}
		if c.NetConn() != nil {
			t.Fatal("net.Conn kept after Add")
		}
	}
	done := make(chan error, 1)
	go func() { done <- p.Run() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		p.Stop()
		<-done
		t.Fatalf("poller still running after 10 s; got %d messages, %d ends", len(got), len(ends))
	}
	return got, ends
}

// The poller hands out the same messages as ReadMessage: whole, in
// order, fragments joined, pings answered (through the socket it took
// over), a close frame as *CloseError; frames that came with the
// handshake response first.
func TestPollerReadsMessages(t *testing.T) {
	big := strings.Repeat("y", 70000) // grows the read buffer
	pong := make(chan string, 1)
	frames := [][]byte{frame(true, OpText, "hello")}
	for i := range 300 { // more than one read buffer of small frames
		frames = append(frames, frame(true, OpBinary, fmt.Sprintf("m%03d", i)))
	}
	frames = append(frames,
		frame(false, OpText, "frag"),
		frame(true, OpPing, "p"),
		frame(true, OpContinuation, "ment"),
		frame(true, OpBinary, big),
		frame(true, OpClose, "\x03\xf5bye"), // 1013
	)
	addr := serve(t, 101, frames, func(c net.Conn, br *bufio.Reader) {
		pong <- readPong(br)
	})
	c, err := Dial(context.Background(), addr, "/ws/x", Options{ReadBuffer: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, ends := runPoller(t, c)

	want := []polledMsg{{0, OpText, "hello"}}
	for i := range 300 {
		want = append(want, polledMsg{0, OpBinary, fmt.Sprintf("m%03d", i)})
	}
	want = append(want, polledMsg{0, OpText, "fragment"}, polledMsg{0, OpBinary, big})
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d: got op %d %.20q, want op %d %.20q", i, got[i].op, got[i].p, want[i].op, want[i].p)
		}
	}
	if p := <-pong; p != "p" {
		t.Fatalf("pong payload %q", p)
	}
	var ce *CloseError
	if !errors.As(ends[0], &ce) || ce.Code != 1013 || ce.Reason != "bye" {
		t.Fatalf("end = %v, want close 1013 bye", ends[0])
	}
}

// Frames cut at every possible point across reads, on several
// connections at once, come out whole and in order per connection; a
// connection that just ends reports io.EOF.
func TestPollerReassemblesAcrossReads(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stream, want := binaryStream(40)
	const conns = 3
	go func() {
		for k := range conns {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn, chunk int) {
				defer c.Close()
				if !acceptUpgrade(c) {
					return
				}
				for i, b := 0, stream; len(b) > 0; i++ {
					n := min(chunk, len(b))
					c.Write(b[:n])
					b = b[n:]
					if i%16 == 0 {
						time.Sleep(100 * time.Microsecond) // let some reads end mid-frame
					}
				}
			}(c, 1+k*5) // 1, 6 and 11 bytes per write
		}
	}()
	var cs []*Conn
	for range conns {
		c, err := Dial(context.Background(), ln.Addr().String(), "/", Options{ReadBuffer: 64})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	got, ends := runPoller(t, cs...)
	per := make([][]string, conns)
	for _, m := range got {
		per[m.tag] = append(per[m.tag], m.p)
	}
	for k := range conns {
		if len(per[k]) != len(want) {
			t.Fatalf("conn %d: %d messages, want %d", k, len(per[k]), len(want))
		}
		for i := range want {
			if per[k][i] != want[i] {
				t.Fatalf("conn %d message %d: %.20q, want %.20q", k, i, per[k][i], want[i])
			}
		}
		if !IsClosedByPeer(ends[k]) {
			t.Fatalf("conn %d end = %v, want EOF", k, ends[k])
		}
	}
}

// Writes to a polled connection reach the server; Stop ends Run with
// connections still open; Close after that closes the socket once.
func TestPollerWriteStopClose(t *testing.T) {
	got := make(chan []byte, 1)
	addr := serve(t, 101, nil, func(c net.Conn, br *bufio.Reader) {
		var all []byte
		buf := make([]byte, 4096)
		for {
			n, err := br.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				got <- all
				return
			}
		}
	})
	c, err := Dial(context.Background(), addr, "/", Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPoller(func(*Conn, byte, []byte, int64) {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Add(c); err != nil {
		t.Fatal(err)
	}
	if err := p.Add(c); err == nil {
		t.Fatal("second Add accepted")
	}
	done := make(chan error, 1)
	go func() { done <- p.Run() }()
	payload := bytes.Repeat([]byte("z"), 100000) // more than a socket buffer at once
	for range 3 {
		if err := c.WriteFrame(OpBinary, payload); err != nil {
			t.Fatal(err)
		}
	}
	p.Stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := c.CloseGracefully(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	all := <-got
	var frames int
	for len(all) > 0 {
		h, n, err := ParseHeader(all)
		if err != nil || !h.Masked {
			t.Fatalf("frame %d: %+v %v", frames, h, err)
		}
		if end := n + int(h.Length); end <= len(all) {
			body := all[n:end]
			Mask(body, h.Mask)
			if frames < 3 && !bytes.Equal(body, payload) {
				t.Fatalf("frame %d payload differs", frames)
			}
			if frames == 3 && (h.Op != OpClose || string(body[:2]) != "\x03\xe8") {
				t.Fatalf("last frame op %d %q, want close 1000", h.Op, body)
			}
			all = all[end:]
		} else {
			t.Fatalf("truncated frame %d", frames)
		}
		frames++
	}
	if frames != 4 {
		t.Fatalf("server got %d frames, want 3 and a close", frames)
	}
}

// Regression: under edge-triggered epoll the last data and the peer's FIN
// can arrive in one edge; a poller that stopped at the short read which
// drained the data never saw the EOF (no other edge follows), so the
// connection's end was lost and Run never returned. Here the server's
// last frame and its close are both in the socket before the poller
// starts.
func TestBugPollerLostEOFAfterLastData(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stream, want := binaryStream(200) // ~27 KB: more than Dial's first read takes
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !acceptUpgrade(c) {
			c.Close()
			return
		}
		c.Write(stream)
		c.Close() // on loopback the FIN is queued behind the data at once
	}()
	c, err := Dial(context.Background(), ln.Addr().String(), "/", Options{ReadBuffer: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-closed
	got, ends := runPoller(t, c)
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	if !IsClosedByPeer(ends[0]) {
		t.Fatalf("end = %v, want EOF", ends[0])
	}
}

// acceptUpgrade reads a client's handshake request from c and answers
// 101 with its accept key; false when the request did not come whole.
func acceptUpgrade(c net.Conn) bool {
	br := bufio.NewReader(c)
	key := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return false
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Sec-WebSocket-Key") {
			key = strings.TrimSpace(v)
		}
		if line == "\r\n" {
			break
		}
	}
	_, err := c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		AcceptKey(key) + "\r\n\r\n"))
	return err == nil
}

// binaryStream is n binary frames as a server sends them, frame i with
// i%40*7 bytes (0..273: 2- and 4-byte headers), and their payloads.
func binaryStream(n int) (stream []byte, want []string) {
	for i := range n {
		p := strings.Repeat(string(rune('a'+i%26)), i%40*7)
		want = append(want, p)
		stream = append(stream, frame(true, OpBinary, p)...)
	}
	return stream, want
}
