package server

import (
	"context"
	"errors"

	"github.com/gobwas/ws"

	"github.com/loopcast/loopcast/server/internal/fanout"
)

// Broker carries room messages between loopcast instances, so members of
// one room on different pods see each other's messages. Package cluster
// implements it over NATS. Config.Broker nil (the default) keeps rooms
// in-process.
//
// The server calls Subscribe when a room gets its first member on this
// instance and Unsubscribe after its last member left, in that order for
// a given room, under the room registry's lock: both must return quickly
// and must not call back into the Server. It calls Publish for every
// message published on this instance (by a member or by Server.Publish),
// from event loops: Publish must not block, and payload is valid only
// during the call. Messages from other instances come back through
// Server.DeliverRemote, which does not publish them again.
type Broker interface {
	Subscribe(room string)
	Unsubscribe(room string)
	Publish(room string, t MessageType, payload []byte) error
}

// BrokerStatus is optionally implemented by a Broker: GET /rooms shows
// ClusterStatus() under "cluster" (the rooms listed are this instance's,
// with local member counts). A Broker that is also a prometheus.Collector
// adds its metrics to GET /metrics.
type BrokerStatus interface {
	ClusterStatus() any
}

// Log is optionally implemented by a Broker that keeps every room's
// messages in one shared, ordered log: package cluster's JetStream
// stream. With a Log, offsets and epochs are the log's, so a client
// resumes on any instance: a message published here is not delivered
// locally at once but appended to the log (Append), and every instance,
// this one included, delivers the log's messages in the log's order
// (Server.DeliverLogged). Subscribe, Unsubscribe and Publish are then
// not called.
type Log interface {
	Broker
	// Append queues payload for the log without blocking; the outcome
	// comes back through Server.Appended(ref, …) from another goroutine
	// when ref is not the zero PublishRef. An error refuses the message
	// at once (a full queue, the log unreachable).
	Append(room string, t MessageType, payload []byte, ref PublishRef) error
	// AppendWait appends payload and waits for the log's answer: the
	// epoch and offset it was placed at.
	AppendWait(ctx context.Context, room string, t MessageType, payload []byte) (epoch, offset uint64, err error)
	// Epoch is the log's epoch; Covered the log position after which
	// this instance has delivered, or will deliver, every message;
	// Handed the offset of the last message given to DeliverLogged.
	Epoch() uint64
	Covered() uint64
	Handed() uint64
	// Ready reports whether the instance has caught up with the log as
	// it was at start (history warmed up): the readiness probe fails
	// until then.
	Ready() bool
}

// PublishRef names a member's publish waiting for the log's answer
// (Log.Append, Server.Appended). Its zero value asks for no answer.
type PublishRef struct {
	m  *fanout.Member
	id uint32
}

// Appended hands the log's answer to a publish (Log.Append) to the
// publisher's event loop: its acknowledgement, or its refusal. Safe from
// any goroutine.
func (s *Server) Appended(ref PublishRef, room string, epoch, offset uint64, err error) {
	if ref.m != nil {
		s.fan.Acknowledge(ref.m, ref.id, room, epoch, offset, err)
	}
}

// DeliverLogged delivers a message of the Log, numbered by it, to this
// instance's subscribers of room, in the log's order (call it from one
// goroutine, in order). It waits for Start to finish. It returns the
// local subscription count.
func (s *Server) DeliverLogged(room string, t MessageType, payload []byte, epoch, offset uint64) (int, error) {
	// The log is read from its start: wait until the server runs, so
	// that no message is dropped for want of a loop to own its room.
	select {
	case <-s.ready:
	case <-s.done:
		return 0, ErrNotRunning
	}
	if err := s.checkPublish(room, t, payload); err != nil {
		return 0, err
	}
	n, err := s.fan.Deliver(room, byte(t), payload, epoch, offset)
	if errors.Is(err, fanout.ErrTooManyRooms) {
		return 0, ErrTooManyRooms
	}
	if err == nil {
		s.remote.Add(1)
	}
	return n, err
}

// forward hands a message a member published to the broker, if any, and
// counts failures (the local members got the message regardless).
func (l *loop) forward(room string, op ws.OpCode, payload []byte) {
	if b := l.srv.cfg.Broker; b != nil && l.srv.clog == nil {
		if err := b.Publish(room, MessageType(op), payload); err != nil {
			l.stats.brokerErrors.Add(1)
		}
	}
}
