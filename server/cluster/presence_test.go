package cluster_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	gorilla "github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/loopcast/loopcast/server"
)

const presenceSecret = "0123456789abcdef0123456789abcdef"

// dialAs opens a loopcast.v1 connection to addr as user, subscribed to
// room when room is not "".
func dialAs(t *testing.T, addr, user, room string) v1 {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "sub": user}).SignedString([]byte(presenceSecret))
	if err != nil {
		t.Fatal(err)
	}
	d := gorilla.Dialer{Subprotocols: []string{"loopcast.v1"}, HandshakeTimeout: 5 * time.Second}
	path := "/ws"
	if room != "" {
		path += "/" + room
	}
	c, _, err := d.Dial("ws://"+addr+path, http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	v := v1{c}
	if room != "" {
		v.subscribed(t, room)
	}
	return v
}

// presUntil applies "pres" frames to set until it holds exactly want;
// a join of a listed user or a leave of an unlisted one fails the test.
func (v v1) presUntil(t *testing.T, room string, set map[string]bool, want ...string) {
	t.Helper()
	for {
		have := make([]string, 0, len(set))
		for u := range set {
			have = append(have, u)
		}
		slices.Sort(have)
		slices.Sort(want)
		if slices.Equal(have, want) {
			return
		}
		ev := v.presEvent(t, room)
		for _, j := range ev.Join {
			if set[j.User] {
				t.Fatalf("join of %s, listed already (%v)", j.User, set)
			}
			set[j.User] = true
		}
		for _, u := range ev.Leave {
			if !set[u] {
				t.Fatalf("leave of %s, not listed (%v)", u, set)
			}
			delete(set, u)
		}
	}
}

type presEvent struct {
	Join []struct {
		User string `json:"user"`
	} `json:"join"`
	Leave []string `json:"leave"`
}

func (v v1) presEvent(t *testing.T, room string) presEvent {
	t.Helper()
	s := v.read(t)
	line, body, _ := strings.Cut(s, "\n")
	var ev presEvent
	if line != "pres "+room || json.Unmarshal([]byte(body), &ev) != nil {
		t.Fatalf("got %q, want pres %s", s, room)
	}
	return ev
}

// Presence across two instances, over core NATS and over JetStream: the
// list is the union of both; every socket of one instance reset and
// reconnected to the other is no leave and no join; an instance that
// dies takes its users off the list within the documented bound (the
// test waits for the event, it does not time it).
func TestPresenceAcrossInstances(t *testing.T) {
	for _, mode := range []string{"core", "jetstream"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			adjust := func(c *server.Config) {
				c.JWTSecret = presenceSecret
				c.PresenceRooms = []string{"chat"}
				c.PresenceGrace = time.Hour // every reconnect is within it
				c.SubscribeRate = 0
			}
			type inst struct {
				addr string
				kill func()
			}
			var a, b inst
			if mode == "core" {
				ns := runNATS(t, 0, 0)
				na, nb := startNode(t, natsURL(ns), adjust), startNode(t, natsURL(ns), adjust)
				a = inst{na.srv.Addr().String(), func() { na.close(t) }}
				b = inst{nb.srv.Addr().String(), func() { nb.close(t) }}
			} else {
				ns := runJetStream(t, 0, "")
				na := startJSNode(t, natsURL(ns), jetstream.MemoryStorage, adjust)
				nb := startJSNode(t, natsURL(ns), jetstream.MemoryStorage, adjust)
				a = inst{na.addr(), func() { na.close(t) }}
				b = inst{nb.addr(), func() { nb.close(t) }}
			}
			w := dialAs(t, a.addr, "watcher", "")
			w.send(t, "watch 1 chat presence")
			if got := w.read(t); got != "watch 1 chat presence 0 0\n[]" {
				t.Fatalf("watch reply %q", got)
			}
			onA := []v1{dialAs(t, a.addr, "ana", "chat"), dialAs(t, a.addr, "al", "chat")}
			dialAs(t, b.addr, "bo", "chat")
			set := map[string]bool{}
			w.presUntil(t, "chat", set, "ana", "al", "bo")

			// Every socket on a reset; each user reconnects to b.
			for i, c := range onA {
				c.c.Close()
				dialAs(t, b.addr, []string{"ana", "al"}[i], "chat")
			}
			dialAs(t, b.addr, "cy", "chat") // the marker
			if ev := w.presEvent(t, "chat"); len(ev.Join) != 1 || ev.Join[0].User != "cy" || len(ev.Leave) != 0 {
				t.Fatalf("after the reset: %+v, want only cy's join", ev)
			}
			set["cy"] = true

			// b dies: its users leave, except ana and al, whom a still
			// lists in their grace.
			b.kill()
			w.presUntil(t, "chat", set, "ana", "al")
		})
	}
}

// The user API acts on every instance: disconnecting a user on one
// closes its connections on the other.
func TestUserActionsAcrossInstances(t *testing.T) {
	t.Parallel()
	ns := runNATS(t, 0, 0)
	adjust := func(c *server.Config) { c.JWTSecret = presenceSecret; c.SubscribeRate = 0 }
	a, b := startNode(t, natsURL(ns), adjust), startNode(t, natsURL(ns), adjust)
	onB := dialAs(t, b.srv.Addr().String(), "ana", "")
	bo := dialAs(t, b.srv.Addr().String(), "bo", "")
	// Both instances listen to what the others share before a shares.
	waitFor(t, 10*time.Second, "both instances on loopcast.share", func() bool {
		return ns.GlobalAccount().Interest("loopcast.share") == 2
	})
	if n, err := a.srv.SubscribeUser("ana", "feed"); err != nil || n != 0 {
		t.Fatalf("SubscribeUser on a: %d %v (ana is on b only)", n, err)
	}
	if got := onB.read(t); !strings.HasPrefix(got, "sub 0 feed ") {
		t.Fatalf("ana on b: %q, want the server's sub 0 feed", got)
	}
	if _, err := a.srv.DisconnectUser("ana", 4003, "elsewhere"); err != nil {
		t.Fatal(err)
	}
	_ = onB.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := onB.c.ReadMessage()
	var ce *gorilla.CloseError
	if !errors.As(err, &ce) || ce.Code != 4003 || ce.Text != "elsewhere" {
		t.Fatalf("ana on b: %v, want close 4003 elsewhere", err)
	}
	bo.send(t, "occupancy 1 feed")
	if got := bo.read(t); got != "occupancy 1 feed 0" {
		t.Fatalf("bo: %q", got)
	}
}
