package fanout

import (
	"sync"
	"sync/atomic"

	"github.com/valyala/bytebufferpool"
)

// Message is one room message as Config.Encode sees it. Payload is only
// valid during the call.
type Message struct {
	Op      byte   // the WebSocket opcode it was published with
	Epoch   uint64 // the room's epoch when it was sequenced
	Offset  uint64 // its place in the room's order, from 1
	Payload []byte
}

func (f *sharedMsg) message() Message {
	return Message{Op: f.op, Epoch: f.epoch, Offset: f.offset, Payload: f.buf.B}
}

// msgOverhead is what a message in history costs beyond its payload
// buffer's capacity (the sharedMsg and its ring slot), in bytes, for
// HistoryConfig.MaxBytes.
const msgOverhead = 64

// maxSlackBytes bounds how much larger than twice its payload a
// message's pooled buffer may be: a small message that gets a buffer a
// large one grew (pooled buffers are reused) is copied into a buffer of
// its own size instead, so that what history charges (the buffer's
// capacity) is what the message holds.
const maxSlackBytes = 256

// sharedMsg is one room message shared by every loop and by the room's
// history: its payload in a pooled buffer, its opcode, and the offset and
// time the owner gave it. refs counts the holders (the publisher while it
// hands the message out, each task carrying it, the history), and the
// last release returns it to the pool. Offset and at are written once by
// the owner before the message is handed on, and only read afterwards.
type sharedMsg struct {
	buf    *bytebufferpool.ByteBuffer
	op     byte
	epoch  uint64
	offset uint64
	at     int64 // owner loop's clock (Loop.now) when sequenced
	refs   atomic.Int32
	// replayed caches the Framed|Compressed frame of the message, built
	// by the first replay that needs it (on any loop) and shared by every
	// later one: a reconnect storm compresses each replayed message once,
	// not once per resuming member. Dropped with the message.
	replayed atomic.Pointer[[]byte]
}

var msgPool = sync.Pool{New: func() any { return new(sharedMsg) }}

// newSharedMsg copies payload into a pooled message, refs = 1.
func newSharedMsg(op byte, payload []byte) *sharedMsg {
	f := msgPool.Get().(*sharedMsg)
	f.buf = bytebufferpool.Get()
	if cap(f.buf.B) > 2*len(payload)+maxSlackBytes {
		f.buf.B = make([]byte, 0, len(payload)) // the large array goes to the collector
	}
	f.buf.B = append(f.buf.B, payload...)
	f.op, f.epoch, f.offset, f.at = op, 0, 0, 0
	f.refs.Store(1)
	return f
}

func (f *sharedMsg) retain() { f.refs.Add(1) }

func (f *sharedMsg) release() {
	if f.refs.Add(-1) == 0 {
		bytebufferpool.Put(f.buf)
		f.buf = nil
		f.replayed.Store(nil)
		msgPool.Put(f)
	}
}

func (f *sharedMsg) size() int64 { return int64(cap(f.buf.B)) + msgOverhead }

// replayFrame is f's Framed|Compressed frame, encoded once for every
// replay of it (see sharedMsg.replayed). Two loops that race both encode;
// one of the two frames is kept.
func (f *sharedMsg) replayFrame(enc func([]byte, Kind, *Room, Message) []byte, r *Room) []byte {
	if p := f.replayed.Load(); p != nil {
		return *p
	}
	b := enc(nil, Framed|Compressed, r, f.message())
	f.replayed.CompareAndSwap(nil, &b)
	return *f.replayed.Load()
}
