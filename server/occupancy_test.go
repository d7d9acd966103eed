package server_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
)

// Occupancy, written from PROTOCOL.md: "occupancy" answers the count
// now; "watch … occupancy" answers it and sends "occ <room> <count>"
// when it changes, at most once per second per room and only when it
// changed; "unwatch" stops them.

// occ reads "occ" frames of room until one says want, checking that
// each says another count than the one before (updates only when the
// count changed) and that counts move monotonically towards want.
func (c v1) occUntil(room string, from, want int64) {
	c.t.Helper()
	prev := from
	for prev != want {
		f := c.mustFrame()
		var n int64
		line := string(f.payload)
		rest, ok := strings.CutPrefix(line, "occ "+room+" ")
		if ok {
			var err error
			n, err = strconv.ParseInt(rest, 10, 64)
			ok = err == nil
		}
		if f.op != opText || !ok {
			c.t.Fatalf("got %v, want occ %s <count>", f, room)
		}
		if n == prev {
			c.t.Fatalf("occ %s %d repeats the count before it", room, n)
		}
		if (want > from && (n < prev || n > want)) || (want < from && (n > prev || n < want)) {
			c.t.Fatalf("occ %s %d: not between %d and %d", room, n, prev, want)
		}
		prev = n
	}
}

func TestOccupancyOneInstance(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.EventLoops = 1 // frames of one loop keep their order across connections
	srv := startServer(t, cfg)
	addr := srv.Addr().String()

	w := dialProto(t, srv, "/ws")
	w.cmd("occupancy 1 r")
	w.expect("occupancy 1 r 0")
	w.cmd("watch 2 r occupancy")
	w.expect("watch 2 r occupancy 0")

	// Raw members and loopcast.v1 subscribers count alike; a watcher is
	// not a member.
	var members []*rawClient
	for range 3 {
		members = append(members, dialWS(t, tcpAddr(addr), "/ws/r"))
	}
	s := dialProto(t, srv, "/ws")
	s.cmd("sub 1 r")
	s.subscribed(1, "r", "live")
	w.occUntil("r", 0, 4)
	w.cmd("occupancy 3 r")
	w.expect("occupancy 3 r 4")
	if got := srv.Occupancy("r"); got != 4 {
		t.Fatalf("Server.Occupancy = %d, want 4", got)
	}

	// A second watcher on another room sees nothing of r.
	w2 := dialProto(t, srv, "/ws")
	w2.cmd("watch 1 r occupancy")
	w2.expect("watch 1 r occupancy 4")

	members[0].conn.Close()
	members[1].conn.Close()
	w.occUntil("r", 4, 2)
	w2.occUntil("r", 4, 2)

	// After unwatch no occ frame reaches w: w2 sees the next change, and
	// w's next frame is the answer to a command sent after that.
	w.cmd("unwatch 4 r occupancy")
	w.expect("unwatch 4 r occupancy")
	s.cmd("unsub 2 r")
	s.expect("unsub 2 r")
	w2.occUntil("r", 2, 1)
	w.cmd("occupancy 5 r")
	w.expect("occupancy 5 r 1")

	// Errors.
	w.cmd("watch 6 r occupancy")
	w.expect("watch 6 r occupancy 1")
	w.cmd("watch 7 r occupancy")
	w.expectErr(7, "already_watching")
	w.cmd("unwatch 8 other occupancy")
	w.expectErr(8, "not_watching")
	w.cmd("watch 9 r everything")
	w.expectErr(9, "bad_command")
	w.cmd("watch 10 r")
	w.expectErr(10, "bad_command")
	w.cmd("occupancy 11")
	w.expectErr(11, "bad_command")
	w.cmd("occupancy 12 r extra")
	w.expectErr(12, "bad_command")
	w.cmd("occupancy 13 bad/room")
	w.expectErr(13, "bad_room")
	w.cmd("occupancy 14 r\npayload")
	w.expectErr(14, "bad_command")

	// Closing every watcher empties the registry.
	if n := srv.WatchedRooms(); n != 1 {
		t.Fatalf("watched rooms %d, want 1", n)
	}
	w.conn.Close()
	w2.conn.Close()
	testutil.WaitFor(t, testutil.Patience, "no watched room", func() bool { return srv.WatchedRooms() == 0 })
}

func TestOccupancyWatchLimitAndToken(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxSubscriptions = 2
	cfg.SubscribeRate = 0 // the bucket would be MaxSubscriptions deep
	cfg.JWTSecret = "0123456789abcdef0123456789abcdef"
	srv := startServer(t, cfg)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"exp": time.Now().Add(time.Hour).Unix(), "rooms": []string{"feed-*"},
	}).SignedString([]byte(cfg.JWTSecret))
	if err != nil {
		t.Fatal(err)
	}
	c := v1{dialV1(t, srv.Addr().String(), "/ws", "loopcast.v1", "loopcast.v1", "Authorization: Bearer "+tok)}
	c.cmd("occupancy 1 admin")
	c.expectErr(1, "forbidden")
	c.cmd("watch 2 admin occupancy")
	c.expectErr(2, "forbidden")
	c.cmd("watch 3 feed-a occupancy")
	c.expect("watch 3 feed-a occupancy 0")
	c.cmd("watch 4 feed-b occupancy")
	c.expect("watch 4 feed-b occupancy 0")
	c.cmd("watch 5 feed-c occupancy")
	c.expectErr(5, "too_many_watches")
	c.cmd("unwatch 6 feed-a occupancy")
	c.expect("unwatch 6 feed-a occupancy")
	c.cmd("watch 7 feed-c occupancy")
	c.expect("watch 7 feed-c occupancy 0")
	// The token still governs sub: watching is not subscribing.
	c.cmd("sub 8 feed-c")
	c.subscribed(8, "feed-c", "live")
	c.cmd("occupancy 9 feed-c")
	c.expect("occupancy 9 feed-c 1")
}

// Many watchers of many rooms across loops: each sees its room's final
// count, and nothing of rooms it does not watch.
func TestOccupancyManyRooms(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	addr := srv.Addr().String()
	const rooms = 20
	watchers := make([]v1, rooms)
	for i := range watchers {
		watchers[i] = dialProto(t, srv, "/ws")
		watchers[i].cmd(fmt.Sprintf("watch 1 room-%d occupancy", i))
		watchers[i].expect(fmt.Sprintf("watch 1 room-%d occupancy 0", i))
	}
	for i := range rooms {
		for range i % 4 {
			dialWS(t, tcpAddr(addr), fmt.Sprintf("/ws/room-%d", i))
		}
	}
	for i, w := range watchers {
		if i%4 != 0 {
			w.occUntil(fmt.Sprintf("room-%d", i), 0, int64(i%4))
		}
	}
}

// The admin API answers a room's occupancy, one room or a list.
func TestOccupancyAdmin(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	addr := srv.Addr().String()
	for range 2 {
		dialWS(t, tcpAddr(addr), "/ws/a")
	}
	get := func(path string) (int, string) {
		req := httptest.NewRequest("GET", path, nil)
		rec := httptest.NewRecorder()
		srv.AdminHandler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	testutil.WaitFor(t, testutil.Patience, "two members of a", func() bool { return srv.Occupancy("a") == 2 })
	code, body := get("/rooms/a")
	var one server.RoomInfo
	if err := json.Unmarshal([]byte(body), &one); code != 200 || err != nil || one.Name != "a" || one.Members != 2 || one.Occupancy != 2 || len(one.Epoch) != 16 {
		t.Fatalf("GET /rooms/a: %d %s (%v)", code, body, err)
	}
	code, body = get("/rooms?names=a,nobody")
	var list struct {
		Count int               `json:"count"`
		Rooms []server.RoomInfo `json:"rooms"`
	}
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || list.Count != 2 ||
		list.Rooms[0].Occupancy != 2 || list.Rooms[1].Name != "nobody" || list.Rooms[1].Occupancy != 0 || list.Rooms[1].Epoch != "" {
		t.Fatalf("GET /rooms?names=a,nobody: %d %s (%v)", code, body, err)
	}
	for _, path := range []string{"/rooms/..", "/rooms/a%2Fb", "/rooms?names=a,,b", "/rooms?names=" + strings.Repeat("a,", 1000) + "a"} {
		if code, body := get(path); code != 400 {
			t.Errorf("GET %s: %d %s, want 400", path, code, body)
		}
	}
}

// Whatever the join rate, an instance sends one cluster message per
// interval, with its room counts and its presence users in it.
func TestOneClusterMessagePerInterval(t *testing.T) {
	t.Parallel()
	cfg := presenceConfig()
	srv := startServer(t, cfg)
	var messages [][]byte
	share := func(b []byte) error { messages = append(messages, append([]byte(nil), b...)); return nil }
	for tick := range 3 {
		for i := range 50 {
			c := dialUser(t, srv, fmt.Sprintf("u%d-%d", tick, i), nil)
			c.cmd(fmt.Sprintf("sub 1 chat-%d", i%7))
			c.subscribed(1, fmt.Sprintf("chat-%d", i%7), "live")
		}
		srv.OccupancyTick(share)
	}
	if len(messages) != 3 {
		t.Fatalf("%d cluster messages for 3 intervals, want 3", len(messages))
	}
	for i, m := range messages {
		if kinds := server.EnvelopeKinds(m); kinds != "OP" {
			t.Fatalf("message %d holds batches %q, want O (rooms) and P (users)", i, kinds)
		}
	}
}
