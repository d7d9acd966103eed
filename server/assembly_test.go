package server_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/loopcast/loopcast/server"
)

// TestBugAssemblingUnbounded is the regression test for messages in
// progress: each connection could hold a message of just under
// --max-message unfinished, so 200 connections held 270 MB more. Now all
// of them together hold at most the server's budget: the connection
// whose bytes would pass it is closed with 1013 and counted, and what a
// closed connection held is given back.
func TestBugAssemblingUnbounded(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	server.SetMaxAssembling(srv, 1<<20)
	part := bytes.Repeat([]byte("x"), 400<<10)
	open := func() *rawClient {
		c := dialWS(t, srv.Addr(), "/ws/big")
		c.send(false, opBinary, part) // a first fragment: the message is in progress
		return c
	}
	a, b := open(), open()
	waitFor(t, 10*time.Second, "two messages in progress", func() bool { return server.Assembling(srv) == 2*int64(len(part)) })
	c := open() // 1.2 MB in all: over the budget
	c.expectClose(1013)
	c.expectEOF()
	if n := srv.Stats().Closes["assembly_limit"]; n != 1 {
		t.Fatalf("closes assembly_limit %d, want 1", n)
	}
	a.conn.Close()
	waitFor(t, 10*time.Second, "the closed connection's bytes given back", func() bool { return server.Assembling(srv) == int64(len(part)) })
	d := open() // room again
	d.send(true, opCont, []byte("end"))
	if f := d.mustFrame(); f.op != opBinary || len(f.payload) != len(part)+3 {
		t.Fatalf("the message completed after room was made: %v", f)
	}
	b.conn.Close()
	waitFor(t, 10*time.Second, "nothing held", func() bool { return server.Assembling(srv) == 0 })
}
