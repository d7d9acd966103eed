package scenario

import "encoding/binary"

// A measured message starts with a 16-byte header and is padded to its size:
//
//	[0:8]  sequence: publisher id in the top 16 bits, number in the low 48
//	[8:16] send time, Unix nanoseconds (for fixed-rate runs, the scheduled time,
//	       so that a stalled publisher does not hide latency)
const (
	headerSize = 16
	seqBits    = 48
	seqMask    = 1<<seqBits - 1
	// warmupPub marks warm-up messages, sent until every member has one so
	// that measurement starts only once every member has joined the room.
	warmupPub = 0xffff
)

func putHeader(b []byte, pub uint16, n uint64, ns int64) {
	binary.BigEndian.PutUint64(b, uint64(pub)<<seqBits|n&seqMask)
	binary.BigEndian.PutUint64(b[8:], uint64(ns))
}

func readHeader(b []byte) (pub uint16, n uint64, ns int64, ok bool) {
	if len(b) < headerSize {
		return 0, 0, 0, false
	}
	s := binary.BigEndian.Uint64(b)
	return uint16(s >> seqBits), s & seqMask, int64(binary.BigEndian.Uint64(b[8:])), true
}
