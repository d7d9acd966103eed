// Package fanout is loopcast's room engine: rooms and their
// subscriptions, the order and history of a room's messages, the
// hand-off of messages between event loops, the per-cycle batch and the
// writes that end each poll cycle. It knows nothing of gnet, HTTP or
// WebSocket framing: connections are Conns (queued bytes, write, close
// as a slow consumer, replies to subscriptions and publishes), event
// loops are Executors (run a task on the loop later) and frames come
// from Config.Encode.
//
// # Model
//
// An Engine has one Loop per event loop. Every connection holds a
// Member, owned by its loop and touched only there, with one Sub per
// room it is subscribed to (raw mode: one). A Room is sharded by loop:
// each loop keeps its own subscriptions, in one lane per Kind (Raw, the
// payload alone; Framed, with the room, epoch and offset), and writes to
// them without locks. A room's messages are sequenced by one owner loop
// (the loop of the member that created it): Loop.Publish on another
// loop, or Engine.Publish from any goroutine, hands the message to the
// owner, which gives it the room's next offset, keeps it in the room's
// history (a reference, not a copy) and hands it to every other loop
// with subscriptions. Each loop's mailbox is FIFO per producer, so every
// subscription sees the room's messages in the owner's order.
//
// # Offsets, history and resuming
//
// Offsets count a room's messages from 1 within its epoch, a random
// number the room gets when it is created: a room forgotten and created
// again (no members and no history left, or a restart) has another
// epoch. A Framed subscription asks the owner for its place: the
// owner's answer says where the order stands and, for a Resume, holds
// the history after the client's offset. Because the answer travels the
// same FIFO mailbox as the owner's messages, every message sequenced
// before it reached the subscriber's loop before it, and every later one
// after: the replay and the live messages meet without a gap or a
// duplicate. What cannot be replayed is said (JoinResult), never
// skipped silently.
//
// With Config.History a room outlives its members until its history
// expired (HistoryConfig: a count per room, an age, and bytes per loop),
// and a message published to a room nobody is in creates it and is kept.
//
// # The write path
//
// On each loop, a room's frames of one poll cycle are encoded and
// appended once to each lane's batch. When the cycle ends (a task queued
// behind the cycle's events), every subscription's member is written its
// part of that one buffer, the frames delivered since it joined: no copy
// per member, one write per member, lane and cycle however many
// messages it carries. A batch that reaches Config.CorkLimit is written
// at once.
//
// A member's own frames (pongs, pings, close frames, HTTP answers,
// protocol replies, echo and replayed frames) leave after its parts of
// the batches delivered before them: while it has such a part, or frames
// corked for the end of the cycle, they are appended to its cork;
// otherwise they are written now.
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
// Slices passed to Publish, Send and SendData are only read during the
// call. A message lives until the last loop has appended it to its
// batches and it left its room's history. Batch and cork buffers live
// for one poll cycle (or until CorkLimit) and go back to the loop's free
// list, which holds at most Config.MaxFreeBytes and gives back, at each
// Loop.Tick, what no cycle needed since the previous tick.
package fanout
