// Package bus is the contract between the server and the transport that
// carries its rooms between instances (package cluster): what the server
// asks of a transport, and what a transport hands back. Only packages
// under server/ can name it, so only they implement server.Broker.
//
// There are two kinds of transport:
//
//   - a Broker (core NATS) forwards each message published here to the
//     other instances, which number it themselves: at most once across
//     instances, losses detected and reported (Host.Lost);
//   - a Log (JetStream) keeps every room's messages in one ordered log:
//     a message published here is appended and comes back, numbered by
//     the log, to every instance (Host.Deliver), this one included; its
//     publisher gets the log's answer (Host.Answer).
package bus

import (
	"errors"
	"time"

	"github.com/loopcast/loopcast/server/internal/fanout"
)

// Opcodes of room messages, as RFC 6455 numbers them.
const (
	Text   byte = 1
	Binary byte = 2
)

// Position is a message's place in its room's order: the epoch its
// room's offsets belong to, and its offset.
type Position struct {
	Epoch, Offset uint64
}

// Ticket names a publication waiting for its answer: a member's pub, or
// a goroutine waiting (the admin API). Transports carry it back to
// Host.Answer untouched. Its zero value asks for no answer.
type Ticket = fanout.Ack

// Host is what the server offers its transport. Its methods are safe
// from any goroutine and read payloads only during the call.
type Host interface {
	// Deliver hands a message received from the cluster to this
	// instance's members of room. From a Log, pos is the message's place
	// in the log, and calls come in the log's order from one goroutine.
	// From a Broker, pos is zero: the room numbers the message here.
	// It returns the room's subscriptions on this instance.
	Deliver(room string, op byte, payload []byte, pos Position) (int, error)

	// Answer gives a publication (Log.Append) its outcome: its place in
	// the log (dup: the log already had a message with its key, pos is
	// that message's), or err: ErrRefused wrapped when the log did not
	// take it and never will, ErrUnknown when the outcome cannot be
	// known.
	Answer(t Ticket, room string, pos Position, dup bool, err error)

	// Restart says that the log's history is gone (the stream was
	// recreated): every room drops the state of the old epoch, and the
	// new epoch's messages start after covered. Called before the first
	// Deliver of the new epoch, from the goroutine that delivers.
	Restart(epoch, covered uint64)

	// Skipped says that the log's messages up to to were removed from
	// it before this instance read them (the stream's limits passed
	// them while the reader was behind): which rooms they were for is
	// unknown. History on this instance is complete only after to, and
	// loopcast.v1 sessions are closed (1013) so that they resume and
	// learn what they missed. Called from the goroutine that delivers.
	Skipped(to uint64)

	// Lost says that messages of room from another instance were lost
	// on their way (Broker): the room starts a new epoch here, so that
	// loopcast.v1 clients are told rather than handed a silent gap.
	// Called before the next Deliver of room, from the goroutine that
	// delivers.
	Lost(room string)

	// Shared hands this instance a batch another instance shared
	// (Sharer.Share): its rooms' occupancy. Called from the transport's
	// goroutines, possibly concurrently; b is only read during the call.
	Shared(b []byte)
}

// Sharer is implemented by both transports: a channel between instances
// for their periodic state (occupancy batches), apart from room
// messages: never in the log, at most once, no order between senders.
type Sharer interface {
	// Share sends b to the other instances without blocking; b is only
	// read during the call. An error means it was not sent (NATS away).
	Share(b []byte) error
}

// Broker is a transport without a shared log (core NATS).
type Broker interface {
	// Attach names the host messages from other instances go to; until
	// then they are dropped (counted). Called once, by server.New.
	Attach(h Host)
	// Subscribe and Unsubscribe say that room got its first member here,
	// or lost its last one; called in that order for a room, under the
	// room registry's lock: they must return at once and not call back.
	Subscribe(room string)
	Unsubscribe(room string)
	// Forward sends a message published on this instance to the others,
	// with origin, its place in this instance's forwarding order for the
	// room (zero: none), which the receivers check for gaps. It is called
	// on the room's owner event loop, in the room's order, and must not
	// block. An error means the message reached only this instance
	// (counted by the caller; the receivers see the gap in origin).
	Forward(room string, op byte, payload []byte, origin Position) error
}

// Log is a transport with one shared, ordered log (JetStream).
type Log interface {
	// Attach names the host and starts delivering the log to it. Called
	// once, by server.Start.
	Attach(h Host)
	// Append queues payload for the log without blocking; key, when not
	// empty, de-duplicates it (a second append with the same key in the
	// same room, within the log's window, is answered with the first
	// one's place and not delivered again). The outcome comes back
	// through Host.Answer within a bounded time. An error refuses the
	// message now, and truly: nothing was sent.
	Append(room string, op byte, payload []byte, key string, t Ticket) error
	// Epoch is the log's epoch; Covered the log position after which this
	// instance has delivered, or will deliver, every message; Handed the
	// position of the last message given to Host.Deliver.
	Epoch() uint64
	Covered() uint64
	Handed() uint64
	// Ready reports whether the instance has read the log back as it was
	// at start (history warmed up): the readiness probe fails until then.
	Ready() bool
}

// Status is optionally implemented by a transport: GET /rooms shows
// ClusterStatus() under "cluster". A transport that is also a
// prometheus.Collector adds its metrics to GET /metrics.
type Status interface {
	ClusterStatus() any
}

// AckTimeout is how long a Log waits for its store to acknowledge an
// append before it answers ErrUnknown: every append is answered within
// it (plus the time its answer takes to reach the publisher's loop),
// whatever the store does.
const AckTimeout = 5 * time.Second

// Outcomes of a publication other than its place.
var (
	// ErrRefused: the log did not take the message and never will
	// (NATS disconnected, the queue full, the stream refusing it).
	ErrRefused = errors.New("not published: the cluster log (JetStream) did not take the message")
	// ErrUnknown: the message was sent but the log did not answer within
	// the acknowledgement deadline (a stream leader lost with it): it may
	// or may not be in the log. A publisher retries with the same key,
	// which can then never double it.
	ErrUnknown = errors.New("outcome unknown: the cluster log (JetStream) did not acknowledge the message in time; retry with the same key")
)
