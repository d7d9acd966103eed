package server_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
)

// The Application Gateway drop, for real: a publisher keeps publishing to
// several rooms at a steady rate while a gateway in front of the server
// cuts every client's TCP connection at once, twice. Each client
// reconnects with jittered backoff and resumes each of its rooms from the
// last message it received: every client ends with every message exactly
// once, in order.
func TestGatewayDropLosesNothing(t *testing.T) {
	t.Parallel()
	const (
		rooms, clients, roomsPerClient = 6, 120, 3
		messages                       = 300 // per room
		interval                       = 5 * time.Millisecond
	)
	srv := startServer(t, testConfig())
	gw := testutil.StartGateway(t, srv.Addr().String())
	runDrop(t, gw, rooms, clients, roomsPerClient, messages, interval, func(room, payload string) error {
		_, err := srv.Publish(room, server.Text, []byte(payload))
		return err
	})
}

// runDrop runs the drop scenario against the gateway: clients subscribe
// through it, publish runs at a steady rate, the gateway drops everyone at
// a third and at two thirds of the run, and every client must end with
// every message of its rooms exactly once, in order.
func runDrop(t *testing.T, gw *testutil.Gateway, rooms, clients, roomsPerClient, messages int, interval time.Duration, publish func(room, payload string) error) {
	t.Helper()
	names := make([]string, rooms)
	for i := range names {
		names[i] = fmt.Sprintf("feed-%d", i)
	}
	rng := rand.New(rand.NewPCG(uint64(clients), uint64(rooms)))
	var rs []*testutil.Resumer
	var subs [][]string
	for range clients {
		perm := rng.Perm(rooms)[:roomsPerClient]
		mine := make([]string, 0, roomsPerClient)
		for _, i := range perm {
			mine = append(mine, names[i])
		}
		subs = append(subs, mine)
		rs = append(rs, testutil.StartResumer("ws://"+gw.Addr()+"/ws", mine))
	}
	t.Cleanup(func() {
		for _, r := range rs {
			r.Close()
		}
	})
	waitFor(t, 20*time.Second, "every client subscribed", func() bool {
		for _, r := range rs {
			if !r.Subscribed() {
				return false
			}
		}
		return true
	})

	var wg sync.WaitGroup
	var pubErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		pubErr = testutil.PublishSeq(names, messages, interval, publish)
	}()
	run := time.Duration(messages) * interval
	reconnected := func(n int) func() bool {
		return func() bool {
			for _, r := range rs {
				if r.Connects() < n {
					return false
				}
			}
			return true
		}
	}
	time.Sleep(run / 3)
	gw.DropAll()
	// The second drop hits the storm's survivors once they are all back
	// (the publisher keeps publishing meanwhile).
	waitFor(t, 30*time.Second, "every client back after the first drop", reconnected(2))
	time.Sleep(run / 6)
	gw.DropAll()
	waitFor(t, 30*time.Second, "every client back after the second drop", reconnected(3))
	wg.Wait()
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	waitFor(t, 30*time.Second, "every client caught up", func() bool {
		for i, r := range rs {
			for _, room := range subs[i] {
				if r.Seq(room) != messages {
					return false
				}
			}
		}
		return true
	})
	for i, r := range rs {
		if f := r.Faults(); len(f) > 0 {
			t.Fatalf("client %d: %d faults, first %v", i, len(f), f[:min(5, len(f))])
		}
		for _, room := range subs[i] {
			if n := r.Received(room); n != messages {
				t.Fatalf("client %d: %d messages from %s, want %d", i, n, room, messages)
			}
		}
	}
}
