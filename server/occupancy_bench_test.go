package server_test

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/gobwas/ws"
)

// BenchmarkOccupancyTick is one occupancy interval (once a second) of an
// instance with 1,000 rooms, each with a member and a watcher, counts
// steady: reading every room's count, building and sharing the batch,
// looking at every watched room. ns/op divided by 1e9 is the share of one
// core it costs; members do not change it (a count is one atomic per
// room), rooms do.
func BenchmarkOccupancyTick(b *testing.B) {
	const rooms = 1000
	cfg := testConfig()
	srv := startServer(b, cfg)
	addr := srv.Addr().String()
	var conns []net.Conn
	var wg sync.WaitGroup
	for i := range rooms {
		room := fmt.Sprintf("room-%04d", i)
		conns = append(conns, rawMember(b, addr, "/ws/"+room))
		w := rawMember(b, addr, "/ws", "Sec-WebSocket-Protocol: loopcast.v1")
		if _, err := w.Write(maskedClientFrame(ws.OpText, []byte("watch 1 "+room+" occupancy"))); err != nil {
			b.Fatal(err)
		}
		conns = append(conns, w)
	}
	for _, c := range conns {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, c) }()
	}
	var batchBytes int
	share := func(p []byte) error { batchBytes = len(p); return nil }
	for srv.Rooms()[rooms-1].Members != 1 || srv.Occupancy(fmt.Sprintf("room-%04d", rooms-1)) != 1 {
		srv.OccupancyTick(share)
	}
	for range 20 { // past the changes: a full refresh cycle, counts steady
		srv.OccupancyTick(share)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		srv.OccupancyTick(share)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9*100, "%core")
	b.ReportMetric(float64(batchBytes), "batch-bytes")
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
}
