package occupancy

import (
	"encoding/binary"
	"errors"

	"github.com/loopcast/loopcast/server/internal/command"
)

const (
	version = 1
	// maxCount bounds a count in a batch: more members than this in one
	// room on one instance is not a count, it is a corrupt batch.
	maxCount = 1 << 40
	// MaxUser and MaxInfo bound a Users entry's user id and data.
	MaxUser = 256
	MaxInfo = 1024
)

// Kind is what a batch counts; its first byte.
type Kind byte

const (
	// Rooms: a key is a room, a count its members on the sender.
	Rooms Kind = 'O'
	// Users: a key is UserKey(room, user), a count the user's connections
	// in the room on the sender, the data the user's info (JSON).
	Users Kind = 'P'
)

// UserKey is a Users entry's key: the room, a NUL, the user.
func UserKey(room, user string) string { return room + "\x00" + user }

// SplitUserKey reverses UserKey.
func SplitUserKey(key string) (room, user string) {
	for i := 0; i < len(key); i++ {
		if key[i] == 0 {
			return key[:i], key[i+1:]
		}
	}
	return key, ""
}

// Value is an entry's count and, in a Users batch, its data.
type Value struct {
	Count int64
	Data  []byte
}

// Header is a batch's first fields.
type Header struct {
	Kind  Kind
	From  uint64 // the sending instance's id (random, per process)
	Seq   uint64 // 1 for its first batch, then +1 each
	Cycle uint64 // the sender's refresh cycle (see Reporter)
}

// Batch errors.
var (
	ErrBadBatch = errors.New("occupancy: not a batch of this version")
	ErrBadEntry = errors.New("occupancy: malformed entry")
)

// appendHeader appends a batch's header.
func appendHeader(dst []byte, h Header) []byte {
	dst = append(dst, byte(h.Kind), version)
	dst = binary.AppendUvarint(dst, h.From)
	dst = binary.AppendUvarint(dst, h.Seq)
	return binary.AppendUvarint(dst, h.Cycle)
}

// appendEntry appends one entry; data only in a Users batch.
func appendEntry(dst []byte, k Kind, key string, v Value) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(v.Count))
	if k == Users {
		dst = binary.AppendUvarint(dst, uint64(len(v.Data)))
		dst = append(dst, v.Data...)
	}
	return dst
}

// entryLen is appendEntry's length, at most.
func entryLen(key string, v Value) int { return 2 + len(key) + binary.MaxVarintLen64 + 2 + len(v.Data) }

// Parse reads a batch: its header, then fn for each entry in order.
// key and data alias b and are valid during the call only. Parse does
// not allocate. On an error fn may have been called for the entries
// before the malformed one.
func Parse(b []byte, fn func(key []byte, count int64, data []byte)) (Header, error) {
	var h Header
	if len(b) < 2 || (Kind(b[0]) != Rooms && Kind(b[0]) != Users) || b[1] != version {
		return h, ErrBadBatch
	}
	h.Kind = Kind(b[0])
	b = b[2:]
	for _, p := range []*uint64{&h.From, &h.Seq, &h.Cycle} {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return h, ErrBadBatch
		}
		*p, b = v, b[n:]
	}
	if err := parseEntries(h.Kind, b, fn); err != nil {
		return h, err
	}
	return h, nil
}

// ParseHeader reads a batch's header and checks every entry without
// calling back.
func ParseHeader(b []byte) (Header, error) {
	return Parse(b, func([]byte, int64, []byte) {})
}

// field reads a uvarint length and that many bytes, at most max.
func field(b []byte, max uint64) (f, rest []byte, ok bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > max || uint64(len(b)-n) < l {
		return nil, nil, false
	}
	return b[n : n+int(l)], b[n+int(l):], true
}

func parseEntries(k Kind, b []byte, fn func(key []byte, count int64, data []byte)) error {
	for len(b) > 0 {
		key, rest, ok := field(b, command.MaxRoom+1+MaxUser)
		if !ok || !validKey(k, key) {
			return ErrBadEntry
		}
		c, n := binary.Uvarint(rest)
		if n <= 0 || c > maxCount {
			return ErrBadEntry
		}
		b = rest[n:]
		var data []byte
		if k == Users {
			if data, b, ok = field(b, MaxInfo); !ok {
				return ErrBadEntry
			}
		}
		fn(key, int64(c), data)
	}
	return nil
}

// validKey: a room (Rooms); a room, a NUL and 1 to MaxUser bytes without
// a NUL (Users).
func validKey(k Kind, key []byte) bool {
	if k == Rooms {
		return command.ValidRoom(key)
	}
	for i, c := range key {
		if c == 0 {
			user := key[i+1:]
			if !command.ValidRoom(key[:i]) || len(user) == 0 || len(user) > MaxUser {
				return false
			}
			for _, u := range user {
				if u == 0 {
					return false
				}
			}
			return true
		}
	}
	return false
}
