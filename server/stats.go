package server

import (
	"sync/atomic"

	"github.com/loopcast/loopcast/server/internal/command"
)

// closeReason says why the server closed (or saw close) a connection.
// Counted per loop; reported by Stats.
type closeReason uint8

const (
	closePeer             closeReason = iota // peer sent a close frame (echoed)
	closeGone                                // TCP closed or reset without a close handshake
	closeProtocol                            // 1002: RFC 6455 violation
	closeInvalidUTF8                         // 1007
	closePolicy                              // 1008: e.g. publishing disabled
	closeRateLimited                         // 1008: publishing over PublishRate
	closeTooBig                              // 1009: message over MaxMessage
	closeSlowConsumer                        // 1013 (HTTP: closed): unsent bytes over MaxPending
	closeIdle                                // nothing received for IdleTimeout
	closeGoingAway                           // 1001: server shutdown
	closeHandshakeTimeout                    // no complete request head in time
	closeHTTP                                // HTTP exchange done, or rejected
	closeOverCapacity                        // beyond the connection budget at accept: 503, closed
	closeAssemblyFull                        // 1013: messages in progress over their budget (ws.go)
	closeNotPublished                        // 1013: a raw member's message the route refused (log unavailable, max-rooms)
	closeLogSkipped                          // 1013: the cluster log removed messages this instance had not read
	closeDisconnected                        // the admin API disconnected the user (its code, 4000 by default)
	closeExpired                             // 4001: the connect hook's expire_at passed
	numCloseReasons
)

var closeReasonNames = [numCloseReasons]string{
	"peer_close", "gone", "protocol_error", "invalid_utf8", "policy", "rate_limited",
	"message_too_big", "slow_consumer", "idle_timeout", "going_away",
	"handshake_timeout", "http", "over_capacity", "assembly_limit", "not_published", "log_skipped",
	"disconnected", "expired",
}

func (r closeReason) String() string {
	if r < numCloseReasons {
		return closeReasonNames[r]
	}
	return "unknown"
}

// loopStats are counters written by one loop only. They are atomics so
// Stats may read them from any goroutine; with a single writer each
// update is an uncontended atomic add, no lock and no allocation.
type loopStats struct {
	conns      atomic.Int64 // open TCP connections
	websockets atomic.Int64 // open WebSocket sessions
	accepted   atomic.Int64 // TCP connections accepted
	upgrades   atomic.Int64 // successful handshakes
	rejected   atomic.Int64 // handshakes answered with 4xx/5xx
	health     atomic.Int64 // health responses
	msgsIn     atomic.Int64 // data messages received
	bytesIn    atomic.Int64 // payload bytes of data messages received
	closes     [numCloseReasons]atomic.Int64
	// loopcast.v1: subscriptions made, resumes by outcome, messages
	// replayed, refused commands by code.
	subscribes    atomic.Int64
	resumes       [numResumeOutcomes]atomic.Int64
	commandErrors [numCommandErrors]atomic.Int64
	rejects       [len(rejectStatuses)]atomic.Int64 // refusals by status
	_             [64]byte                          // keep loops' counters off each other's cache lines
}

// Stats is a snapshot of the server's counters, summed over loops.
type Stats struct {
	Connections  int64 `json:"connections"`   // open TCP connections
	WebSockets   int64 `json:"websockets"`    // open WebSocket sessions
	Accepted     int64 `json:"accepted"`      // TCP connections accepted
	Upgrades     int64 `json:"upgrades"`      // successful handshakes
	Rejected     int64 `json:"rejected"`      // handshakes refused with a status
	Health       int64 `json:"health"`        // health responses
	MessagesIn   int64 `json:"messages_in"`   // data messages received
	BytesIn      int64 `json:"bytes_in"`      // their payload bytes
	Deliveries   int64 `json:"deliveries"`    // data frames written
	BytesOut     int64 `json:"bytes_out"`     // their bytes
	Published    int64 `json:"published"`     // room messages sequenced
	Rooms        int64 `json:"rooms"`         // rooms with members
	BrokerErrors int64 `json:"broker_errors"` // messages the broker did not forward, or the log refused at once
	Lost         int64 `json:"lost"`          // losses noticed in other instances' messages (each renewed a room's epoch)
	// LogRoomsRefused counts JetStream messages not kept here because
	// the rooms held only for the stream reached MaxRooms.
	LogRoomsRefused int64 `json:"log_rooms_refused"`
	// DedupeEvicted counts publication keys forgotten before their
	// window passed (one instance, without JetStream).
	DedupeEvicted int64            `json:"dedupe_evicted"`
	Remote        int64            `json:"remote"`         // messages from other instances
	Closes        map[string]int64 `json:"closes"`         // closes by reason
	Rejects       map[int]int64    `json:"rejects"`        // refused requests by status
	SlowConsumers int64            `json:"slow_consumers"` // closes with 1013
	Draining      bool             `json:"draining"`

	// UntrustedForwarded counts handshakes with X-Forwarded-For from a
	// peer outside TrustedProxies (a proxy whose subnet is missing).
	UntrustedForwarded int64 `json:"untrusted_forwarded"`

	// loopcast.v1 and history.
	Subscribes      int64            `json:"subscribes"`       // subscriptions made
	Resumes         map[string]int64 `json:"resumes"`          // resumes by outcome
	Replayed        int64            `json:"replayed"`         // messages replayed from history
	CommandErrors   map[string]int64 `json:"command_errors"`   // refused commands by code
	HistoryMessages int64            `json:"history_messages"` // messages kept in history
	HistoryBytes    int64            `json:"history_bytes"`    // their size

	// permessage-deflate: room messages compressed (once per message,
	// lane and loop) and sent plain to compressing clients (under
	// CompressionMinSize), their bytes before and after compression, and
	// client messages that came compressed.
	CompressedMessages int64 `json:"compressed_messages"`
	CompressedPlain    int64 `json:"compressed_plain"`
	CompressedBytesIn  int64 `json:"compressed_bytes_in"`
	CompressedBytesOut int64 `json:"compressed_bytes_out"`
	Inflated           int64 `json:"inflated_messages"`
}

// Stats returns current counters. Safe for concurrent use; it allocates
// and is meant for monitoring, not the hot path.
func (s *Server) Stats() Stats {
	st := Stats{Closes: make(map[string]int64, numCloseReasons), Rejects: map[int]int64{}, Draining: s.draining.Load(), UntrustedForwarded: s.admit.untrusted.Load(),
		Resumes: make(map[string]int64, numResumeOutcomes), CommandErrors: make(map[string]int64, numCommandErrors)}
	for _, l := range s.loopList() {
		ls := &l.stats
		st.Connections += ls.conns.Load()
		st.WebSockets += ls.websockets.Load()
		st.Accepted += ls.accepted.Load()
		st.Upgrades += ls.upgrades.Load()
		st.Rejected += ls.rejected.Load()
		st.Health += ls.health.Load()
		st.MessagesIn += ls.msgsIn.Load()
		st.BytesIn += ls.bytesIn.Load()
		for i, status := range rejectStatuses {
			if v := ls.rejects[i].Load(); v > 0 {
				st.Rejects[status] += v
			}
		}
		for r := range numCloseReasons {
			st.Closes[r.String()] += ls.closes[r].Load()
		}
		st.Subscribes += ls.subscribes.Load()
		for o, name := range resumeOutcomeNames {
			st.Resumes[name] += ls.resumes[o].Load()
		}
		for i, code := range commandErrorCodes {
			st.CommandErrors[code] += ls.commandErrors[i].Load()
		}
	}
	st.SlowConsumers = st.Closes[closeSlowConsumer.String()]
	fc := s.engine.Counters()
	st.Deliveries, st.BytesOut, st.Published = fc.Deliveries, fc.BytesOut, fc.Published
	st.HistoryMessages, st.HistoryBytes = fc.HistoryMessages, fc.HistoryBytes
	z := &s.zstats
	st.CompressedMessages, st.CompressedPlain = z.compressed.Load(), z.plain.Load()
	st.CompressedBytesIn, st.CompressedBytesOut, st.Inflated = z.in.Load(), z.out.Load(), z.inflated.Load()
	st.Rooms = int64(s.engine.RoomCount())
	st.Remote = s.remote.Load()
	st.BrokerErrors = s.forwardErrors.Load() + s.logRefusals.Load()
	st.Lost = s.lost.Load()
	st.LogRoomsRefused = s.logRoomsRefused.Load()
	st.DedupeEvicted = fc.DedupeEvicted
	st.Replayed = fc.Replayed
	return st
}

// numCommandErrors is the number of error codes.
const numCommandErrors = 14

// resumeOutcome counts how resumes went (loopcast_resumes_total).
type resumeOutcome uint8

const (
	resumeRecovered resumeOutcome = iota
	resumeEpochChanged
	resumeHistoryPassed
	numResumeOutcomes
)

var resumeOutcomeNames = [numResumeOutcomes]string{command.StatusRecovered, command.StatusEpochChanged, command.StatusHistoryPassed}

// commandErrorCodes are the codes counted per loop, in order.
var commandErrorCodes = [numCommandErrors]string{
	command.CodeBadCommand, command.CodeUnknownOp, command.CodeBadRoom,
	command.CodeAlreadySubscribed, command.CodeNotSubscribed, command.CodeTooManySubscriptions,
	command.CodeTooManyRooms, command.CodeForbidden, command.CodePublishDisabled,
	command.CodeTooLarge, command.CodeRateLimited, command.CodeOffsetAhead, command.CodeUnavailable,
	command.CodeUnknown,
}

func (ls *loopStats) countCommandError(code string) {
	for i, c := range commandErrorCodes {
		if c == code {
			ls.commandErrors[i].Add(1)
			return
		}
	}
}
