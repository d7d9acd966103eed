package fanout

import "time"

// Config sizes an Engine. Every field is required unless it says
// otherwise.
type Config struct {
	// Loops is the number of event loops; each calls AddLoop once.
	Loops int

	// MaxPending is how many unsent bytes a connection may have queued
	// before it is a slow consumer (see Member.Admit).
	MaxPending int

	// CorkLimit is how many bytes a lane's batch, or a member's cork,
	// collects before it is written without waiting for the end of the
	// poll cycle.
	CorkLimit int

	// MaxFreeBytes bounds the buffer capacity each loop keeps for reuse.
	MaxFreeBytes int

	// MaxRooms caps the rooms: a Subscribe or a publish that would create
	// one more is refused (ErrTooManyRooms). Zero means no cap. Rooms an
	// external log's messages create (PublishAt) count apart, up to
	// MaxRooms of their own: a publisher filling the log with new rooms
	// cannot use up the rooms members need.
	MaxRooms int

	// History bounds what rooms keep for resuming subscriptions; the
	// zero value keeps nothing. With history, a room outlives its last
	// member until its history expired, and a publish to a room that
	// does not exist creates it.
	History HistoryConfig

	// Encode appends the frame of message m of room r for a lane of kind
	// k to dst and returns it. It runs once per message, lane and loop,
	// on the loop, and must not allocate. Nil: the opcode byte, then the
	// payload (for tests).
	Encode func(dst []byte, k Kind, r *Room, m Message) []byte

	// External, when set, means a log outside the engine (JetStream)
	// numbers the messages: they come with their epoch and offset
	// through Engine.PublishAt, offsets increase per room but need not be
	// consecutive, and the owner keeps their order and history without
	// numbering them. Loop.Publish and Engine.Publish must not be used.
	External *External

	// RoomOpened and RoomClosed, when set, are called when a room is
	// created and after it is forgotten, in that order for a given room,
	// under the registry's lock: they must return quickly and must not
	// call back into the Engine.
	RoomOpened, RoomClosed func(name string)

	// Forward, when set, is called for every Publication with Forward
	// set, once: on the room's owner loop, in the room's order, when it is
	// sequenced; or at once, with a zero Origin, when there is no such
	// room (history off, no member here). The server hands it to the
	// other instances. It must not block; payload is only valid during
	// the call. An error (the message reached only this instance) comes
	// back in the publication's Answer.
	Forward func(room string, op byte, payload []byte, o Origin) error
}

// External describes the outside log of Config.External. Its functions
// are called under the registry's lock when a room is created.
type External struct {
	// Epoch is the log's current epoch.
	Epoch func() uint64
	// Covered is the log position after which every message has been,
	// or will be, delivered to this engine: a new room's history is
	// complete after it (a resume from an older offset was not).
	Covered func() uint64
	// Handed is the offset of the last message PublishAt handed to a loop
	// (read with an atomic load, outside any lock). A resume newer than
	// a room's last message waits until Handed reaches it, so that the
	// messages up to it are in order first; at most MaxWait.
	Handed func() uint64
	// MaxWait bounds that wait; then the resume is refused
	// (ErrOffsetAhead).
	MaxWait time.Duration
}
