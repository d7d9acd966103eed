// Package cluster fans loopcast rooms out across instances over NATS
// (github.com/nats-io/nats.go), with one NATS connection per instance:
// Bridge over core NATS (at most once across instances, losses noticed),
// Stream over a JetStream stream (one order and history for every
// instance; every append answered within a deadline). Both are
// server.Broker values; package server/internal/bus is the contract.
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
// A loss is noticed: a forwarded message carries, in its Loopcast-Origin
// header, its place in its room's forwarding order on its instance (the
// room's epoch there and a count); the receiver that sees a count skip
// calls Host.Lost before delivering it, and the room starts a new epoch
// there, which loopcast.v1 clients see. A message with no room for the
// header beside it in max_payload goes without, and the receiver starts
// its count of that room again.
//
// # Hot path
//
// Forward (called by the room's owner event loop) copies the message
// into a pooled buffer and queues it for one writer goroutine, which
// hands it to nats.go; it never blocks an event loop, even when NATS's
// socket is full (nats.go writes inline then). A full queue (QueueBytes)
// refuses the message and counts it. Messages from NATS go through one
// shared channel to one goroutine that calls Host.Deliver, which encodes
// each one once for all local members. Stream.Append is the same, a copy
// and a queue; the answers come back on one inbox subscription
// (append.go).
package cluster
