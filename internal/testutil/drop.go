package testutil

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// Drop is the Application Gateway drop scenario: Clients loopcast.v1
// clients (Resumers) subscribe through the gateway to RoomsPerClient of
// Rooms rooms; Publish is called for Messages messages per room, one
// round every Interval; the gateway drops every connection at a third of
// the run, and again once every client is back. Every client must end
// with every message of its rooms exactly once, in order.
type Drop struct {
	Rooms, Clients, RoomsPerClient, Messages int
	Interval                                 time.Duration
	Publish                                  func(room, payload string) error
	// AfterFirstDrop, when set, runs right after the first drop (to
	// restart NATS, say) while the publisher goes on.
	AfterFirstDrop func()
}

// Run runs the scenario against gw and fails t on any fault.
func (d Drop) Run(t *testing.T, gw *Gateway) {
	t.Helper()
	names := make([]string, d.Rooms)
	for i := range names {
		names[i] = fmt.Sprintf("feed-%d", i)
	}
	rng := rand.New(rand.NewPCG(uint64(d.Clients), uint64(d.Rooms)))
	var rs []*Resumer
	var subs [][]string
	for c := range d.Clients {
		mine := make([]string, 0, d.RoomsPerClient)
		for _, i := range rng.Perm(d.Rooms)[:d.RoomsPerClient] {
			mine = append(mine, names[i])
		}
		subs = append(subs, mine)
		rs = append(rs, StartResumer(fmt.Sprintf("ws://%s/ws?client=%d", gw.Addr(), c), mine))
	}
	t.Cleanup(func() {
		for _, r := range rs {
			r.Close()
		}
	})
	WaitFor(t, 30*time.Second, "every client subscribed", func() bool {
		for _, r := range rs {
			if !r.Subscribed() {
				return false
			}
		}
		return true
	})
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

	var wg sync.WaitGroup
	var pubErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		pubErr = PublishSeq(names, d.Messages, d.Interval, d.Publish)
	}()
	run := time.Duration(d.Messages) * d.Interval
	time.Sleep(run / 3)
	gw.DropAll()
	if d.AfterFirstDrop != nil {
		d.AfterFirstDrop()
	}
	WaitFor(t, 30*time.Second, "every client back after the first drop", reconnected(2))
	time.Sleep(run / 6)
	gw.DropAll()
	WaitFor(t, 30*time.Second, "every client back after the second drop", reconnected(3))
	wg.Wait()
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	WaitFor(t, 30*time.Second, "every client caught up", func() bool {
		for i, r := range rs {
			for _, room := range subs[i] {
				if r.Seq(room) != d.Messages {
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
			if n := r.Received(room); n != d.Messages {
				t.Fatalf("client %d: %d messages from %s, want %d", i, n, room, d.Messages)
			}
		}
	}
}
