// Package testutil holds helpers that the tests of several loopcast
// packages share; nothing outside tests imports it.
package testutil

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers:
// a log sink the test reads while the code under test writes.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Patience bounds a test's wait for something that must happen (a
// message, a state, a counter) only so a bug fails the test instead of
// hanging it. It is no claim about speed: far above what a loaded machine
// takes (-race, two cores shared with other work). Tests assert what
// happens and in which order, never how fast.
const Patience = 20 * time.Second

// WaitFor polls cond every 5 ms until it holds, or fails the test after
// timeout, naming what it waited for.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
