package server_test

import (
	"testing"

	"github.com/loopcast/loopcast/server"
)

// When the cluster log removed messages this instance had not read, the
// loopcast.v1 sessions are closed with 1013 (so they resume), and a
// resume from before the hole is told history_passed, never recovered
// with a hole in its replay.
func TestLogSkippedClosesSessionsAndHistory(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	c := dialProto(t, srv, "/ws/news")
	epoch, _ := c.subscribed(0, "news", "live")
	for range 3 {
		if _, err := srv.Publish("news", server.Text, []byte("m")); err != nil {
			t.Fatal(err)
		}
		c.msg("news", opText, "m")
	}
	raw := dialWS(t, srv.Addr(), "/ws/news") // raw mode: no resume, left open
	server.SkippedForTest(srv, 2)
	c.expectClose(1013)
	c.expectEOF()
	if n := srv.Stats().Closes["log_skipped"]; n != 1 {
		t.Fatalf("closes log_skipped %d, want 1", n)
	}
	d := dialProto(t, srv, "/ws")
	d.cmd("sub 1 news " + epoch + " 1")
	d.subscribed(1, "news", "history_passed")
	d.cmd("sub 2 other")
	d.subscribed(2, "other", "live")
	raw.send(true, opText, []byte("still here"))
	expectData(t, raw, opText, []byte("still here"))
}
