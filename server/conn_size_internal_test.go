package server

import (
	"testing"
	"unsafe"
)

// A connection's state fits the 240-byte allocation class: occupancy,
// presence and tokens add one pointer (session), allocated only for
// connections that use them. Per-connection memory is a figure users
// size pods by (BENCHMARKS.md); growing conn is a decision, not an
// accident.
func TestConnFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(conn{}); n > 240 {
		t.Fatalf("conn is %d bytes, over its 240-byte size class", n)
	}
}
