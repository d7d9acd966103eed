// Package occupancy counts a room's members across instances without a
// message per join: each instance reports its own per-room counts once
// per interval, in one batch for all its rooms, and adds up the others'.
//
// A Reporter builds an instance's batches: the rooms whose count changed
// since the last batch (0 for a room it no longer has), and a slice of
// the others again (a rolling refresh), so that every count is repeated
// once per cycle. A Table keeps the other instances' counts: a batch
// overwrites the counts it names; a count the sender did not repeat
// during its last whole cycle is dropped (its 0 was lost on the way);
// an instance not heard from for Table.TTL is dropped with all its
// counts (it died).
//
// Batches travel at most once (core NATS): a lost batch costs accuracy
// until the sender's next cycle, never a count that stays wrong.
//
// # Wire format
//
// A batch is binary: the byte 'O', the version 1, then uvarints: the
// sender's id, the batch's sequence (1, 2, ...), its cycle, and then
// entries until the end, each a uvarint length (1 to 64), the room's
// name and a uvarint count.
package occupancy
