// Package command parses the commands of loopcast.v1 (PROTOCOL.md at
// the repository root) and encodes the server's replies. It knows
// nothing of WebSocket framing: a command is the payload of one data
// message, a reply the payload of one text message. Parsing does not
// allocate: a Command's slices alias the input.
package command

import (
	"strconv"
)

// Op is a command's operation.
type Op uint8

const (
	OpSub       Op = iota + 1 // subscribe, optionally resuming
	OpUnsub                   // unsubscribe
	OpPub                     // publish
	OpOccupancy               // ask a room's occupancy
	OpWatch                   // watch a room's occupancy or presence
	OpUnwatch                 // stop watching it
	OpPresence                // ask a presence room's users
)

// What a watch or unwatch is about (the fourth field).
const (
	WhatOccupancy = "occupancy"
	WhatPresence  = "presence"
)

// Limits of the grammar.
const (
	// MaxLine is the longest command line in bytes ("sub", an id, a room
	// name, an epoch and an offset take at most 118); a longer line is
	// refused with CodeBadCommand before its fields are read.
	MaxLine = 256
	// MaxRoom is the longest room name, as in raw mode.
	MaxRoom = 64
	// EpochLen is the length of an epoch: 16 lower-case hex digits.
	EpochLen = 16
)

// Command is one parsed command. Room and Body alias the parsed bytes.
type Command struct {
	Op Op
	// ID is the client's number for the command, echoed in the reply;
	// 0 asks for no reply to a successful pub.
	ID   uint32
	Room []byte
	// Resume, Epoch and Offset: a sub that resumes after Offset in Epoch.
	Resume        bool
	Epoch, Offset uint64
	// Body is a pub's payload: everything after the line's LF.
	Body []byte
	// What is what a watch or unwatch is about: WhatOccupancy or
	// WhatPresence.
	What string
	// MsgID is a pub's optional message id, the publisher's idempotency
	// key (nil when absent): a retry with the same id is answered with
	// the first publish's place and delivered to nobody again.
	MsgID []byte
}

// Error is a refused command: a code from the list below and a reason
// for people.
type Error struct {
	Code   string
	Reason string
}

func (e *Error) Error() string { return e.Code + ": " + e.Reason }

// Error codes, as sent in "err" replies. PROTOCOL.md lists when each is
// sent.
const (
	CodeBadCommand           = "bad_command"
	CodeUnknownOp            = "unknown_op"
	CodeBadRoom              = "bad_room"
	CodeAlreadySubscribed    = "already_subscribed"
	CodeNotSubscribed        = "not_subscribed"
	CodeAlreadyWatching      = "already_watching"
	CodeNotWatching          = "not_watching"
	CodeTooManyWatches       = "too_many_watches"
	CodePresenceOff          = "presence_off"
	CodeTooManyPresenceRooms = "too_many_presence_rooms"
	CodeTooManySubscriptions = "too_many_subscriptions"
	CodeTooManyRooms         = "too_many_rooms"
	CodeForbidden            = "forbidden"
	CodePublishDisabled      = "publish_disabled"
	CodeTooLarge             = "too_large"
	CodeRateLimited          = "rate_limited"
	CodeOffsetAhead          = "offset_ahead"
	CodeUnavailable          = "unavailable"
	// CodeUnknown is the one err that does not mean "no effect": the
	// message was handed to the cluster log, which did not acknowledge
	// it in time. It may or may not be published; a retry with the same
	// msgid publishes it once.
	CodeUnknown = "unknown"
)

// Parse errors.
var (
	ErrEmpty     = &Error{CodeBadCommand, "empty command"}
	ErrLongLine  = &Error{CodeBadCommand, "command line over 256 bytes"}
	ErrUnknownOp = &Error{CodeUnknownOp, "unknown op (sub, unsub, pub, occupancy, presence, watch, unwatch)"}
	ErrWhat      = &Error{CodeBadCommand, "watch and unwatch take what to watch: occupancy or presence"}
	ErrID        = &Error{CodeBadCommand, "id must be a decimal number from 0 to 4294967295"}
	ErrRoom      = &Error{CodeBadRoom, "room names are 1 to 64 of A-Z a-z 0-9 . _ -, not . or .."}
	ErrEpoch     = &Error{CodeBadCommand, "epoch must be 16 lower-case hex digits"}
	ErrOffset    = &Error{CodeBadCommand, "offset must be a decimal number below 2^64"}
	ErrFields    = &Error{CodeBadCommand, "wrong number of fields for this op"}
	ErrNoBody    = &Error{CodeBadCommand, "pub needs a line feed after the room, then the payload"}
	ErrMsgID     = &Error{CodeBadCommand, "msgid must be 1 to 64 of A-Z a-z 0-9 . _ -"}
	ErrTrailing  = &Error{CodeBadCommand, "only pub takes a payload after its line"}
)

// Parse parses one command. On an error, the returned Command holds the
// id when it was read (so the refusal can name it), else 0.
func Parse(b []byte) (Command, *Error) {
	var c Command
	line, body, hasLF := cut(b, '\n')
	if len(line) > MaxLine {
		return c, ErrLongLine
	}
	if len(line) == 0 {
		return c, ErrEmpty
	}
	var f [6][]byte
	n := 0
	for rest := line; ; {
		var field []byte
		var more bool
		field, rest, more = cut(rest, ' ')
		if n == len(f) {
			return c, ErrFields
		}
		f[n] = field
		n++
		if !more {
			break
		}
	}
	switch string(f[0]) {
	case "sub":
		c.Op = OpSub
	case "unsub":
		c.Op = OpUnsub
	case "pub":
		c.Op = OpPub
	case "occupancy":
		c.Op = OpOccupancy
	case "watch":
		c.Op = OpWatch
	case "unwatch":
		c.Op = OpUnwatch
	case "presence":
		c.Op = OpPresence
	default:
		return c, ErrUnknownOp
	}
	if n < 2 {
		return c, ErrFields
	}
	id, ok := parseUint(f[1], 10)
	if !ok || id > 1<<32-1 {
		return c, ErrID
	}
	c.ID = uint32(id)
	if n < 3 {
		return c, ErrFields
	}
	if !ValidRoom(f[2]) {
		return c, ErrRoom
	}
	c.Room = f[2]
	switch c.Op {
	case OpSub:
		if n != 3 && n != 5 {
			return c, ErrFields
		}
		if n == 5 {
			if c.Epoch, ok = parseEpoch(f[3]); !ok {
				return c, ErrEpoch
			}
			if c.Offset, ok = parseUint(f[4], 20); !ok {
				return c, ErrOffset
			}
			c.Resume = true
		}
	case OpUnsub, OpOccupancy, OpPresence:
		if n != 3 {
			return c, ErrFields
		}
	case OpWatch, OpUnwatch:
		if n != 4 {
			return c, ErrFields
		}
		switch string(f[3]) {
		case WhatOccupancy:
			c.What = WhatOccupancy
		case WhatPresence:
			c.What = WhatPresence
		default:
			return c, ErrWhat
		}
	case OpPub:
		if n != 3 && n != 4 {
			return c, ErrFields
		}
		if n == 4 {
			if !ValidMsgID(f[3]) {
				return c, ErrMsgID
			}
			c.MsgID = f[3]
		}
		if !hasLF {
			return c, ErrNoBody
		}
		c.Body = body
		return c, nil
	}
	if len(body) > 0 {
		return c, ErrTrailing
	}
	return c, nil
}

// cut splits b at the first sep.
func cut(b []byte, sep byte) (before, after []byte, found bool) {
	for i, x := range b {
		if x == sep {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// parseUint parses 1 to maxDigits decimal digits without a leading zero
// (except "0" itself) into a uint64, refusing overflow.
func parseUint(b []byte, maxDigits int) (uint64, bool) {
	if len(b) == 0 || len(b) > maxDigits || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

func parseEpoch(b []byte) (uint64, bool) {
	if len(b) != EpochLen {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// ValidRoom reports whether name is 1 to 64 of [A-Za-z0-9._-], and not
// "." or "..": the same rule as raw mode's paths.
func ValidRoom(name []byte) bool {
	if len(name) == 0 || len(name) > MaxRoom || string(name) == "." || string(name) == ".." {
		return false
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// MaxMsgID is the longest message id (a pub's idempotency key).
const MaxMsgID = 64

// ValidMsgID reports whether id is 1 to 64 of [A-Za-z0-9._-].
func ValidMsgID(id []byte) bool {
	if len(id) == 0 || len(id) > MaxMsgID {
		return false
	}
	for _, c := range id {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// AppendEpoch appends an epoch as 16 lower-case hex digits.
func AppendEpoch(dst []byte, e uint64) []byte {
	const hex = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, hex[e>>uint(shift)&0xf])
	}
	return dst
}

// Status words of a "sub" reply: how the subscription starts.
const (
	StatusLive          = "live"           // no resume asked: live messages follow
	StatusRecovered     = "recovered"      // every message after the resume's offset follows
	StatusEpochChanged  = "epoch_changed"  // not recovered: the room's history was lost; offsets restarted
	StatusHistoryPassed = "history_passed" // not recovered: messages after the offset left history
)

// MessageHeaderLen is the length of a "msg" line, LF included.
func MessageHeaderLen(room string, offset uint64) int {
	return len("msg ") + len(room) + 1 + EpochLen + 1 + uintLen(offset) + 1
}

// AppendMessageHeader appends "msg <room> <epoch> <offset>\n", the line
// before a room message's payload.
func AppendMessageHeader(dst []byte, room string, epoch, offset uint64) []byte {
	dst = append(dst, "msg "...)
	dst = append(dst, room...)
	dst = append(dst, ' ')
	dst = AppendEpoch(dst, epoch)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, offset, 10)
	return append(dst, '\n')
}

// AppendSubscribed appends "sub <id> <room> <epoch> <offset> <status>".
func AppendSubscribed(dst []byte, id uint32, room string, epoch, offset uint64, status string) []byte {
	dst = append(dst, "sub "...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	dst = append(append(append(dst, ' '), room...), ' ')
	dst = AppendEpoch(dst, epoch)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, offset, 10)
	return append(append(dst, ' '), status...)
}

// AppendUnsubscribed appends "unsub <id> <room>".
func AppendUnsubscribed(dst []byte, id uint32, room []byte) []byte {
	dst = append(dst, "unsub "...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	return append(append(dst, ' '), room...)
}

// AppendPublished appends "pub <id> <room> <epoch> <offset>".
func AppendPublished(dst []byte, id uint32, room string, epoch, offset uint64) []byte {
	dst = append(dst, "pub "...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	dst = append(append(append(dst, ' '), room...), ' ')
	dst = AppendEpoch(dst, epoch)
	dst = append(dst, ' ')
	return strconv.AppendUint(dst, offset, 10)
}

// AppendOccupancy appends "occupancy <id> <room> <count>".
func AppendOccupancy(dst []byte, id uint32, room []byte, count int64) []byte {
	dst = append(dst, "occupancy "...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	dst = append(append(append(dst, ' '), room...), ' ')
	return strconv.AppendInt(dst, count, 10)
}

// AppendWatching appends "watch <id> <room> occupancy <count>".
func AppendWatching(dst []byte, id uint32, room []byte, count int64) []byte {
	dst = append(dst, "watch "...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	dst = append(append(append(dst, ' '), room...), " "+WhatOccupancy+" "...)
	return strconv.AppendInt(dst, count, 10)
}

// AppendUnwatched appends "unwatch <id> <room> <what>".
func AppendUnwatched(dst []byte, id uint32, room []byte, what string) []byte {
	dst = append(dst, "unwatch "...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	dst = append(append(append(dst, ' '), room...), ' ')
	return append(dst, what...)
}

// AppendError appends "err <id> <code> <reason>".
func AppendError(dst []byte, id uint32, e *Error) []byte {
	dst = append(dst, "err "...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	dst = append(append(append(dst, ' '), e.Code...), ' ')
	return append(dst, e.Reason...)
}

func uintLen(v uint64) int {
	n := 1
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}
