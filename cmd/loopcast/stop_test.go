package main

import (
	"context"
	"errors"
	"testing"
)

type fakeServer struct {
	done chan struct{}
	err  error
}

func (f *fakeServer) Done() <-chan struct{} { return f.done }
func (f *fakeServer) Err() error            { return f.err }

// TestAwaitStop: a signal ends serving normally; event loops that stop on
// their own end it with an error (the command then exits 1).
func TestAwaitStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := awaitStop(ctx, &fakeServer{done: make(chan struct{})}); err != nil {
		t.Fatalf("after a signal: %v", err)
	}

	failed := &fakeServer{done: make(chan struct{}), err: errors.New("accept: too many open files")}
	close(failed.done)
	err := awaitStop(context.Background(), failed)
	if err == nil || !errors.Is(err, failed.err) {
		t.Fatalf("after the engine stopped: %v, want an error wrapping %v", err, failed.err)
	}
}
