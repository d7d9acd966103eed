package client_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/loopcast/loopcast/client"
	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
)

const secret = "0123456789abcdef0123456789abcdef"

func tokenFor(user string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"exp": time.Now().Add(time.Hour).Unix(), "sub": user, "info": map[string]string{"name": user},
		}).SignedString([]byte(secret))
	}
}

// WatchPresence reports the users when the watch is answered, each
// change, and after a reconnect what changed meanwhile; Presence lists
// once.
func TestPresence(t *testing.T) {
	srv := startServer(t, func(c *server.Config) {
		c.JWTSecret = secret
		c.PresenceRooms = []string{"chat"}
		c.PresenceGrace = 0
	})
	gw := testutil.StartGateway(t, srv.Addr().String())
	opts := func(user string) client.Options {
		return client.Options{BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Token: tokenFor(user)}
	}
	watcher := client.Dial("ws://"+gw.Addr()+"/ws", opts("watcher"))
	defer watcher.Close()
	var mu sync.Mutex
	var changes []client.PresenceChange
	users := func() []string {
		mu.Lock()
		defer mu.Unlock()
		if len(changes) == 0 {
			return nil
		}
		var out []string
		for _, u := range changes[len(changes)-1].Users {
			out = append(out, u.User)
		}
		return out
	}
	stop := watcher.WatchPresence("chat", func(c client.PresenceChange) { mu.Lock(); changes = append(changes, c); mu.Unlock() })
	defer stop()
	testutil.WaitFor(t, testutil.Patience, "the watch's answer", func() bool { mu.Lock(); defer mu.Unlock(); return len(changes) == 1 })

	ana := client.Dial("ws://"+srv.Addr().String()+"/ws", opts("ana"))
	defer ana.Close()
	ana.Subscribe("chat", client.Handler{})
	testutil.WaitFor(t, testutil.Patience, "ana listed", func() bool { return slices.Equal(users(), []string{"ana"}) })
	mu.Lock()
	last := changes[len(changes)-1]
	mu.Unlock()
	if len(last.Joined) != 1 || last.Joined[0].User != "ana" || string(last.Joined[0].Info) != `{"name":"ana"}` {
		t.Fatalf("ana's join: %+v", last)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	if total, list, err := watcher.Presence(ctx, "chat"); err != nil || total != 1 || len(list) != 1 || list[0].User != "ana" {
		t.Fatalf("Presence: %d %v %v", total, list, err)
	}

	// The watcher's connection drops; meanwhile bo joins and ana leaves:
	// the reconnect's answer reports both.
	gw.DropAll()
	bo := client.Dial("ws://"+srv.Addr().String()+"/ws", opts("bo"))
	defer bo.Close()
	bo.Subscribe("chat", client.Handler{})
	ana.Close()
	testutil.WaitFor(t, testutil.Patience, "bo alone", func() bool { return slices.Equal(users(), []string{"bo"}) })
	mu.Lock()
	var joined, left []string
	for _, c := range changes[1:] {
		for _, u := range c.Joined {
			joined = append(joined, u.User)
		}
		left = append(left, c.Left...)
	}
	mu.Unlock()
	if !slices.Equal(joined, []string{"ana", "bo"}) || !slices.Equal(left, []string{"ana"}) {
		t.Fatalf("joined %v, left %v; want [ana bo] and [ana]", joined, left)
	}
	if _, _, err := watcher.Presence(ctx, "news"); !isCode(err, "presence_off") {
		t.Fatalf("Presence of news: %v", err)
	}
}
