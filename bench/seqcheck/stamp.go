package seqcheck

import "encoding/binary"

// A numbered message starts with a 16-byte stamp and is padded to its size:
//
//	[0:8]  sequence: publisher id in the top 16 bits, number in the low 48
//	[8:16] send time, Unix nanoseconds (for fixed-rate runs, the scheduled time,
//	       so that a stalled publisher does not hide latency)
const (
	// StampSize is the length of the stamp, the smallest numbered message.
	StampSize = 16
	seqBits   = 48
	seqMask   = 1<<seqBits - 1
	// WarmupPublisher marks warm-up messages, sent until every member has
	// one so that measurement starts only once every member has joined.
	WarmupPublisher = 0xffff
)

// PutStamp writes the stamp of publisher pub's message n, sent at ns, at
// the front of b (at least StampSize bytes).
func PutStamp(b []byte, pub uint16, n uint64, ns int64) {
	binary.BigEndian.PutUint64(b, uint64(pub)<<seqBits|n&seqMask)
	binary.BigEndian.PutUint64(b[8:], uint64(ns))
}

// ReadStamp reads the stamp at the front of b; ok is false when b is
// shorter than a stamp.
func ReadStamp(b []byte) (pub uint16, n uint64, ns int64, ok bool) {
	if len(b) < StampSize {
		return 0, 0, 0, false
	}
	s := binary.BigEndian.Uint64(b)
	return uint16(s >> seqBits), s & seqMask, int64(binary.BigEndian.Uint64(b[8:])), true
}
