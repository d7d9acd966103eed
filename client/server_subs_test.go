package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/loopcast/loopcast/client"
	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
)

// A room the token's subs claim names is subscribed by the server; the
// client resumes it through a drop (?since=) without loss; the admin
// API's unsubscribe reaches OnError.
func TestServerSubscriptions(t *testing.T) {
	srv := startServer(t, func(c *server.Config) { c.JWTSecret = secret })
	gw := testutil.StartGateway(t, srv.Addr().String())
	token := func(context.Context) (string, error) {
		return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"exp": time.Now().Add(time.Hour).Unix(), "sub": "ana", "subs": []string{"user.ana"},
		}).SignedString([]byte(secret))
	}
	var mu sync.Mutex
	var got []string
	var errs []string
	c := client.Dial("ws://"+gw.Addr()+"/ws", client.Options{
		BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Token: token,
		OnServerSubscription: func(room string) client.Handler {
			return client.Handler{
				OnMessage: func(m client.Message) { mu.Lock(); got = append(got, room+" "+string(m.Data)); mu.Unlock() },
				OnError: func(err error) {
					var e *client.Error
					if errors.As(err, &e) {
						mu.Lock()
						errs = append(errs, e.Code)
						mu.Unlock()
					}
				},
			}
		},
	})
	defer c.Close()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	testutil.WaitFor(t, testutil.Patience, "the personal room", func() bool { return srv.Occupancy("user.ana") == 1 })
	publish := func(i int) {
		if _, err := srv.Publish("user.ana", server.Text, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	publish(1)
	testutil.WaitFor(t, testutil.Patience, "m1", func() bool { return count() == 1 })
	gw.DropAll()
	publish(2)
	publish(3)
	testutil.WaitFor(t, testutil.Patience, "m2 and m3 after the reconnect", func() bool { return count() == 3 })
	mu.Lock()
	if fmt.Sprint(got) != "[user.ana m1 user.ana m2 user.ana m3]" {
		t.Fatalf("got %v", got)
	}
	mu.Unlock()

	if n, err := srv.UnsubscribeUser("ana", "user.ana"); err != nil || n != 1 {
		t.Fatalf("UnsubscribeUser: %d %v", n, err)
	}
	testutil.WaitFor(t, testutil.Patience, "the unsubscription", func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) == 1 })
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(errs) != "[unsubscribed]" {
		t.Fatalf("OnError: %v", errs)
	}
}

// "err 0" (here: the token names a room twice, so the server's second
// sub of it is refused) is not pinned on a server subscription: the
// room keeps its messages.
func TestErrZeroKeepsServerSubscriptions(t *testing.T) {
	srv := startServer(t, func(c *server.Config) { c.JWTSecret = secret })
	token := func(context.Context) (string, error) {
		return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"exp": time.Now().Add(time.Hour).Unix(), "sub": "ana", "subs": []string{"user.ana", "team.x", "user.ana"},
		}).SignedString([]byte(secret))
	}
	var mu sync.Mutex
	var got, errs []string
	c := client.Dial("ws://"+srv.Addr().String()+"/ws", client.Options{Token: token,
		OnServerSubscription: func(room string) client.Handler {
			return client.Handler{
				OnMessage: func(m client.Message) { mu.Lock(); got = append(got, room); mu.Unlock() },
				OnError:   func(err error) { mu.Lock(); errs = append(errs, room+": "+err.Error()); mu.Unlock() },
			}
		}})
	defer c.Close()
	testutil.WaitFor(t, testutil.Patience, "both rooms", func() bool {
		return srv.Occupancy("user.ana") == 1 && srv.Occupancy("team.x") == 1
	})
	for _, room := range []string{"user.ana", "team.x"} {
		if _, err := srv.Publish(room, server.Text, []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, testutil.Patience, "a message of each room", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 0 {
		t.Fatalf("an err 0 was pinned on a server subscription: %v", errs)
	}
}
