package server

import (
	"time"

	"github.com/loopcast/loopcast/server/internal/bus"
)

// Every limit of the server that is not a Config knob, with its unit, its
// reason and what happens when it is reached. Config's fields document
// the knobs (MaxMessage, MaxPending, the timeouts, MaxConns); the wire
// format's own limits (a 14-byte frame header, 125-byte control
// payloads, RFC 6455 §5.2 and §5.5) are in internal/frame; the fan-out
// engine takes its buffer limits below through fanout.Config, and keeps
// only its member-list shrink heuristic (internal/fanout/room.go).

// Request heads and names.
const (
	// MaxHeadBytes is the largest HTTP request head accepted, request
	// line and headers with their CRLFs, in bytes. A larger head gets 431
	// (RFC 6585 §5) and the connection is closed. 8 KiB is what common
	// proxies (nginx, Application Gateway) allow by default.
	MaxHeadBytes = 8 << 10

	// MaxRoomName is the longest room name in bytes; names are
	// [A-Za-z0-9._-]{1,64}. A longer one gets 400 at the upgrade and
	// ErrBadRoom from Publish.
	MaxRoomName = 64

	// maxMessageCeiling bounds Config.MaxMessage (bytes) so that lengths
	// fit in an int on every platform and buffers stay sane; Validate
	// refuses more.
	maxMessageCeiling = 1 << 30

	// maxEventLoops bounds Config.EventLoops; Validate refuses more.
	maxEventLoops = 1024

	// maxSubscriptionsCeiling bounds Config.MaxSubscriptions: a
	// connection's subscriptions are searched by name linearly.
	maxSubscriptionsCeiling = 4096

	// maxHistoryMessages bounds Config.HistoryMessages per room.
	maxHistoryMessages = 1 << 20
)

// Timing.
const (
	// closeGrace is how long the server waits for the peer's close frame,
	// or lingers on an HTTP connection it is closing, before dropping
	// TCP (never longer than Config.HandshakeTimeout).
	closeGrace = 2 * time.Second

	// minTick and maxTick bound the timing wheel's resolution, which is
	// a tenth (tickDivisor) of the shortest timeout, so deadlines fire
	// within 10% late, and fine enough to spread a drain's 1001 closes
	// over at least drainTicks ticks.
	minTick     = time.Millisecond
	maxTick     = time.Second
	tickDivisor = 10
	drainTicks  = 20

	// wheelSlots is the number of slots of a loop's timing wheel (a power
	// of two). A deadline further than wheelSlots ticks away waits in its
	// slot for later rounds: correct, at one extra look per round.
	wheelSlots = 512

	// stopTimeout bounds Close: connections gnet has not closed by then
	// are abandoned with the engine.
	stopTimeout = 10 * time.Second

	// drainPollInterval is how often Shutdown checks whether every
	// WebSocket is closed.
	drainPollInterval = 10 * time.Millisecond

	// publishAckTimeout is how long a publication waits for the
	// JetStream log's acknowledgement before its outcome is answered
	// unknown (loopcast.v1 "err <id> unknown", 504 on POST /publish,
	// ErrOutcomeUnknown): every publish is answered within it, whatever
	// NATS does. The log keeps it (bus.AckTimeout).
	publishAckTimeout = bus.AckTimeout

	// publishAnswerSlack is how much longer than publishAckTimeout
	// Server.Publish waits for an answer before it says unknown itself:
	// only a server that is stopping takes that long.
	publishAnswerSlack = 2 * time.Second

	// registerLoopsTimeout bounds how long Start waits for every event
	// loop to see one of the server's connections to itself (see
	// registerLoops).
	registerLoopsTimeout = 5 * time.Second

	// registerRoundWait bounds how long one round of registerLoops waits
	// for its connections to be accepted before it connects again (a
	// loop still starting has not begun accepting on its listener).
	registerRoundWait = 20 * time.Millisecond

	// resumeWaitMax bounds how long a resume newer than this instance's
	// view of the JetStream log waits for the log to bring it (the
	// client saw those messages on a faster instance); then it gets
	// offset_ahead.
	resumeWaitMax = 5 * time.Second

	// jwksHTTPTimeout bounds one fetch of the JWT key set.
	jwksHTTPTimeout = 10 * time.Second

	// adminReadHeaderTimeout closes an admin connection that sent no
	// complete request head in this long (slowloris on the admin port).
	adminReadHeaderTimeout = 10 * time.Second

	// adminReadTimeout bounds reading one admin request, head and body
	// (http.Server.ReadTimeout): a POST /publish body dribbled a byte at
	// a time fails then and the connection is closed. 30 s takes the
	// default 1 MiB max-message at 35 KB/s; a larger --max-message needs
	// a proportionally faster publisher.
	adminReadTimeout = 30 * time.Second

	// adminWriteTimeout bounds one admin request from the end of its
	// head to the end of its response (http.Server.WriteTimeout), so a
	// client that stops reading does not hold a connection. It spans
	// reading the body too, so it exceeds adminReadTimeout plus the
	// longest publish wait (the JetStream acknowledgement, 5 s).
	// /debug/pprof/profile and /debug/pprof/trace are not capped by it:
	// net/http/pprof moves their write deadline to WriteTimeout plus
	// their ?seconds=.
	adminWriteTimeout = time.Minute

	// adminIdleTimeout closes a keep-alive admin connection that sent no
	// new request in this long (http.Server.IdleTimeout). Above a 1 min
	// Prometheus scrape interval, so scrapes keep their connection.
	adminIdleTimeout = 2 * time.Minute
)

// The admin listener's other limits.
const (
	// adminMaxHeaderBytes bounds an admin request's head
	// (http.Server.MaxHeaderBytes), the same 8 KiB as MaxHeadBytes on the
	// main listener; net/http answers 431 beyond (after 4 KiB of slack
	// of its own).
	adminMaxHeaderBytes = MaxHeadBytes

	// adminMaxConns caps the admin listener's open connections
	// (netutil.LimitListener): it shares the process's file descriptors
	// with the WebSocket listener, which must keep them. Beyond it new
	// connections wait in the kernel's accept queue until one closes
	// (the timeouts above bound how long that takes). 64 is far above
	// what scrapers, publishers and an operator use at once.
	adminMaxConns = 64
)

// Buffers of the write path.
const (
	// corkLimit is how many bytes a room shard's batch or a connection's
	// cork collects (bytes) before it is written without waiting for the
	// end of the poll cycle, so a burst holds at most this much per room
	// shard and per connection.
	corkLimit = 64 << 10

	// maxFreeBufferBytes bounds the batch and cork buffer capacity a loop
	// keeps for reuse (bytes): with 64-byte messages, enough for a
	// cycle's writes to tens of thousands of members or rooms. Beyond it
	// buffers go to the garbage collector; buffers over 2×corkLimit are
	// never kept.
	maxFreeBufferBytes = 8 << 20

	// scratchBytes is the initial size of a loop's scratch buffer, which
	// builds pongs, close frames and 101 answers (each under 256 bytes).
	scratchBytes = 256

	// maxEchoScratch is the largest echo frame buffer a loop keeps
	// (bytes); a larger message's buffer is dropped after use, so one big
	// echo does not pin memory per loop.
	maxEchoScratch = 64 << 10
)

// Messages in progress.
const (
	// Messages being assembled (fragments, or a frame whose payload is
	// still arriving) hold, on all connections together, at most
	// max(minAssemblingBytes, assemblingMessages × MaxMessage) bytes: a
	// connection whose next bytes would pass it is closed with 1013 and
	// counted. Whole messages in one read are not counted (they never
	// leave gnet's buffer). With the defaults, 64 MiB: 64 messages of the
	// largest size at once.
	minAssemblingBytes = 64 << 20
	assemblingMessages = 16
)
