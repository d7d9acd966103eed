package server_test

import (
	"testing"
)

// TestBugForwardedForFirstLineForged: RFC 9110 §5.3 says field lines of
// one name combine, in order, into one comma-separated list. A client
// sends its own (forged) X-Forwarded-For line; the trusted proxy appends
// another line naming the address it saw. The per-address cap must count
// the right-most address of the combined list (the proxy's line), never
// the client's choice.
func TestBugForwardedForFirstLineForged(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxConnsPerIP = 1
	cfg.TrustedProxies = []string{"127.0.0.0/8"} // the test's peer is the "gateway"
	srv := startServer(t, cfg)
	addr := srv.Addr().String()
	xff := func(forged, appended string) []string {
		return []string{"X-Forwarded-For: " + forged, "X-Forwarded-For: " + appended}
	}
	// Client 203.0.113.7 forges a fresh address on every attempt.
	if s := upgrade(t, addr, "127.0.0.7", "/ws/a", xff("198.51.100.1", "203.0.113.7:50000")...).StatusCode; s != 101 {
		t.Fatalf("first session of 203.0.113.7: %d, want 101", s)
	}
	if s := upgrade(t, addr, "127.0.0.7", "/ws/a", xff("198.51.100.2", "203.0.113.7:50001")...).StatusCode; s != 429 {
		t.Fatalf("second session of 203.0.113.7 behind a forged first line: %d, want 429", s)
	}
	// Another client whose forged line names the first forged address is
	// counted as itself.
	if s := upgrade(t, addr, "127.0.0.7", "/ws/a", xff("198.51.100.1", "203.0.113.9")...).StatusCode; s != 101 {
		t.Fatalf("first session of 203.0.113.9 (forging 198.51.100.1): %d, want 101", s)
	}
	// The walk crosses lines: a trusted hop on the last line sends it on
	// to the line before, as if the lines were one list.
	if s := upgrade(t, addr, "127.0.0.7", "/ws/a", "X-Forwarded-For: 198.51.100.3, 203.0.113.9", "X-Forwarded-For: 127.0.0.9").StatusCode; s != 429 {
		t.Fatalf("203.0.113.9 through two trusted hops: %d, want 429", s)
	}
	if got := srv.Stats().Rejects[429]; got != 2 {
		t.Errorf("429s counted: %d, want 2", got)
	}
}
