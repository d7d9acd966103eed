package cluster

import (
	"strings"

	"github.com/loopcast/loopcast/server/internal/bus"
)

// SubjectPrefix starts every subject loopcast uses.
const SubjectPrefix = "loopcast.room."

// Opcode tokens: the last token of a message's subject.
const (
	tokenText   = "text"
	tokenBinary = "binary"
)

// roomToken turns a room name ([A-Za-z0-9._-]{1,64}) into one NATS
// subject token: '.' separates tokens, so it is written '~', which room
// names never contain.
func roomToken(room string) string {
	return strings.ReplaceAll(room, ".", "~")
}

// subject is the subject a message of room with opcode op is published on.
func subject(room string, op byte) string {
	if op == bus.Text {
		return SubjectPrefix + roomToken(room) + "." + tokenText
	}
	return SubjectPrefix + roomToken(room) + "." + tokenBinary
}

// filter is what an instance subscribes to while room has members on it.
func filter(room string) string {
	return SubjectPrefix + roomToken(room) + ".*"
}

// parseSubject reverses subject. ok is false for a subject loopcast does
// not publish. room is a substring of subj unless the name has a '.'.
func parseSubject(subj string) (room string, op byte, ok bool) {
	rest, ok := strings.CutPrefix(subj, SubjectPrefix)
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return "", 0, false
	}
	switch rest[i+1:] {
	case tokenText:
		op = bus.Text
	case tokenBinary:
		op = bus.Binary
	default:
		return "", 0, false
	}
	room = rest[:i]
	if strings.IndexByte(room, '.') >= 0 {
		return "", 0, false
	}
	if strings.IndexByte(room, '~') >= 0 {
		room = strings.ReplaceAll(room, "~", ".")
	}
	return room, op, true
}
