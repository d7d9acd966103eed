package cluster

import (
	"github.com/nats-io/nats.go"

	"github.com/loopcast/loopcast/server/internal/bus"
)

// SubjectShare carries the instances' periodic state (occupancy batches,
// bus.Sharer) on core NATS. It is outside SubjectPrefix, so the room
// stream never captures it.
const SubjectShare = "loopcast.share"

// shareWith subscribes h to the other instances' batches on nc. nats.go
// restores the subscription after a reconnect.
func shareWith(nc *nats.Conn, h bus.Host) (*nats.Subscription, error) {
	return nc.Subscribe(SubjectShare, func(m *nats.Msg) { h.Shared(m.Data) })
}

// Share implements bus.Sharer: b goes to every other instance, at most
// once.
func (b *Bridge) Share(p []byte) error { return b.nc.Publish(SubjectShare, p) }

// Share implements bus.Sharer: p goes to every other instance, at most
// once (refused while NATS is away: the stream's connection keeps no
// reconnect buffer).
func (s *Stream) Share(p []byte) error { return s.nc.Publish(SubjectShare, p) }

var (
	_ bus.Sharer = (*Bridge)(nil)
	_ bus.Sharer = (*Stream)(nil)
)
