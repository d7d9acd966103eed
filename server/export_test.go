package server

import (
	"testing"
	"time"

	"github.com/loopcast/loopcast/server/internal/bus"
)

// AdminLimits are the admin listener's limits a test may shorten (see
// limits.go); a zero field keeps the default.
type AdminLimits struct {
	Read, Write, Idle time.Duration
	MaxConns          int
}

// SetAdminLimits applies l to the admin listeners started from now until
// t ends. It changes a package variable: call it only from tests that do
// not run in parallel (they never overlap other tests).
func SetAdminLimits(t testing.TB, l AdminLimits) {
	t.Helper()
	old := adminLimits
	t.Cleanup(func() { adminLimits = old })
	if l.Read > 0 {
		adminLimits.read = l.Read
	}
	if l.Write > 0 {
		adminLimits.write = l.Write
	}
	if l.Idle > 0 {
		adminLimits.idle = l.Idle
	}
	if l.MaxConns > 0 {
		adminLimits.maxConns = l.MaxConns
	}
}

// WatchedRooms is the number of rooms whose occupancy some connection
// watches (the registry's size).
func (s *Server) WatchedRooms() int { return s.occ.watchedRooms() }

// OccupancyTick runs one occupancy interval now (the goroutine still runs
// its own), sharing batches with share when it is not nil.
func (s *Server) OccupancyTick(share func([]byte) error) {
	var sh bus.Sharer
	if share != nil {
		sh = shareFunc(share)
	}
	s.occ.tickWith(time.Now().UnixNano(), sh)
}

type shareFunc func([]byte) error

func (f shareFunc) Share(b []byte) error { return f(b) }

// EnvelopeKinds lists the kinds of the batches in a cluster message.
func EnvelopeKinds(b []byte) string {
	var kinds []byte
	if openEnvelope(b, func(p []byte) {
		if len(p) > 0 {
			kinds = append(kinds, p[0])
		}
	}) != nil {
		return "malformed"
	}
	return string(kinds)
}
