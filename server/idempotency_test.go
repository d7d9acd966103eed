package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/server"
)

// Exactly-once publishing on one instance: a pub retried with the same
// msgid, POST /publish retried with the same Idempotency-Key, and
// PublishMessage with the same Key are each acknowledged with the first
// one's place and delivered once; keys are per room.
func TestPublishKeysOnOneInstance(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	sub := dialProto(t, srv, "/ws/chat")
	epoch, _ := sub.subscribed(0, "chat", "live")
	pub := dialProto(t, srv, "/ws")
	pub.cmd("pub 1 chat m-1\nhello")
	pub.expect("pub 1 chat " + epoch + " 1")
	pub.cmd("pub 2 chat m-1\nhello") // the retry of a pub whose answer was lost
	pub.expect("pub 2 chat " + epoch + " 1")
	sub.msg("chat", opText, "hello")
	pub.cmd("pub 3 chat m-2\nnext")
	pub.expect("pub 3 chat " + epoch + " 2")
	sub.msg("chat", opText, "next") // not "hello" again

	// The same key in another room is another message.
	pub.cmd("pub 4 other m-1\nelsewhere")
	if f := pub.mustFrame(); !strings.HasPrefix(string(f.payload), "pub 4 other ") || !strings.HasSuffix(string(f.payload), " 1") {
		t.Fatalf("same key, other room: %v", f)
	}

	post := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/publish/chat", strings.NewReader("by admin"))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Idempotency-Key", "admin-1")
		rec := httptest.NewRecorder()
		srv.AdminHandler().ServeHTTP(rec, req)
		return rec
	}
	if rec := post(); rec.Code != 202 || !strings.Contains(rec.Body.String(), `"offset":3`) || strings.Contains(rec.Body.String(), "duplicate") {
		t.Fatalf("admin publish: %d %s", rec.Code, rec.Body)
	}
	if rec := post(); rec.Code != 202 || !strings.Contains(rec.Body.String(), `"offset":3`) || !strings.Contains(rec.Body.String(), `"duplicate":true`) {
		t.Fatalf("admin retry: %d %s", rec.Code, rec.Body)
	}
	sub.msg("chat", opText, "by admin")
	p, err := srv.PublishMessage(context.Background(), server.Message{Room: "chat", Type: server.Text, Payload: []byte("go"), Key: "admin-1"})
	if err != nil || !p.Duplicate || p.Offset != 3 {
		t.Fatalf("PublishMessage with the admin's key: %+v %v", p, err)
	}
	pub.cmd("pub 5 chat m-3\nlast")
	pub.expect("pub 5 chat " + epoch + " 4")
	sub.msg("chat", opText, "last")

	// A bad key is refused, by every door.
	pub.cmd("pub 6 chat bad/key\nx")
	pub.expectErr(6, "bad_command")
	req := httptest.NewRequest("POST", "/publish/chat", strings.NewReader("x"))
	req.Header.Set("Idempotency-Key", strings.Repeat("k", 65))
	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("admin with a 65-byte key: %d %s", rec.Code, rec.Body)
	}
}

// While the server drains, POST /publish answers 503 at once, with
// Retry-After and Connection: close, so publishers move to another
// instance before the listener closes (they used to meet EOF).
func TestAdminPublishWhileDraining(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.DrainDelay = 30e9 // the test ends it
	srv := startServer(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 10e9, "draining", func() bool { return srv.Stats().Draining })
	resp, err := http.Post("http://"+srv.AdminAddr().String()+"/publish/r", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !resp.Close {
		t.Fatalf("publish while draining: %d, Retry-After %q, close %v", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Close)
	}
}
