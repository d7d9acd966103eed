package server

import (
	"context"
	"testing"
	"time"
)

// TestEngineStopIsReported: when the event loops stop without Close (gnet
// shuts the engine down on a fatal accept error), Done is closed and Err
// says so, so the command can exit and be restarted; a server stopped
// by Close reports no error.
func TestEngineStopIsReported(t *testing.T) {
	start := func() *Server {
		cfg := DefaultConfig()
		cfg.Addr, cfg.AdminAddr, cfg.EventLoops = "127.0.0.1:0", "", 2
		s, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		return s
	}

	failed := start()
	defer failed.Close()
	select {
	case <-failed.Done():
		t.Fatal("Done closed while serving")
	default:
	}
	if err := failed.Err(); err != nil {
		t.Fatalf("Err while serving: %v", err)
	}
	// What gnet does on a fatal accept error: stop the engine itself.
	if err := failed.gnet.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-failed.Done():
	case <-time.After(time.Minute):
		t.Fatal("Done not closed after the engine stopped")
	}
	if failed.Err() == nil {
		t.Fatal("Err is nil after the engine stopped on its own")
	}

	closed := start()
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	<-closed.Done()
	if err := closed.Err(); err != nil {
		t.Fatalf("Err after Close: %v", err)
	}
}
