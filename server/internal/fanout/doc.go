// Package fanout is loopcast's room engine: rooms and their members, the
// order of a room's messages, the hand-off of messages between event
// loops, the per-cycle batch and the writes that end each poll cycle. It
// knows nothing of gnet, HTTP or WebSocket framing: connections are
// Conns (queued bytes, write, close as a slow consumer) and event loops
// are Executors (run a task on the loop later).
//
// # Model
//
// An Engine has one Loop per event loop. Every connection holds a
// Member, owned by its loop and touched only there. A Room is sharded by
// loop: each loop keeps its own member list and writes to it without
// locks. A room's messages are sequenced by one owner loop (the loop of
// the member that created it): Loop.Publish on another loop, or
// Engine.Publish from any goroutine, hands the message to the owner, and
// the owner hands it to every other loop that has members. Each loop's
// mailbox is FIFO per producer, so every member sees the room's messages
// in the owner's order. A message is encoded once, into one pooled,
// reference-counted buffer shared by every loop.
//
// # The write path
//
// On each loop, a room's frames of one poll cycle are appended once to
// the room shard's batch. When the cycle ends (a task queued behind the
// cycle's events), every member is written its part of that one buffer,
// the frames delivered since it joined: no copy per member, one write per
// member and cycle however many messages it carries. A batch that
// reaches Config.CorkLimit is written at once.
//
// A member's own frames (pongs, pings, close frames, HTTP answers, echo
// frames) leave after its part of the batch delivered before them: while
// it has such a part, or frames corked for the end of the cycle, they are
// appended to its cork; otherwise they are written now.
//
// # Slow consumers
//
// One rule, in Member.Admit, decides for every kind of outbound bytes
// except the close frame: n more bytes may be queued when the connection
// has nothing unsent, or when its unsent bytes plus n stay within
// Config.MaxPending. Otherwise the connection is a slow consumer: the
// engine calls Conn.Overflow once and the bytes are not queued. Corked
// bytes do not count (they leave at the end of this cycle); what counts
// is what the socket did not take (Conn.Queued).
//
// # Buffers
//
// Slices passed to Publish, Send and Deliver are only read during the
// call. A shared frame lives until the last loop has appended it to its
// batches. Batch and cork buffers live for one poll cycle (or until
// CorkLimit) and go back to the loop's free list, which holds at most
// Config.MaxFreeBytes and gives back, at each Loop.Tick, what no cycle
// needed since the previous tick.
package fanout
