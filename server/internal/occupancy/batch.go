package occupancy

import (
	"encoding/binary"
	"errors"

	"github.com/loopcast/loopcast/server/internal/command"
)

const (
	magic   = 'O'
	version = 1
	// maxCount bounds a count in a batch: more members than this in one
	// room on one instance is not a count, it is a corrupt batch.
	maxCount = 1 << 40
)

// Header is a batch's first fields.
type Header struct {
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
	dst = append(dst, magic, version)
	dst = binary.AppendUvarint(dst, h.From)
	dst = binary.AppendUvarint(dst, h.Seq)
	return binary.AppendUvarint(dst, h.Cycle)
}

// appendEntry appends one room's count.
func appendEntry(dst []byte, room string, count int64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(room)))
	dst = append(dst, room...)
	return binary.AppendUvarint(dst, uint64(count))
}

// entryLen is appendEntry's length, at most.
func entryLen(room string) int { return 1 + len(room) + binary.MaxVarintLen64 }

// Parse reads a batch: its header, then fn for each entry in order.
// room aliases b and is valid during the call only. Parse does not
// allocate. On an error fn may have been called for the entries before
// the malformed one.
func Parse(b []byte, fn func(room []byte, count int64)) (Header, error) {
	var h Header
	if len(b) < 2 || b[0] != magic || b[1] != version {
		return h, ErrBadBatch
	}
	b = b[2:]
	for _, p := range []*uint64{&h.From, &h.Seq, &h.Cycle} {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return h, ErrBadBatch
		}
		*p, b = v, b[n:]
	}
	if err := parseEntries(b, fn); err != nil {
		return h, err
	}
	return h, nil
}

// ParseHeader reads a batch's header and checks every entry without
// calling back.
func ParseHeader(b []byte) (Header, error) {
	return Parse(b, func([]byte, int64) {})
}

func parseEntries(b []byte, fn func(room []byte, count int64)) error {
	for len(b) > 0 {
		l, n := binary.Uvarint(b)
		if n <= 0 || l == 0 || l > command.MaxRoom || uint64(len(b)-n) < l {
			return ErrBadEntry
		}
		room := b[n : n+int(l)]
		b = b[n+int(l):]
		if !command.ValidRoom(room) {
			return ErrBadEntry
		}
		c, n := binary.Uvarint(b)
		if n <= 0 || c > maxCount {
			return ErrBadEntry
		}
		b = b[n:]
		fn(room, int64(c))
	}
	return nil
}
