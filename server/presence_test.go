package server_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/loopcast/loopcast/server"
)

// Presence, written from PROTOCOL.md: "presence" lists a presence
// room's users (one entry per token sub, however many connections);
// "watch … presence" answers the list and sends "pres" frames with the
// joins and leaves, batched per room per second and de-duplicated.

const presenceSecret = "0123456789abcdef0123456789abcdef"

func presenceConfig() server.Config {
	cfg := testConfig()
	cfg.EventLoops = 1 // frames of one loop keep their order across connections
	cfg.JWTSecret = presenceSecret
	cfg.PresenceRooms = []string{"chat*"}
	cfg.PresenceGrace = 0 // a leave is announced at the next interval
	cfg.SubscribeRate = 0
	return cfg
}

// userToken is a token naming user (with info, when not nil).
func userToken(t testing.TB, user string, info any) string {
	t.Helper()
	claims := jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "sub": user}
	if info != nil {
		claims["info"] = info
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(presenceSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dialUser opens a loopcast.v1 connection as user.
func dialUser(t testing.TB, srv *server.Server, user string, info any) v1 {
	t.Helper()
	return v1{dialV1(t, srv.Addr().String(), "/ws", "loopcast.v1", "loopcast.v1", "Authorization: Bearer "+userToken(t, user, info))}
}

type presenceUser struct {
	User string          `json:"user"`
	Info json.RawMessage `json:"info"`
}

// presenceReply reads "<op> <id> <room> [presence ]<total> <listed>\n[…]".
func (c v1) presenceReply(head string) (total, listed string, users []presenceUser) {
	c.t.Helper()
	f := c.mustFrame()
	line, body, ok := strings.Cut(string(f.payload), "\n")
	rest, okHead := strings.CutPrefix(line, head+" ")
	fields := strings.Fields(rest)
	if !ok || !okHead || len(fields) != 2 || json.Unmarshal([]byte(body), &users) != nil {
		c.t.Fatalf("got %v, want %s <total> <listed>\\n<list>", f, head)
	}
	return fields[0], fields[1], users
}

// presEvent is one "pres" frame.
type presEvent struct {
	Join  []presenceUser `json:"join"`
	Leave []string       `json:"leave"`
}

func (c v1) pres(room string) presEvent {
	c.t.Helper()
	f := c.mustFrame()
	line, body, ok := strings.Cut(string(f.payload), "\n")
	var ev presEvent
	if !ok || line != "pres "+room || json.Unmarshal([]byte(body), &ev) != nil || ev.Join == nil || ev.Leave == nil {
		c.t.Fatalf("got %v, want pres %s\\n{join, leave}", f, room)
	}
	return ev
}

// presUntil applies pres frames to set until it equals want (users,
// sorted by the caller's eyes), failing on a join of a listed user or a
// leave of an unlisted one: joins and leaves are de-duplicated.
func (c v1) presUntil(room string, set map[string]string, want ...string) {
	c.t.Helper()
	same := func() bool {
		if len(set) != len(want) {
			return false
		}
		for _, u := range want {
			if _, ok := set[u]; !ok {
				return false
			}
		}
		return true
	}
	for !same() {
		ev := c.pres(room)
		if len(ev.Join)+len(ev.Leave) == 0 {
			c.t.Fatalf("an empty pres frame")
		}
		for _, j := range ev.Join {
			if _, ok := set[j.User]; ok {
				c.t.Fatalf("join of %s, who is listed already (%v)", j.User, set)
			}
			set[j.User] = string(j.Info)
		}
		for _, u := range ev.Leave {
			if _, ok := set[u]; !ok {
				c.t.Fatalf("leave of %s, who is not listed (%v)", u, set)
			}
			delete(set, u)
		}
	}
}

func TestPresenceOneInstance(t *testing.T) {
	t.Parallel()
	srv := startServer(t, presenceConfig())
	w := dialUser(t, srv, "watcher", nil)
	w.cmd("presence 1 chat")
	if total, listed, users := w.presenceReply("presence 1 chat"); total != "0" || listed != "0" || len(users) != 0 {
		t.Fatalf("empty room: %s %s %v", total, listed, users)
	}
	w.cmd("watch 2 chat presence")
	if total, _, _ := w.presenceReply("watch 2 chat presence"); total != "0" {
		t.Fatalf("watch reply total %s", total)
	}

	// ana twice (one user), bo as a raw member.
	ana1, ana2 := dialUser(t, srv, "ana", map[string]string{"name": "Ana"}), dialUser(t, srv, "ana", map[string]string{"name": "Ana"})
	for _, c := range []v1{ana1, ana2} {
		c.cmd("sub 1 chat")
		c.subscribed(1, "chat", "live")
	}
	dialWS(t, tcpAddr(srv.Addr().String()), "/ws/chat?token="+userToken(t, "bo", nil))
	set := map[string]string{}
	w.presUntil("chat", set, "ana", "bo")
	if set["ana"] != `{"name":"Ana"}` || set["bo"] != "" {
		t.Fatalf("infos %v", set)
	}
	w.cmd("presence 3 chat")
	total, listed, users := w.presenceReply("presence 3 chat")
	if total != "2" || listed != "2" || len(users) != 2 || users[0].User != "ana" || string(users[0].Info) != `{"name":"Ana"}` || users[1].User != "bo" || users[1].Info != nil {
		t.Fatalf("presence: %s %s %+v", total, listed, users)
	}
	if n := srv.Occupancy("chat"); n != 3 {
		t.Fatalf("occupancy %d, want 3 connections", n)
	}
	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/rooms/chat", nil))
	var info server.RoomInfo
	if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil || info.Occupancy != 3 || info.Presence == nil ||
		info.Presence.Total != 2 || len(info.Presence.Users) != 2 || info.Presence.Users[0].User != "ana" || string(info.Presence.Users[0].Info) != `{"name":"Ana"}` {
		t.Fatalf("GET /rooms/chat: %s (%v)", rec.Body, err)
	}
	if srv.Presence("news") != nil {
		t.Fatal("Presence of a room that is not a presence room")
	}

	// ana closes one of two connections: still listed, nothing said.
	// Then she unsubscribes the other: her leave is the next event.
	ana1.conn.Close()
	ana2.cmd("unsub 2 chat")
	ana2.expect("unsub 2 chat")
	if ev := w.pres("chat"); len(ev.Join) != 0 || len(ev.Leave) != 1 || ev.Leave[0] != "ana" {
		t.Fatalf("after ana left: %+v", ev)
	}

	// Errors.
	w.cmd("presence 4 news")
	w.expectErr(4, "presence_off")
	w.cmd("watch 5 news presence")
	w.expectErr(5, "presence_off")
	w.cmd("watch 6 chat presence")
	w.expectErr(6, "already_watching")
	w.cmd("unwatch 7 chat presence")
	w.expect("unwatch 7 chat presence")
	w.cmd("unwatch 8 chat presence")
	w.expectErr(8, "not_watching")
}

// A user who drops and comes back within the grace (a gateway drop) is
// neither a leave nor a join.
func TestPresenceReconnectIsNotALeave(t *testing.T) {
	t.Parallel()
	cfg := presenceConfig()
	cfg.PresenceGrace = time.Hour
	srv := startServer(t, cfg)
	w := dialUser(t, srv, "watcher", nil)
	w.cmd("watch 1 chat presence")
	w.presenceReply("watch 1 chat presence")
	ana := dialUser(t, srv, "ana", nil)
	ana.cmd("sub 1 chat")
	ana.subscribed(1, "chat", "live")
	set := map[string]string{}
	w.presUntil("chat", set, "ana")

	for range 3 {
		ana.conn.Close() // dropped
		ana = dialUser(t, srv, "ana", nil)
		ana.cmd("sub 1 chat")
		ana.subscribed(1, "chat", "live")
	}
	ana.conn.Close() // and gone, within the grace: still listed

	cy := dialUser(t, srv, "cy", nil)
	cy.cmd("sub 1 chat")
	cy.subscribed(1, "chat", "live")
	if ev := w.pres("chat"); len(ev.Join) != 1 || ev.Join[0].User != "cy" || len(ev.Leave) != 0 {
		t.Fatalf("the next event after ana's reconnects: %+v, want only cy's join", ev)
	}
	w.cmd("presence 2 chat")
	if total, _, _ := w.presenceReply("presence 2 chat"); total != "2" {
		t.Fatalf("total %s, want ana (in her grace) and cy", total)
	}
}

func TestPresenceLimitsAndTokens(t *testing.T) {
	t.Parallel()
	cfg := presenceConfig()
	cfg.PresenceMaxRooms = 1
	cfg.PresenceMaxList = 2
	srv := startServer(t, cfg)
	ana := dialUser(t, srv, "ana", nil)
	ana.cmd("sub 1 chat")
	ana.subscribed(1, "chat", "live")
	ana.cmd("sub 2 chat-2")
	ana.expectErr(2, "too_many_presence_rooms")
	ana.cmd("sub 3 news") // not a presence room: no limit
	ana.subscribed(3, "news", "live")

	for _, u := range []string{"bo", "cy"} {
		c := dialUser(t, srv, u, nil)
		c.cmd("sub 1 chat")
		c.subscribed(1, "chat", "live")
	}
	ana.cmd("presence 4 chat")
	if total, listed, users := ana.presenceReply("presence 4 chat"); total != "3" || listed != "2" || len(users) != 2 || users[0].User != "ana" || users[1].User != "bo" {
		t.Fatalf("capped list: %s %s %+v", total, listed, users)
	}

	// Tokens presence cannot carry are refused at the upgrade.
	for name, tok := range map[string]string{
		"info over presence-max-info": userToken(t, "dee", strings.Repeat("x", 600)),
		"sub with a NUL":              userToken(t, "d\x00e", nil),
		"sub over 256 bytes":          userToken(t, strings.Repeat("u", 257), nil),
	} {
		c := dialRaw(t, srv.Addr())
		c.write([]byte(strings.TrimSuffix(upgradeRequest("/ws", newKey()), "\r\n") + "Sec-WebSocket-Protocol: loopcast.v1\r\nAuthorization: Bearer " + tok + "\r\n\r\n"))
		if resp := c.readResponse(false); resp.status != 401 {
			t.Errorf("%s: %d, want 401", name, resp.status)
		}
	}
}
