package server_test

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/loopcast/loopcast/server"
)

// Conformance of loopcast.v1, written from PROTOCOL.md: every frame and
// every error it lists, with a raw client.

// dialV1 opens a WebSocket to path offering protocols (a comma list) and
// checks the 101 selects wantProto ("" for none).
func dialV1(t testing.TB, addr string, path, protocols, wantProto string, extra ...string) *rawClient {
	t.Helper()
	c := dialRaw(t, tcpAddr(addr))
	key := newKey()
	req := strings.TrimSuffix(upgradeRequest(path, key), "\r\n")
	if protocols != "" {
		req += "Sec-WebSocket-Protocol: " + protocols + "\r\n"
	}
	for _, h := range extra {
		req += h + "\r\n"
	}
	c.write([]byte(req + "\r\n"))
	resp := c.readResponse(false)
	if resp.status != 101 {
		t.Fatalf("handshake: %d %q", resp.status, resp.body)
	}
	if got := resp.header.Get("Sec-WebSocket-Protocol"); got != wantProto {
		t.Fatalf("Sec-WebSocket-Protocol %q, want %q", got, wantProto)
	}
	return c
}

type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }

// v1 is a loopcast.v1 client over a raw connection.
type v1 struct {
	*rawClient
}

func dialProto(t testing.TB, srv *server.Server, path string) v1 {
	t.Helper()
	return v1{dialV1(t, srv.Addr().String(), path, "loopcast.v1", "loopcast.v1")}
}

func (c v1) cmd(line string) { c.t.Helper(); c.send(true, opText, []byte(line)) }

// expect reads the next frame: a text frame whose payload is want.
func (c v1) expect(want string) {
	c.t.Helper()
	c.expectFrame(opText, []byte(want))
}

// expectErr reads an err reply and checks its id and code.
func (c v1) expectErr(id uint32, code string) {
	c.t.Helper()
	f := c.mustFrame()
	prefix := fmt.Sprintf("err %d %s ", id, code)
	if f.op != opText || !strings.HasPrefix(string(f.payload), prefix) || len(f.payload) == len(prefix) {
		c.t.Fatalf("got %v, want %q followed by a reason", f, prefix)
	}
}

// subscribed reads a sub reply for id and room with status, and returns
// its epoch and offset.
func (c v1) subscribed(id uint32, room, status string) (epoch string, offset uint64) {
	c.t.Helper()
	f := c.mustFrame()
	fields := strings.Fields(string(f.payload))
	if f.op != opText || len(fields) != 6 || fields[0] != "sub" || fields[1] != strconv.Itoa(int(id)) || fields[2] != room || fields[5] != status || len(fields[3]) != 16 {
		c.t.Fatalf("got %v, want sub %d %s <epoch> <offset> %s", f, id, room, status)
	}
	off, err := strconv.ParseUint(fields[4], 10, 64)
	if err != nil {
		c.t.Fatalf("offset in %q: %v", f.payload, err)
	}
	return fields[3], off
}

// msg reads a room message and checks its room, opcode and payload; it
// returns the epoch and offset.
func (c v1) msg(room string, op byte, payload string) (epoch string, offset uint64) {
	c.t.Helper()
	f := c.mustFrame()
	line, body, ok := bytes.Cut(f.payload, []byte("\n"))
	fields := strings.Fields(string(line))
	if !ok || f.op != op || len(fields) != 4 || fields[0] != "msg" || fields[1] != room || len(fields[2]) != 16 || string(body) != payload {
		c.t.Fatalf("got %v, want msg %s <epoch> <offset>\\n%q (op %#x)", f, room, payload, op)
	}
	off, err := strconv.ParseUint(fields[3], 10, 64)
	if err != nil {
		c.t.Fatal(err)
	}
	return fields[2], off
}

// published reads a pub reply for id, room and offset, and checks its
// epoch is the room's.
func (c v1) published(srv *server.Server, id uint32, room string, offset uint64) {
	c.t.Helper()
	f := c.mustFrame()
	want := fmt.Sprintf("pub %d %s %s %d", id, room, c.epochOf(srv, room), offset)
	if f.op != opText || string(f.payload) != want {
		c.t.Fatalf("got %v, want %q", f, want)
	}
}

// checkNews reads news's two messages of TestProtocolSubscribeMessagesUnsubscribe,
// and one frame of another room when other is set.
func (c v1) checkNews(epoch string, other func(wsFrame)) {
	c.t.Helper()
	want := []wsFrame{
		{fin: true, op: opText, payload: []byte("msg news " + epoch + " 1\nline one\nline two")},
		{fin: true, op: opBinary, payload: []byte("msg news " + epoch + " 2\n\x00\xff\n")},
	}
	for len(want) > 0 || other != nil {
		f := c.mustFrame()
		if strings.HasPrefix(string(f.payload), "msg news ") {
			if len(want) == 0 || f.op != want[0].op || !bytes.Equal(f.payload, want[0].payload) {
				c.t.Fatalf("got %v, want %v", f, want)
			}
			want = want[1:]
			continue
		}
		if other == nil {
			c.t.Fatalf("unexpected %v", f)
		}
		other(f)
		other = nil
	}
}

// quiet checks nothing but keepalive pings arrives for a short while.
// It can only fail on a frame the server should not have sent: a loaded
// machine makes it wait the same 100 ms and see less, never more (a ping
// is possible once a connection is 20 s old, and is not a message).
func (c v1) quiet() {
	c.t.Helper()
	end := time.Now().Add(100 * time.Millisecond)
	for {
		_ = c.conn.SetReadDeadline(end)
		b, err := c.br.Peek(1)
		if isTimeout(err) {
			return
		}
		if err != nil {
			c.t.Fatalf("connection ended: %v", err)
		}
		if b[0] != 0x80|opPing {
			c.t.Fatalf("unexpected bytes: %q", b)
		}
		f, err := c.readFrame() // resets the deadline to ioTimeout
		if err != nil {
			c.t.Fatalf("read ping: %v", err)
		}
		c.send(true, opPong, f.payload)
	}
}

func TestProtocolHandshake(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	addr := srv.Addr().String()
	// Selected among other offers; RFC 6455 §4.2.2: one of the client's.
	c := v1{dialV1(t, addr, "/ws", "chat, loopcast.v1, other", "loopcast.v1")}
	c.cmd("sub 1 r")
	c.subscribed(1, "r", "live")
	// Subprotocol names are case-sensitive: not offered, raw mode.
	raw := dialV1(t, addr, "/ws/r", "LOOPCAST.V1", "")
	raw.send(true, opText, []byte("plain"))
	raw.expectFrame(opText, []byte("plain")) // raw mode: published as is, to itself
	c.msg("r", opText, "plain")
	// Offered on /echo: echo, no subprotocol.
	echo := dialV1(t, addr, "/echo", "loopcast.v1", "")
	echo.expectEcho(opBinary, []byte("sub 1 r"))
	// Offered on two headers.
	two := v1{dialV1(t, addr, "/ws", "a", "loopcast.v1", "Sec-WebSocket-Protocol: loopcast.v1")}
	two.cmd("sub 9 r")
	two.subscribed(9, "r", "live")
}

func TestProtocolSubscribeMessagesUnsubscribe(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	a, b := dialProto(t, srv, "/ws"), dialProto(t, srv, "/ws/news") // /ws/{room}: sub 0 {room}
	epochB, offB := b.subscribed(0, "news", "live")
	if offB != 0 {
		t.Fatalf("a new room's offset is %d, want 0", offB)
	}
	a.cmd("sub 1 news")
	epochA, _ := a.subscribed(1, "news", "live")
	a.cmd("sub 2 sport\n") // a line may end with \n
	a.subscribed(2, "sport", "live")
	if epochA != epochB {
		t.Fatalf("one room, two epochs: %s %s", epochA, epochB)
	}

	// Text stays text, binary stays binary, payloads byte for byte (a
	// line feed in a payload is payload); offsets increase by one.
	b.send(true, opText, []byte("pub 0 news\nline one\nline two"))
	b.send(true, opBinary, append([]byte("pub 0 news\n"), 0, 0xff, '\n'))
	if _, err := srv.Publish("sport", server.Text, []byte("goal")); err != nil {
		t.Fatal(err)
	}
	b.checkNews(epochA, nil)
	// a gets sport's message too; the order between rooms is not defined.
	a.checkNews(epochA, func(f wsFrame) {
		if want := "msg sport "; !strings.HasPrefix(string(f.payload), want) || !strings.HasSuffix(string(f.payload), " 1\ngoal") {
			t.Fatalf("got %v, want sport's first message", f)
		}
	})
	b.quiet() // not subscribed to sport

	// unsub: the reply comes after the room's last message, then nothing.
	a.cmd("unsub 3 news")
	a.expect("unsub 3 news")
	b.cmd("pub 0 news\nafter")
	b.msg("news", opText, "after")
	a.quiet()
	// Subscribed again: a plain sub says where the room stands.
	a.cmd("sub 4 news")
	if _, off := a.subscribed(4, "news", "live"); off != 3 {
		t.Fatalf("sub reply offset %d, want 3", off)
	}
}

func TestProtocolPublishAcknowledgement(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	sub := dialProto(t, srv, "/ws/chat")
	epoch, _ := sub.subscribed(0, "chat", "live")
	pub := dialProto(t, srv, "/ws") // not subscribed to chat
	pub.cmd("pub 7 chat\nhello")
	pub.expect("pub 7 chat " + epoch + " 1")
	sub.msg("chat", opText, "hello")
	pub.send(true, opBinary, []byte("pub 0 chat\n\x01")) // id 0: no reply
	sub.msg("chat", opBinary, "\x01")
	pub.quiet()
	// The publisher subscribed gets its own message, before the reply.
	pub.cmd("sub 8 chat")
	pub.subscribed(8, "chat", "live")
	pub.cmd("pub 9 chat\nme too")
	pub.msg("chat", opText, "me too")
	pub.expect("pub 9 chat " + epoch + " 3")
	// The admin API and the Go API return the offset too.
	if p, err := srv.Publish("chat", server.Text, []byte("x")); err != nil || p.Offset != 4 || p.Members != 2 {
		t.Fatalf("Publish: %+v %v", p, err)
	}
}

func TestProtocolPublishWithoutHistory(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.HistoryMessages = 0
	srv := startServer(t, cfg)
	c := dialProto(t, srv, "/ws")
	c.cmd("pub 1 nobody\nx")
	c.expect("pub 1 nobody 0000000000000000 0") // went nowhere, and says so
	if srv.Stats().Rooms != 0 {
		t.Fatal("publishing without history created a room")
	}
}

// Every error code of PROTOCOL.md, each refusing the command and nothing
// else: the connection keeps working afterwards.
func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxSubscriptions = 2
	cfg.MaxMessage = 64
	cfg.SubscribeRate = 0 // its own test below
	srv := startServer(t, cfg)
	c := dialProto(t, srv, "/ws")
	c.cmd("sub 1 a")
	epoch, _ := c.subscribed(1, "a", "live")
	long := strings.Repeat("x", 300)
	for _, tc := range []struct {
		op   byte
		line string
		id   uint32
		code string
	}{
		{opText, "", 0, "bad_command"},
		{opText, "sub", 0, "bad_command"},
		{opText, "sub 1", 1, "bad_command"},
		{opText, "sub 01 a", 0, "bad_command"},
		{opText, "sub 4294967296 a", 0, "bad_command"},
		{opText, "sub 5 b 1234 7", 5, "bad_command"},
		{opText, "sub 5 b " + strings.ToUpper(epoch) + " 7", 5, "bad_command"},
		{opText, "sub 5 b " + epoch + " 18446744073709551616", 5, "bad_command"},
		{opText, "sub 5 b " + epoch, 5, "bad_command"},
		{opText, "sub 5 b\nmore", 5, "bad_command"},
		{opText, "unsub 6 a extra", 6, "bad_command"},
		{opText, "pub 7 a", 7, "bad_command"},
		{opText, "pub 7 " + long + "\nx", 0, "bad_command"},
		{opText, "SUB 8 a", 0, "unknown_op"},
		{opText, "hello", 0, "unknown_op"},
		{opBinary, "sub 9 a/b", 9, "bad_room"},
		{opText, "sub 9 ..", 9, "bad_room"},
		{opText, "sub 10 a", 10, "already_subscribed"},
		{opText, "unsub 11 z", 11, "not_subscribed"},
		{opText, "pub 12 a\n" + strings.Repeat("y", 65), 12, "too_large"},
		{opText, "sub 13 a " + epoch + " 99", 13, "already_subscribed"}, // before the resume is looked at
	} {
		c.send(true, tc.op, []byte(tc.line))
		c.expectErr(tc.id, tc.code)
	}
	c.cmd("sub 14 b")
	c.subscribed(14, "b", "live")
	c.cmd("sub 15 c")
	c.expectErr(15, "too_many_subscriptions")
	c.cmd("unsub 16 b")
	c.expect("unsub 16 b")
	c.cmd("sub 17 b " + epoch + " 0") // b's epoch is not a's
	c.subscribed(17, "b", "epoch_changed")
	c.cmd("unsub 18 b")
	c.expect("unsub 18 b")
	c.cmd("sub 19 a2 0000000000000000 0")
	c.subscribed(19, "a2", "epoch_changed")
	c.cmd("unsub 20 a")
	c.expect("unsub 20 a")
	c.cmd("sub 21 a " + epoch + " 1") // the room has no message 1 yet
	c.expectErr(21, "offset_ahead")
	// Still serving: a good command works after every refusal.
	c.cmd("sub 22 a " + epoch + " 0")
	c.subscribed(22, "a", "recovered")
	st := srv.Stats()
	if st.CommandErrors["bad_command"] != 13 || st.CommandErrors["unknown_op"] != 2 || st.CommandErrors["offset_ahead"] != 1 ||
		st.CommandErrors["too_many_subscriptions"] != 1 || st.Resumes["epoch_changed"] != 2 || st.Resumes["recovered"] != 1 {
		t.Fatalf("counted %v, resumes %v", st.CommandErrors, st.Resumes)
	}
}

func TestProtocolLimitsAndPolicies(t *testing.T) {
	t.Parallel()
	t.Run("too_many_rooms", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.MaxRooms = 1
		srv := startServer(t, cfg)
		c := dialProto(t, srv, "/ws/one")
		c.subscribed(0, "one", "live")
		c.cmd("sub 1 two")
		c.expectErr(1, "too_many_rooms")
		c.cmd("pub 2 three\nx")
		c.expectErr(2, "too_many_rooms")
	})
	t.Run("publish_disabled", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.ClientPublish = false
		srv := startServer(t, cfg)
		c := dialProto(t, srv, "/ws/r")
		c.subscribed(0, "r", "live")
		c.cmd("pub 0 r\nx") // refused even with id 0: never silent
		c.expectErr(0, "publish_disabled")
	})
	t.Run("rate_limited", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.PublishRate, cfg.PublishBurst = 1, 2
		cfg.SubscribeRate, cfg.MaxSubscriptions = 1, 2
		srv := startServer(t, cfg)
		c := dialProto(t, srv, "/ws")
		for i := range 2 {
			c.cmd(fmt.Sprintf("pub %d r\nx", i+1))
			c.published(srv, uint32(i+1), "r", uint64(i+1))
		}
		c.cmd("pub 3 r\nx")
		c.expectErr(3, "rate_limited")
		c.cmd("sub 4 r")
		c.subscribed(4, "r", "live")
		c.cmd("unsub 5 r")
		c.expect("unsub 5 r")
		c.cmd("sub 6 r")
		c.expectErr(6, "rate_limited")
	})
	t.Run("forbidden", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.JWTSecret = "0123456789abcdef0123456789abcdef"
		srv := startServer(t, cfg)
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"exp": time.Now().Add(time.Hour).Unix(), "rooms": []string{"feed-*", "chat"}, "publish": []string{"chat"},
		}).SignedString([]byte("0123456789abcdef0123456789abcdef"))
		if err != nil {
			t.Fatal(err)
		}
		c := v1{dialV1(t, srv.Addr().String(), "/ws", "loopcast.v1", "loopcast.v1", "Authorization: Bearer "+tok)}
		c.cmd("sub 1 feed-eu")
		c.subscribed(1, "feed-eu", "live")
		c.cmd("sub 2 admin")
		c.expectErr(2, "forbidden")
		c.cmd("pub 3 feed-eu\nx") // may read, not write
		c.expectErr(3, "forbidden")
		c.cmd("pub 4 chat\nx")
		c.published(srv, 4, "chat", 1)
	})
}

// epochOf is the room's epoch from /rooms.
func (c v1) epochOf(srv *server.Server, room string) string {
	c.t.Helper()
	for _, r := range srv.Rooms() {
		if r.Name == room {
			return r.Epoch
		}
	}
	c.t.Fatalf("no room %s", room)
	return ""
}

// Resume: everything missed is replayed, in order, then live; what
// cannot be replayed is said.
func TestProtocolResume(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.HistoryMessages = 5
	srv := startServer(t, cfg)
	c := dialProto(t, srv, "/ws/feed")
	epoch, _ := c.subscribed(0, "feed", "live")
	for i := 1; i <= 3; i++ {
		if _, err := srv.Publish("feed", server.Text, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		c.msg("feed", opText, strconv.Itoa(i))
	}
	c.conn.Close() // dropped, as by the gateway
	waitFor(t, ioTimeout, "the drop seen", func() bool { return srv.Stats().WebSockets == 0 })
	for i := 4; i <= 6; i++ {
		if _, err := srv.Publish("feed", server.Binary, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	d := dialProto(t, srv, "/ws")
	d.cmd("sub 1 feed " + epoch + " 3")
	if _, off := d.subscribed(1, "feed", "recovered"); off != 6 {
		t.Fatalf("recovered up to %d, want 6", off)
	}
	for i := 4; i <= 6; i++ {
		if _, off := d.msg("feed", opBinary, strconv.Itoa(i)); off != uint64(i) {
			t.Fatalf("replayed offset %d, want %d", off, i)
		}
	}
	if _, err := srv.Publish("feed", server.Text, []byte("7")); err != nil {
		t.Fatal(err)
	}
	d.msg("feed", opText, "7")
	// Offsets 1 and 2 left the 5-message history: not recovered, said so.
	e := dialProto(t, srv, "/ws")
	e.cmd("sub 2 feed " + epoch + " 1")
	e.subscribed(2, "feed", "history_passed")
	e.quiet() // nothing replayed
	// Up to date: recovered with nothing to replay.
	f := dialProto(t, srv, "/ws")
	f.cmd("sub 3 feed " + epoch + " 7")
	f.subscribed(3, "feed", "recovered")
	f.quiet()
}

// A new server (a restart) has other epochs: a resume is told so.
func TestProtocolResumeAfterRestart(t *testing.T) {
	t.Parallel()
	first := startServer(t, testConfig())
	c := dialProto(t, first, "/ws/r")
	epoch, _ := c.subscribed(0, "r", "live")
	if _, err := first.Publish("r", server.Text, []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.msg("r", opText, "x")
	second := startServer(t, testConfig())
	d := dialProto(t, second, "/ws")
	d.cmd("sub 1 r " + epoch + " 1")
	if e, off := d.subscribed(1, "r", "epoch_changed"); e == epoch || off != 0 {
		t.Fatalf("after a restart: epoch %s offset %d", e, off)
	}
}

// Only framing faults close: a frame over max-message plus the line
// allowance gets 1009, and TCP closes after the close frame.
func TestProtocolFrameLimit(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxMessage = 100
	srv := startServer(t, cfg)
	c := dialProto(t, srv, "/ws/r")
	c.subscribed(0, "r", "live")
	line := "pub 1 r\n"
	c.cmd(line + strings.Repeat("a", 100)) // payload of exactly max-message
	c.msg("r", opText, strings.Repeat("a", 100))
	c.published(srv, 1, "r", 1)
	c.send(true, opText, make([]byte, 100+257+1))
	c.expectClose(1009)
}
