package client_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopcast/loopcast/client"
	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
)

func startServer(t *testing.T, adjust ...func(*server.Config)) *server.Server {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Addr, cfg.AdminAddr, cfg.EventLoops, cfg.PublishRate = "127.0.0.1:0", "", 2, 0
	for _, f := range adjust {
		f(&cfg)
	}
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// recorder collects a subscription's events.
type recorder struct {
	mu   sync.Mutex
	seqs []int
	lost []client.Lost
	errs []error
}

func (r *recorder) handler() client.Handler {
	return client.Handler{
		OnMessage: func(m client.Message) {
			n, _ := strconv.Atoi(strings.Fields(string(m.Data))[1])
			r.mu.Lock()
			r.seqs = append(r.seqs, n)
			r.mu.Unlock()
		},
		OnLost:  func(l client.Lost) { r.mu.Lock(); r.lost = append(r.lost, l); r.mu.Unlock() },
		OnError: func(err error) { r.mu.Lock(); r.errs = append(r.errs, err); r.mu.Unlock() },
	}
}

func (r *recorder) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.seqs) }

// Every TCP connection cut at once, twice, while a publisher publishes to
// two rooms: the client resumes both, every message once, in order.
func TestResumeThroughDrops(t *testing.T) {
	srv := startServer(t)
	gw := testutil.StartGateway(t, srv.Addr().String())
	c := client.Dial("ws://"+gw.Addr()+"/ws", client.Options{BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	defer c.Close()
	rooms := []string{"a", "b"}
	recs := map[string]*recorder{}
	for _, r := range rooms {
		recs[r] = &recorder{}
		c.Subscribe(r, recs[r].handler())
	}
	testutil.WaitFor(t, testutil.Patience, "open", func() bool { return c.State() == client.Open })
	testutil.WaitFor(t, testutil.Patience, "subscribed", func() bool {
		n := 0
		for _, ri := range srv.Rooms() {
			n += int(ri.Members)
		}
		return n == len(rooms)
	})
	const n = 200
	done := make(chan error, 1)
	go func() {
		done <- testutil.PublishSeq(rooms, n, 3*time.Millisecond, func(room, payload string) error {
			_, err := srv.Publish(room, server.Text, []byte(payload))
			return err
		})
	}()
	time.Sleep(150 * time.Millisecond)
	gw.DropAll()
	time.Sleep(200 * time.Millisecond)
	gw.DropAll()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, r := range rooms {
		rec := recs[r]
		testutil.WaitFor(t, testutil.Patience, "room "+r, func() bool { return rec.count() >= n })
		rec.mu.Lock()
		for i, s := range rec.seqs {
			if s != i+1 {
				t.Fatalf("room %s: message %d is seq %d (of %v)", r, i, s, rec.seqs[:min(len(rec.seqs), 20)])
			}
		}
		if len(rec.seqs) != n || len(rec.lost) != 0 {
			t.Fatalf("room %s: %d messages, lost %v", r, len(rec.seqs), rec.lost)
		}
		rec.mu.Unlock()
	}
}

// Publish returns the offset; refusals are *client.Error with the
// server's code; a subscription refused reaches OnError.
func TestPublishAndRefusals(t *testing.T) {
	srv := startServer(t, func(c *server.Config) { c.MaxMessage = 100; c.MaxSubscriptions, c.SubscribeRate = 1, 0 })
	c := client.Dial("ws://"+srv.Addr().String()+"/ws", client.Options{})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	ack, err := c.Publish(ctx, "r", []byte("hello"), false)
	if err != nil || ack.Offset != 1 || len(ack.Epoch) != 16 {
		t.Fatalf("publish: %+v %v", ack, err)
	}
	var e *client.Error
	if _, err := c.Publish(ctx, "r", make([]byte, 101), true); !errors.As(err, &e) || e.Code != "too_large" {
		t.Fatalf("too large: %v", err)
	}
	rec, second := &recorder{}, &recorder{}
	c.Subscribe("one", rec.handler())
	c.Subscribe("two", second.handler()) // over max-subscriptions
	testutil.WaitFor(t, testutil.Patience, "the refusal", func() bool { second.mu.Lock(); defer second.mu.Unlock(); return len(second.errs) == 1 })
	if !errors.As(second.errs[0], &e) || e.Code != "too_many_subscriptions" {
		t.Fatalf("refusal: %v", second.errs[0])
	}
	c.Close()
	if _, err := c.Publish(ctx, "r", nil, false); err != client.ErrClosed {
		t.Fatalf("after Close: %v", err)
	}
}

// A reconnect to another instance (no shared log) is reported as lost.
func TestLossIsReported(t *testing.T) {
	a, b := startServer(t), startServer(t)
	gw := testutil.StartGateway(t, a.Addr().String(), b.Addr().String())
	c := client.Dial("ws://"+gw.Addr()+"/ws", client.Options{BackoffInitial: 20 * time.Millisecond})
	defer c.Close()
	rec := &recorder{}
	c.Subscribe("news", rec.handler())
	testutil.WaitFor(t, testutil.Patience, "subscribed on a", func() bool { return len(a.Rooms()) == 1 && a.Rooms()[0].Members == 1 })
	if _, err := a.Publish("news", server.Text, []byte("news 1")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, testutil.Patience, "the message", func() bool { return rec.count() == 1 })
	gw.DropAll() // the next connection goes to b
	testutil.WaitFor(t, testutil.Patience, "the loss reported", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.lost) == 1 })
	if l := rec.lost[0]; l.Reason != "epoch_changed" || l.Room != "news" {
		t.Fatalf("lost %+v", l)
	}
}
