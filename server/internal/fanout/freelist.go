package fanout

import "github.com/valyala/bytebufferpool"

// freeList keeps a loop's cork and batch buffers for reuse. Unlike
// sync.Pool it survives garbage collections, so steady fan-out allocates
// nothing. It holds at most maxBytes of capacity and no buffer over
// maxCap; trim gives back, each tick, the buffers no cycle needed since
// the previous trim.
type freeList struct {
	bufs     []*bytebufferpool.ByteBuffer
	bytes    int // capacity held
	low      int // fewest buffers held since the last trim
	maxBytes int
	maxCap   int
}

func (f *freeList) get() *bytebufferpool.ByteBuffer {
	n := len(f.bufs)
	if n == 0 {
		f.low = 0
		return new(bytebufferpool.ByteBuffer)
	}
	b := f.bufs[n-1]
	f.bufs[n-1] = nil
	f.bufs = f.bufs[:n-1]
	f.bytes -= cap(b.B)
	f.low = min(f.low, n-1)
	return b
}

func (f *freeList) put(b *bytebufferpool.ByteBuffer) {
	if c := cap(b.B); c > f.maxCap || f.bytes+c > f.maxBytes {
		return // let the garbage collector have an oversized or surplus one
	}
	b.B = b.B[:0]
	f.bufs = append(f.bufs, b)
	f.bytes += cap(b.B)
}

// trim gives the garbage collector the buffers that stayed unused since
// the last trim (the bottom of the stack, below the low-water mark), so
// the memory of a burst does not stay with an idle loop.
func (f *freeList) trim() {
	if drop := f.low; drop > 0 {
		for _, b := range f.bufs[:drop] {
			f.bytes -= cap(b.B)
		}
		n := copy(f.bufs, f.bufs[drop:])
		clear(f.bufs[n:])
		f.bufs = f.bufs[:n]
		if c := cap(f.bufs); c > shrinkMinCap && n < c/shrinkFactor {
			f.bufs = append(make([]*bytebufferpool.ByteBuffer, 0, c/2), f.bufs...)
		}
	}
	f.low = len(f.bufs)
}
