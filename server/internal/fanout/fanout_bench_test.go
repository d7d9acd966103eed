package fanout

import (
	"fmt"
	"testing"
	"time"
)

// discardConn is a connection whose socket takes everything.
type discardConn struct{ n int }

func (c *discardConn) Queued() int                 { return 0 }
func (c *discardConn) Write(p []byte)              { c.n += len(p) }
func (c *discardConn) Overflow()                   { panic("discardConn never overflows") }
func (c *discardConn) Subscribed(*Sub, JoinResult) {}
func (c *discardConn) Published(uint32, Answer)    {}
func (c *discardConn) member(l *Loop) *Member {
	m := &Member{}
	m.Init(l, c)
	return m
}

// BenchmarkFanoutEngine measures the engine alone: one op is one 64-byte
// message published on two loops' room (half the members on each),
// handed from the owner to the other loop, batched and written to every
// member at the end of each cycle of 16 messages. It holds 0 allocs/op.
func BenchmarkFanoutEngine(b *testing.B) {
	for _, history := range []bool{false, true} {
		for _, members := range []int{10, 100, 1000} {
			benchFanout(b, members, history)
		}
	}
}

// benchFanout is one case of BenchmarkFanoutEngine; with history each
// message is also kept in the room's history (1000 messages, so the ring
// is full and every append drops the oldest).
func benchFanout(b *testing.B, members int, history bool) {
	b.Run(fmt.Sprintf("history=%v/members=%d", history, members), func(b *testing.B) {
		cfg := testConfig(2, 1<<20)
		if history {
			cfg.History = HistoryConfig{Messages: 1000, TTL: time.Hour, MaxBytes: 1 << 30}
		}
		e := New(cfg)
		c0, c1 := &cycleLoop{}, &cycleLoop{}
		l0, l1 := e.AddLoop(c0), e.AddLoop(c1)
		for i := range members {
			l := l0
			if i%2 == 1 {
				l = l1
			}
			(&discardConn{}).member(l).Join([]byte("bench"), Raw)
		}
		r := e.rooms["bench"]
		payload := make([]byte, 64)
		cycle := func() {
			c0.endCycle()
			c1.endCycle()
		}
		for range 2048 { // warm up pools, buffers and the history ring
			l0.Publish(r, Publication{Op: 0x82, Payload: payload}, Ack{})
		}
		cycle()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			l0.Publish(r, Publication{Op: 0x82, Payload: payload}, Ack{})
			if i%16 == 15 {
				cycle()
			}
		}
		cycle()
		b.ReportMetric(float64(b.N*members)/b.Elapsed().Seconds(), "deliveries/s")
	})
}
