package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/panjf2000/gnet/v2"
)

// Regression: a pres frame's write that fails closes its connection at
// once, which takes the watcher out of the list being walked; the walk
// must go on over the others (it dereferenced a cleared slot and the
// process died). Two watchers on one loop; the first's socket is reset
// while the loop is held; a frame big enough to be written at once goes
// out: the second watcher gets it.
func TestPresenceWatcherClosedMidSend(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	cfg := DefaultConfig()
	cfg.Addr, cfg.AdminAddr, cfg.EventLoops, cfg.PublishRate, cfg.SubscribeRate = "127.0.0.1:0", "", 1, 0, 0
	cfg.JWTSecret = secret
	cfg.PresenceRooms = []string{"chat"}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dial := func(user string) *websocket.Conn {
		tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "sub": user}).SignedString([]byte(secret))
		c, _, err := (&websocket.Dialer{Subprotocols: []string{"loopcast.v1"}}).Dial("ws://"+s.Addr().String()+"/ws", map[string][]string{"Authorization": {"Bearer " + tok}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.WriteMessage(websocket.TextMessage, []byte("watch 1 chat presence")); err != nil {
			t.Fatal(err)
		}
		if _, m, err := c.ReadMessage(); err != nil || !strings.HasPrefix(string(m), "watch 1 chat presence 0 0") {
			t.Fatalf("watch reply %q %v", m, err)
		}
		return c
	}
	a, b := dial("wa"), dial("wb")
	l := s.loopList()[0]
	held, release := make(chan struct{}), make(chan struct{})
	_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error { close(held); <-release; return nil }))
	<-held
	raw := a.UnderlyingConn().(*net.TCPConn)
	_ = raw.SetLinger(0)
	_ = raw.Close()                   // RST, unread by the held loop
	time.Sleep(50 * time.Millisecond) // let the RST arrive (not an assertion)
	info := []byte(`"` + strings.Repeat("x", 400) + `"`)
	for i := range 300 {
		s.pres.join("chat", fmt.Sprintf("user-%04d", i), info)
	}
	s.occ.tickWith(time.Now().UnixNano(), nil) // queues the frame behind the held task
	close(release)
	_ = b.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, m, err := b.ReadMessage()
	if err != nil {
		t.Fatalf("the second watcher: %v", err)
	}
	line, body, _ := strings.Cut(string(m), "\n")
	var ev struct {
		Join []json.RawMessage `json:"join"`
	}
	if line != "pres chat" || json.Unmarshal([]byte(body), &ev) != nil || len(ev.Join) != 300 {
		t.Fatalf("the second watcher got %q…", m[:min(len(m), 60)])
	}
}
