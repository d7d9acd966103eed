package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/loopcast/loopcast/client"
	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
)

// fakeV1 is a loopcast.v1 server that answers each pub it reads with
// what answer says (an empty answer drops the connection without one),
// and records the pub lines.
type fakeV1 struct {
	mu     sync.Mutex
	lines  []string
	answer func(n int, id, room, msgid string) string
}

func (f *fakeV1) serve(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"loopcast.v1"}})
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		_, b, err := c.Read(r.Context())
		if err != nil {
			return
		}
		line, _, _ := strings.Cut(string(b), "\n")
		fields := strings.Fields(line)
		if len(fields) != 4 || fields[0] != "pub" {
			continue
		}
		f.mu.Lock()
		f.lines = append(f.lines, line)
		n, answer := len(f.lines), f.answer
		f.mu.Unlock()
		reply := answer(n, fields[1], fields[2], fields[3])
		if reply == "" {
			return // dropped before the answer
		}
		if err := c.Write(r.Context(), websocket.MessageText, []byte(reply)); err != nil {
			return
		}
	}
}

func (f *fakeV1) pubs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

// Publish whose outcome is unknown — the server said "unknown", or the
// connection dropped before the answer — is sent again with the same
// msgid until it is acknowledged; an "unavailable" answer to a retry does
// not end it.
func TestPublishRetriesWithTheSameMsgID(t *testing.T) {
	fake := &fakeV1{answer: func(n int, id, room, msgid string) string {
		switch n {
		case 1:
			return "err " + id + " unknown not acknowledged in time"
		case 2:
			return "" // the connection drops with the answer
		case 3:
			return "err " + id + " unavailable the stream is not answering"
		}
		return "pub " + id + " " + room + " 00000000000000aa 7"
	}}
	hs := httptest.NewServer(http.HandlerFunc(fake.serve))
	defer hs.Close()
	c := client.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", client.Options{BackoffInitial: 10 * time.Millisecond})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	ack, err := c.Publish(ctx, "r", []byte("once"), false)
	if err != nil || ack.Offset != 7 {
		t.Fatalf("Publish: %+v, %v", ack, err)
	}
	pubs := fake.pubs()
	if len(pubs) != 4 {
		t.Fatalf("%d attempts, want 4: %q", len(pubs), pubs)
	}
	key := strings.Fields(pubs[0])[3]
	for _, p := range pubs {
		if strings.Fields(p)[3] != key {
			t.Fatalf("attempts with different msgids: %q", pubs)
		}
	}
	// The next publish is another message: another msgid; a refusal
	// without an earlier unknown is final.
	fake.mu.Lock()
	fake.answer = func(_ int, id, _, _ string) string { return "err " + id + " unavailable down" }
	fake.mu.Unlock()
	var e *client.Error
	if _, err := c.Publish(ctx, "r", []byte("two"), false); !errors.As(err, &e) || e.Code != "unavailable" {
		t.Fatalf("a refused publish: %v", err)
	}
	if last := fake.pubs()[4]; strings.Fields(last)[3] == key {
		t.Fatalf("the next publish reused msgid %s", key)
	}
}

// Unsubscribe ends a subscription: the server is told, and the room's
// later messages no longer reach its handler.
func TestUnsubscribe(t *testing.T) {
	srv := startServer(t)
	c := client.Dial("ws://"+srv.Addr().String()+"/ws", client.Options{})
	defer c.Close()
	rec := &recorder{}
	s := c.Subscribe("news", rec.handler())
	members := func() int64 {
		for _, r := range srv.Rooms() {
			if r.Name == "news" {
				return r.Members
			}
		}
		return 0
	}
	testutil.WaitFor(t, testutil.Patience, "subscribed", func() bool { return members() == 1 })
	if _, err := srv.Publish("news", server.Text, []byte("news 1")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, testutil.Patience, "the message", func() bool { return rec.count() == 1 })
	s.Unsubscribe()
	testutil.WaitFor(t, testutil.Patience, "unsubscribed on the server", func() bool { return members() == 0 })
	if _, err := srv.Publish("news", server.Text, []byte("news 2")); err != nil {
		t.Fatal(err)
	}
	// A marker through a second subscription shows the connection
	// delivered past news 2: it never reached the handler.
	marker := &recorder{}
	c.Subscribe("marker", marker.handler())
	testutil.WaitFor(t, testutil.Patience, "marker subscribed", func() bool {
		for _, r := range srv.Rooms() {
			if r.Name == "marker" {
				return r.Members == 1
			}
		}
		return false
	})
	if _, err := srv.Publish("marker", server.Text, []byte("marker 1")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, testutil.Patience, "the marker", func() bool { return marker.count() == 1 })
	if n := rec.count(); n != 1 {
		t.Fatalf("%d messages after Unsubscribe, want the one before", n)
	}
}

// A subscription refused for now (offset_ahead: the instance is behind
// the cluster log after a failover) is sent again, not dropped.
func TestSubscribeAgainAfterOffsetAhead(t *testing.T) {
	var mu sync.Mutex
	subs := 0
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"loopcast.v1"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			_, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			f := strings.Fields(string(b))
			if len(f) < 3 || f[0] != "sub" {
				continue
			}
			mu.Lock()
			subs++
			n := subs
			mu.Unlock()
			reply := "err " + f[1] + " offset_ahead offset is ahead of the room's offset in this epoch"
			if n > 1 {
				reply = "sub " + f[1] + " " + f[2] + " 00000000000000aa 3 live"
				_ = c.Write(r.Context(), websocket.MessageText, []byte(reply))
				reply = "msg " + f[2] + " 00000000000000aa 4\nnews 1"
			}
			if err := c.Write(r.Context(), websocket.MessageText, []byte(reply)); err != nil {
				return
			}
		}
	}))
	defer hs.Close()
	c := client.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", client.Options{})
	defer c.Close()
	rec := &recorder{}
	c.Subscribe("news", rec.handler())
	testutil.WaitFor(t, testutil.Patience, "the message after subscribing again", func() bool { return rec.count() == 1 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) != 0 {
		t.Fatalf("errors reported: %v", rec.errs)
	}
}
