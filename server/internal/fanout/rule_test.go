package fanout

import (
	"bytes"
	"testing"
)

// The slow-consumer rule, for every way bytes reach a connection: n more
// bytes are queued when nothing is unsent, or when unsent plus n stays
// within MaxPending; otherwise Overflow is called once and nothing of
// them is queued. The close frame (Queue) is never refused.
func TestSlowConsumerRule(t *testing.T) {
	const maxPending = 100
	for _, tc := range []struct {
		name    string
		backlog int
		n       int
		admit   bool
	}{
		{"nothing unsent, larger than max-pending", 0, 5 * maxPending, true},
		{"backlog plus n at the limit", 60, 40, true},
		{"backlog plus n one over", 61, 40, false},
		{"backlog already at the limit", maxPending, 1, false},
		{"one byte unsent, n = max-pending", 1, maxPending, false},
	} {
		for _, send := range []struct {
			kind string
			do   func(m *Member, p []byte) bool
		}{
			{"Admit", func(m *Member, p []byte) bool { return m.Admit(len(p)) }},
			{"Send", (*Member).Send},
			{"Deliver", (*Member).SendData},
			{"batch part", func(m *Member, p []byte) bool {
				l := m.loop
				l.Publish(m.Room(), Publication{Op: p[0], Payload: p[1:]}, Ack{})
				l.flush()
				return m.conn.(*fakeConn).overflows == 0
			}},
		} {
			t.Run(tc.name+"/"+send.kind, func(t *testing.T) {
				_, l, cl := oneLoop(t, maxPending)
				c := newMember(l, "r")
				c.backlog = tc.backlog
				p := bytes.Repeat([]byte{'p'}, tc.n)
				got := send.do(&c.m, p)
				cl.endCycle()
				if got != tc.admit {
					t.Fatalf("admitted %v, want %v", got, tc.admit)
				}
				wantOverflows := 0
				if !tc.admit {
					wantOverflows = 1
				}
				if c.overflows != wantOverflows {
					t.Fatalf("%d overflows, want %d", c.overflows, wantOverflows)
				}
				if !tc.admit && bytes.Contains(c.wrote, p) {
					t.Fatal("refused bytes were written")
				}
			})
		}
	}
	t.Run("close frame never refused", func(t *testing.T) {
		_, l, _ := oneLoop(t, maxPending)
		c := newMember(l, "r")
		c.backlog = 10 * maxPending
		c.m.Queue(closeFrame)
		if c.overflows != 0 || !bytes.Equal(c.take(), closeFrame) {
			t.Fatal("the close frame was refused")
		}
	})
}
