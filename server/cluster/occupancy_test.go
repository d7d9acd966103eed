package cluster_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
)

// occUntil reads "occ" frames of room until one says want; each must
// say another count than the one before it (an update only when the
// count changed).
func (v v1) occUntil(t *testing.T, room string, from, want int64) {
	t.Helper()
	prev := from
	for prev != want {
		line := v.read(t)
		rest, ok := strings.CutPrefix(line, "occ "+room+" ")
		n, err := strconv.ParseInt(rest, 10, 64)
		if !ok || err != nil {
			t.Fatalf("got %q, want occ %s <count>", line, room)
		}
		if n == prev {
			t.Fatalf("occ %s %d repeats the count before it", room, n)
		}
		prev = n
	}
}

// Occupancy across two instances, over core NATS and over JetStream:
// members on both count on both; an instance that stops (killed: it
// never says goodbye) stops counting within the documented bound, which
// the test does not time: it waits for the event.
func TestOccupancyAcrossInstances(t *testing.T) {
	for _, mode := range []string{"core", "jetstream"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			type inst struct {
				srv  *server.Server
				addr string
				kill func()
			}
			var a, b inst
			if mode == "core" {
				ns := runNATS(t, 0, 0)
				na, nb := startNode(t, natsURL(ns)), startNode(t, natsURL(ns))
				a = inst{na.srv, na.srv.Addr().String(), func() { na.close(t) }}
				b = inst{nb.srv, nb.srv.Addr().String(), func() { nb.close(t) }}
			} else {
				ns := runJetStream(t, 0, "")
				na := startJSNode(t, natsURL(ns), jetstream.MemoryStorage)
				nb := startJSNode(t, natsURL(ns), jetstream.MemoryStorage)
				a = inst{na.srv, na.addr(), func() { na.close(t) }}
				b = inst{nb.srv, nb.addr(), func() { nb.close(t) }}
			}
			w := dialV1(t, a.addr, "")
			w.send(t, "watch 1 lobby occupancy")
			if got := w.read(t); got != "watch 1 lobby occupancy 0" {
				t.Fatalf("watch reply %q", got)
			}
			for range 3 {
				dialV1(t, a.addr, "lobby").subscribed(t, "lobby")
			}
			for range 2 {
				dialV1(t, b.addr, "lobby").subscribed(t, "lobby")
			}
			w.occUntil(t, "lobby", 0, 5)
			testutil.WaitFor(t, testutil.Patience, "both instances count 5", func() bool {
				return a.srv.Occupancy("lobby") == 5 && b.srv.Occupancy("lobby") == 5
			})
			if ri := a.srv.Room("lobby"); ri.Members != 3 || ri.Occupancy != 5 {
				t.Fatalf("a's room info %+v, want 3 members here and 5 in all", ri)
			}
			if ri := b.srv.Room("lobby"); ri.Members != 2 || ri.Occupancy != 5 {
				t.Fatalf("b's room info %+v, want 2 members here and 5 in all", ri)
			}
			// A watcher on the other instance gets the same total.
			wb := dialV1(t, b.addr, "")
			wb.send(t, "occupancy 2 lobby")
			if got := wb.read(t); got != "occupancy 2 lobby 5" {
				t.Fatalf("occupancy on b: %q", got)
			}

			b.kill()
			w.occUntil(t, "lobby", 5, 3)
			if got := a.srv.Occupancy("lobby"); got != 3 {
				t.Fatalf("a counts %d after b stopped, want 3", got)
			}
		})
	}
}
