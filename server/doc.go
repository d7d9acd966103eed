// Package server is loopcast's engine: a WebSocket fan-out server on gnet
// event loops, with an HTTP/1.1 front door that answers every plain GET
// with a health response on the same port, so load balancer probes
// (Azure Application Gateway's default is GET / with Host: localhost)
// pass without probe configuration.
//
// # Model
//
// There is no goroutine per connection. gnet runs EventLoops epoll loops;
// each connection belongs to one loop for its whole life, and all of its
// state (a conn) is touched only on that loop. Request heads and frames
// are parsed in place from gnet's inbound buffer (Peek, then Discard);
// a head or frame split across reads waits for more bytes.
//
// Rooms are sharded by loop: each loop keeps its own member list of a
// room and writes to it without locks. A room's messages are sequenced by
// one owner loop, which hands each message to the other loops that have
// members, so every member sees the same order. A message is encoded
// once into a pooled, reference-counted frame shared by all members.
//
// Writes are corked to the end of the poll cycle. On each loop a room's
// frames of the cycle are appended once to the room's batch (shard.batch),
// and flush writes every member its part of that one buffer with one
// non-blocking write (or hands the rest to gnet, where it counts against
// MaxPending): no copy per member, one system call per member per cycle.
// Frames a member writes itself (pongs, close frames) go to its own cork,
// after its part of the batch.
//
// Timers (handshake timeout, pings, idle timeout, close grace) live in a
// timing wheel per loop, advanced by gnet's ticker: O(1) per connection,
// no timer or goroutine per connection.
//
// # Buffers
//
// Slices from Peek alias the loop's buffer and never outlive the gnet
// callback that obtained them. Anything that must outlive it (fragments
// of a message, a frame handed to other loops) is copied into a buffer
// from bytebufferpool and returned to the pool when the last user is done.
// Batch and cork buffers live for one poll cycle (or until corkLimit) and
// go back to the loop's free list, which keeps at most maxCorkFreeBytes
// and each tick gives back what no cycle needed.
package server
