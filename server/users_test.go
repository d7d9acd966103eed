package server_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/server"
)

// The user API: every connection of a token's sub, subscribed to a room,
// unsubscribed from it, disconnected with a code; other users untouched.
func TestUserAPI(t *testing.T) {
	t.Parallel()
	srv := startServer(t, presenceConfig())
	ana1, ana2, bo := dialUser(t, srv, "ana", nil), dialUser(t, srv, "ana", nil), dialUser(t, srv, "bo", nil)
	anaRaw := dialWS(t, tcpAddr(srv.Addr().String()), "/ws/lobby?token="+userToken(t, "ana", nil))

	n, err := srv.SubscribeUser("ana", "news")
	if err != nil || n != 2 {
		t.Fatalf("SubscribeUser: %d %v, want ana's two loopcast.v1 connections", n, err)
	}
	for _, c := range []v1{ana1, ana2} {
		c.subscribed(0, "news", "live")
	}
	if _, err := srv.Publish("news", server.Text, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []v1{ana1, ana2} {
		c.msg("news", opText, "hi")
	}
	if n, _ := srv.SubscribeUser("ana", "news"); n != 0 {
		t.Fatalf("SubscribeUser again: %d, want 0 (subscribed already)", n)
	}

	if n, err := srv.UnsubscribeUser("ana", "news"); err != nil || n != 2 {
		t.Fatalf("UnsubscribeUser: %d %v", n, err)
	}
	for _, c := range []v1{ana1, ana2} {
		c.expect("unsub 0 news")
	}
	// A raw member's room is its connection: unsubscribed is closed.
	if n, _ := srv.UnsubscribeUser("ana", "lobby"); n != 1 {
		t.Fatalf("UnsubscribeUser of the raw member: %d", n)
	}
	anaRaw.expectClose(server.DefaultDisconnectCode)

	if _, err := srv.DisconnectUser("ana", 1006, ""); err == nil {
		t.Fatal("close code 1006 accepted")
	}
	if _, err := srv.DisconnectUser("ana", 4001, strings.Repeat("r", 124)); err == nil {
		t.Fatal("a 124-byte reason accepted")
	}
	if n, err := srv.DisconnectUser("ana", 4001, "bye"); err != nil || n != 2 {
		t.Fatalf("DisconnectUser: %d %v", n, err)
	}
	for _, c := range []v1{ana1, ana2} {
		f := c.mustFrame()
		if f.op != opClose || f.closeCode() != 4001 || string(f.payload[2:]) != "bye" {
			t.Fatalf("got %v, want close 4001 bye", f)
		}
		c.write(frameBytes(true, opClose, f.payload[:2]))
		c.expectEOF()
	}
	// bo is untouched.
	bo.cmd("occupancy 1 news")
	bo.expect("occupancy 1 news 0")

	// The admin routes.
	post := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("POST", path, strings.NewReader("m")))
		return rec.Code, rec.Body.String()
	}
	for path, want := range map[string]int{
		"/users/bo/subscribe/..":                            400,
		"/users/bo/subscribe/a%2Fb":                         400,
		"/users/bo/disconnect?code=1006":                    400,
		"/users/bo/disconnect?code=x":                       400,
		"/users/nobody/disconnect":                          200,
		"/publish?rooms=":                                   400,
		"/publish?rooms=" + strings.Repeat("a,", 100) + "a": 400,
	} {
		if code, body := post(path); code != want {
			t.Errorf("POST %s: %d %s, want %d", path, code, body, want)
		}
	}
	if code, body := post("/users/bo/subscribe/feed"); code != 200 || body != `{"connections":1}`+"\n" {
		t.Fatalf("subscribe bo: %d %s", code, body)
	}
	bo.subscribed(0, "feed", "live")
	code, body := post("/publish?rooms=feed,other,bad%2Froom")
	var res struct {
		Rooms map[string]struct {
			Members int `json:"members"`
			Offset  int `json:"offset"`
			Status  int `json:"status"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal([]byte(body), &res); code != 207 || err != nil || res.Rooms["feed"].Members != 1 || res.Rooms["feed"].Status != 0 ||
		res.Rooms["other"].Offset != 1 || res.Rooms["bad/room"].Status != 400 {
		t.Fatalf("publish to many: %d %s", code, body)
	}
	bo.msg("feed", opBinary, "m")
	if code, body := post("/users/bo/disconnect?code=4002&reason=moved"); code != 200 || body != `{"connections":1}`+"\n" {
		t.Fatalf("disconnect bo: %d %s", code, body)
	}
	bo.expectClose(4002)
}
