package fanout

import (
	"testing"

	"github.com/valyala/bytebufferpool"
)

// The free list keeps what recent cycles used, gives back each trim what
// no cycle needed since the previous one, and never holds more than
// maxBytes, nor a buffer over maxCap.
func TestFreeListTrimsAndBounds(t *testing.T) {
	const maxBytes, maxCap = 8 << 20, 128 << 10
	f := &freeList{maxBytes: maxBytes, maxCap: maxCap}
	take := func(n, size int) []*bytebufferpool.ByteBuffer {
		var bs []*bytebufferpool.ByteBuffer
		for range n {
			b := f.get()
			b.B = append(b.B[:0], make([]byte, size)...)
			bs = append(bs, b)
		}
		return bs
	}
	give := func(bs []*bytebufferpool.ByteBuffer) {
		for _, b := range bs {
			f.put(b)
		}
	}
	check := func(step string, n int) {
		t.Helper()
		held := 0
		for _, b := range f.bufs {
			held += cap(b.B)
		}
		if len(f.bufs) != n || f.bytes != held {
			t.Fatalf("%s: %d free buffers (%d bytes counted, %d held), want %d", step, len(f.bufs), f.bytes, held, n)
		}
	}
	give(take(100, 1000)) // a burst
	f.trim()              // the burst emptied the list: all were needed
	check("after the burst's trim", 100)
	for range 5 { // steady cycles of 3 buffers
		give(take(3, 1000))
	}
	f.trim()
	check("after steady cycles", 3)
	f.trim()
	check("after an idle tick", 0)

	big := take(maxBytes/(32<<10)+10, 32<<10)
	give(big)
	if f.bytes > maxBytes {
		t.Fatalf("free list holds %d bytes, over %d", f.bytes, maxBytes)
	}
	if len(f.bufs) >= len(big) {
		t.Fatalf("free list kept all %d buffers of 32 KiB", len(big))
	}
	give(take(1, maxCap+1)) // oversized: never kept
	for _, b := range f.bufs {
		if cap(b.B) > maxCap {
			t.Fatalf("kept an oversized buffer of %d bytes", cap(b.B))
		}
	}
}
