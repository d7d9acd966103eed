package client_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopcast/loopcast/client"
	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
)

// WatchOccupancy reports the count when the watch is answered, each
// change, and again after a reconnect; Occupancy asks once; stop ends
// the watch on the server.
func TestOccupancy(t *testing.T) {
	srv := startServer(t)
	gw := testutil.StartGateway(t, srv.Addr().String())
	opts := client.Options{BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
	watcher := client.Dial("ws://"+gw.Addr()+"/ws", opts)
	defer watcher.Close()
	var mu sync.Mutex
	var seen []int64
	last := func() int64 {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return -1
		}
		return seen[len(seen)-1]
	}
	stop := watcher.WatchOccupancy("lobby", func(n int64) { mu.Lock(); seen = append(seen, n); mu.Unlock() })
	testutil.WaitFor(t, testutil.Patience, "the watch's first count", func() bool { return last() == 0 })

	members := make([]*client.Client, 3)
	for i := range members {
		members[i] = client.Dial("ws://"+srv.Addr().String()+"/ws", opts)
		defer members[i].Close()
		members[i].Subscribe("lobby", client.Handler{})
	}
	testutil.WaitFor(t, testutil.Patience, "count 3", func() bool { return last() == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	if n, err := watcher.Occupancy(ctx, "lobby"); err != nil || n != 3 {
		t.Fatalf("Occupancy = %d, %v; want 3", n, err)
	}

	// A drop: the watch comes back with the reconnect (the watcher's
	// count is told again, and its changes follow).
	mu.Lock()
	before := len(seen)
	mu.Unlock()
	gw.DropAll()
	testutil.WaitFor(t, testutil.Patience, "the count again after the reconnect", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > before && seen[len(seen)-1] == 3
	})
	members[0].Close()
	testutil.WaitFor(t, testutil.Patience, "count 2", func() bool { return last() == 2 })

	stop()
	testutil.WaitFor(t, testutil.Patience, "no watched room", func() bool { return srv.Rooms()[0].Occupancy == 2 && watchedNone(srv) })

	// A refusal is an *client.Error.
	if _, err := watcher.Occupancy(ctx, "bad/room"); !isCode(err, "bad_room") {
		t.Fatalf("Occupancy of a bad room: %v", err)
	}
}

func isCode(err error, code string) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Code == code
}

// watchedNone reports whether no connection watches any room's
// occupancy on srv (its metric).
func watchedNone(srv *server.Server) bool {
	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return strings.Contains(rec.Body.String(), "\nloopcast_occupancy_watched_rooms 0\n")
}
