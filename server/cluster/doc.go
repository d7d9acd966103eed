// Package cluster fans loopcast rooms out across instances over NATS: it
// implements server.Broker with one NATS connection per instance
// (github.com/nats-io/nats.go).
//
// # Subjects
//
// A room's messages travel on loopcast.room.<room>.text and
// loopcast.room.<room>.binary; the last token is the WebSocket opcode, so
// the payload is the message itself, byte for byte, and a message of
// exactly NATS's max_payload (1 MiB by default, the same as loopcast's
// default --max-message) still fits. Room names may contain '.', NATS's
// token separator, so a '.' in a name is written '~' (which names never
// contain): room "a.b" is loopcast.room.a~b.*. An instance subscribes to
// loopcast.room.<room>.* while the room has members on it, and
// unsubscribes after the last one left.
//
// # Guarantees
//
// The connection is made with NoEcho, so NATS never hands an instance its
// own messages: local members get them once, from the local fan-out. With
// NATS up, every message published on any instance (by a member or the
// admin API) reaches every member on every instance exactly once, and the
// messages of one publisher arrive in the order it sent them (NATS keeps
// per-connection order, a room has one subscription per instance, and one
// goroutine delivers them). Messages of different instances may
// interleave differently on different instances.
//
// While NATS is unreachable each instance keeps serving its local rooms;
// messages between instances are at most once: some are lost, none are
// duplicated, and each publisher's order still holds. nats.go keeps up to
// 8 MiB of outgoing messages while it reconnects and sends them once it is
// back. It reconnects forever and resubscribes by itself. Readiness is not
// tied to NATS: a pod that lost NATS still serves its members.
//
// # Hot path
//
// Publish copies the message into a pooled buffer and queues it for one
// writer goroutine, which hands it to nats.go; it never blocks an event
// loop, even when NATS's socket is full (nats.go writes inline then). A
// full queue (QueueBytes) refuses the message and counts it. Messages
// from NATS go through one shared channel to one goroutine that calls
// Server.DeliverRemote, which encodes each one once for all local members.
package cluster
