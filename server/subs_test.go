package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/loopcast/loopcast/server"
)

// A token's subs claim subscribes a loopcast.v1 connection to its
// personal rooms at connect ("sub 0 …"), whatever its rooms claim; the
// client resumes them with ?since=room:epoch:offset.
func TestTokenSubs(t *testing.T) {
	t.Parallel()
	srv := startServer(t, presenceConfig())
	tok := func(subs ...string) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"exp": time.Now().Add(time.Hour).Unix(), "sub": "ana", "rooms": []string{"feed"}, "subs": subs,
		}).SignedString([]byte(presenceSecret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dial := func(query string) v1 {
		return v1{dialV1(t, srv.Addr().String(), "/ws"+query, "loopcast.v1", "loopcast.v1", "Authorization: Bearer "+tok("user.ana"))}
	}
	c := dial("")
	epoch, off := c.subscribed(0, "user.ana", "live")
	if _, err := srv.Publish("user.ana", server.Text, []byte("one")); err != nil {
		t.Fatal(err)
	}
	_, last := c.msg("user.ana", opText, "one")
	c.conn.Close()
	for _, m := range []string{"two", "three"} {
		if _, err := srv.Publish("user.ana", server.Text, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	c = dial(fmt.Sprintf("?since=user.ana:%s:%d", epoch, last))
	if e, o := c.subscribed(0, "user.ana", "recovered"); e != epoch || o != off+3 {
		t.Fatalf("resumed at %s %d, want %s %d", e, o, epoch, off+3)
	}
	c.msg("user.ana", opText, "two")
	c.msg("user.ana", opText, "three")
	// The rooms claim still governs what the client asks for itself.
	c.cmd("sub 1 user.bo")
	c.expectErr(1, "forbidden")

	for name, bad := range map[string]string{
		"no offset": "?since=user.ana:" + epoch,
		"bad epoch": "?since=user.ana:XYZ:1",
		"bad room":  "?since=a%20b:" + epoch + ":1",
	} {
		r := dialRaw(t, srv.Addr())
		r.write([]byte(strings.TrimSuffix(upgradeRequest("/ws"+bad, newKey()), "\r\n") + "Sec-WebSocket-Protocol: loopcast.v1\r\nAuthorization: Bearer " + tok("user.ana") + "\r\n\r\n"))
		if resp := r.readResponse(false); resp.status != 400 {
			t.Errorf("%s: %d, want 400", name, resp.status)
		}
	}
	r := dialRaw(t, srv.Addr())
	r.write([]byte(strings.TrimSuffix(upgradeRequest("/ws", newKey()), "\r\n") + "Sec-WebSocket-Protocol: loopcast.v1\r\nAuthorization: Bearer " + tok("a b") + "\r\n\r\n"))
	if resp := r.readResponse(false); resp.status != 401 {
		t.Errorf("subs with an invalid room: %d, want 401", resp.status)
	}
}
