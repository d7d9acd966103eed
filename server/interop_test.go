package server_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"
)

// Interop with two independent client libraries: gorilla/websocket and
// coder/websocket. They mask, fragment and close in their own ways.

func dialGorilla(t *testing.T, url string, writeBuf int) *gorilla.Conn {
	t.Helper()
	d := gorilla.Dialer{HandshakeTimeout: ioTimeout, WriteBufferSize: writeBuf}
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("gorilla dial %s: %v", url, err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialCoder(t *testing.T, url string) *coder.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	c, _, err := coder.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("coder dial %s: %v", url, err)
	}
	c.SetReadLimit(4 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func payloads() []struct {
	text bool
	data []byte
} {
	r := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 300_000)
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	return []struct {
		text bool
		data []byte
	}{
		{true, []byte("hello")},
		{true, []byte("κόσμε ✓ " + string(bytes.Repeat([]byte("é"), 5000)))},
		{false, []byte{0, 1, 2, 255}},
		{false, big},
		{true, []byte{}},
	}
}

func TestInteropGorillaEcho(t *testing.T) {
	srv := startServer(t, testConfig())
	// A 1 KiB write buffer makes gorilla send the large messages as
	// many fragments.
	c := dialGorilla(t, "ws://"+srv.Addr().String()+"/echo", 1024)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, p := range payloads() {
		typ := gorilla.BinaryMessage
		if p.text {
			typ = gorilla.TextMessage
		}
		w, err := c.NextWriter(typ)
		if err != nil {
			t.Fatal(err)
		}
		for rest := p.data; len(rest) > 0; {
			n := min(len(rest), 700)
			_, _ = w.Write(rest[:n])
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		gotTyp, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if gotTyp != typ || !bytes.Equal(got, p.data) {
			t.Fatalf("echo of %d bytes type %d: got %d bytes type %d", len(p.data), typ, len(got), gotTyp)
		}
	}
	// A ping from the client gets a pong with the same payload.
	pong := make(chan string, 1)
	c.SetPongHandler(func(s string) error { pong <- s; return nil })
	if err := c.WriteControl(gorilla.PingMessage, []byte("are you there"), time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	go func() { _, _, _ = c.ReadMessage() }() // pumps control frames
	select {
	case s := <-pong:
		if s != "are you there" {
			t.Fatalf("pong payload %q", s)
		}
	case <-time.After(ioTimeout):
		t.Fatal("no pong")
	}
}

func TestInteropGorillaCloseHandshake(t *testing.T) {
	srv := startServer(t, testConfig())
	c := dialGorilla(t, "ws://"+srv.Addr().String()+"/ws/close-test", 0)
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	msg := gorilla.FormatCloseMessage(4001, "bye")
	if err := c.WriteControl(gorilla.CloseMessage, msg, time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.ReadMessage()
	if !gorilla.IsCloseError(err, 4001) {
		t.Fatalf("want the server to echo close 4001, got %v", err)
	}
	waitFor(t, ioTimeout, "the member to leave", func() bool { return srv.Stats().Rooms == 0 })
}

func TestInteropCoderEcho(t *testing.T) {
	srv := startServer(t, testConfig())
	c := dialCoder(t, "ws://"+srv.Addr().String()+"/echo")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range payloads() {
		typ := coder.MessageBinary
		if p.text {
			typ = coder.MessageText
		}
		// Writer with several writes: coder/websocket sends fragments.
		w, err := c.Writer(ctx, typ)
		if err != nil {
			t.Fatal(err)
		}
		for rest := p.data; len(rest) > 0; {
			n := min(len(rest), 50_000)
			_, _ = w.Write(rest[:n])
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		gotTyp, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if gotTyp != typ || !bytes.Equal(got, p.data) {
			t.Fatalf("echo of %d bytes: got %d bytes type %v", len(p.data), len(got), gotTyp)
		}
	}
	if err := c.Close(coder.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
}

// TestInteropRoomOrder puts gorilla and coder members of one room on
// both event loops; each publishes a numbered series. Every member must
// get every message exactly once, each publisher's in order, and all
// members must see the same total order (the room's owner sequences it).
func TestInteropRoomOrder(t *testing.T) {
	srv := startServer(t, testConfig())
	url := "ws://" + srv.Addr().String() + "/ws/order"
	const perPublisher = 200
	type member struct {
		read  func() (string, error)
		write func(string) error
	}
	var members []member
	for i := range 6 {
		if i%2 == 0 {
			c := dialGorilla(t, url, 0)
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			var mu sync.Mutex
			members = append(members, member{
				read: func() (string, error) { _, b, err := c.ReadMessage(); return string(b), err },
				write: func(s string) error {
					mu.Lock()
					defer mu.Unlock()
					return c.WriteMessage(gorilla.TextMessage, []byte(s))
				},
			})
		} else {
			c := dialCoder(t, url)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			t.Cleanup(cancel)
			members = append(members, member{
				read:  func() (string, error) { _, b, err := c.Read(ctx); return string(b), err },
				write: func(s string) error { return c.Write(ctx, coder.MessageText, []byte(s)) },
			})
		}
	}
	waitFor(t, ioTimeout, "all members to join", func() bool { return srv.Stats().WebSockets == int64(len(members)) })

	total := perPublisher * len(members)
	seen := make([][]string, len(members))
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(members))
	for i, m := range members {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for k := range perPublisher {
				if err := m.write(fmt.Sprintf("%d:%d", i, k)); err != nil {
					errs <- fmt.Errorf("member %d write: %w", i, err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range total {
				s, err := m.read()
				if err != nil {
					errs <- fmt.Errorf("member %d read after %d: %w", i, len(seen[i]), err)
					return
				}
				seen[i] = append(seen[i], s)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range members {
		next := make([]int, len(members))
		for _, s := range seen[i] {
			var p, k int
			if _, err := fmt.Sscanf(s, "%d:%d", &p, &k); err != nil {
				t.Fatalf("member %d got %q", i, s)
			}
			if k != next[p] {
				t.Fatalf("member %d: publisher %d message %d arrived when %d was due (gap or reorder)", i, p, k, next[p])
			}
			next[p]++
		}
		if i > 0 && fmt.Sprint(seen[i]) != fmt.Sprint(seen[0]) {
			t.Fatalf("member %d saw a different order than member 0", i)
		}
	}
	if st := srv.Stats(); st.Published != int64(total) || st.Deliveries != int64(total*len(members)) {
		t.Fatalf("stats: published %d deliveries %d, want %d and %d", st.Published, st.Deliveries, total, total*len(members))
	}
}

// Regression: with corking, a reading member that gets a burst larger
// than MaxPending within one loop turn was mistaken for a slow consumer.
func TestBurstWithinOneTurnIsNotSlowConsumer(t *testing.T) {
	cfg := testConfig()
	cfg.MaxPending = 16 << 10
	srv := startServer(t, cfg)
	c := dialGorilla(t, "ws://"+srv.Addr().String()+"/ws/burst", 0)
	// 32 messages of 4 KiB (128 KiB, 8x MaxPending) in one write: they
	// reach the server in one or a few reads and fan out in one turn.
	var burst []byte
	msg := bytes.Repeat([]byte{'b'}, 4<<10)
	for range 32 {
		burst = append(burst, maskedClientFrame(2, msg)...)
	}
	nc := c.NetConn()
	if _, err := nc.Write(burst); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	for i := range 32 {
		if _, got, err := c.ReadMessage(); err != nil || len(got) != len(msg) {
			t.Fatalf("message %d: %d bytes, %v", i, len(got), err)
		}
	}
	if n := srv.Stats().SlowConsumers; n != 0 {
		t.Fatalf("%d slow-consumer closes for a member that reads", n)
	}
}
