package fanout

import (
	"bytes"
	"context"
	"sync"
	"testing"
)

// cycleLoop is an Executor for single-goroutine tests: Execute queues the
// task, and endCycle runs what is queued, as an event loop does once the
// events of a poll cycle are handled.
type cycleLoop struct{ tasks []Task }

func (c *cycleLoop) Execute(_ context.Context, t Task) error {
	c.tasks = append(c.tasks, t)
	return nil
}

func (c *cycleLoop) endCycle() {
	for i := 0; i < len(c.tasks); i++ { // tasks may queue more tasks
		_ = c.tasks[i].Run(context.Background())
	}
	clear(c.tasks)
	c.tasks = c.tasks[:0]
}

// fakeConn is a member's connection: it records every Write (bytes and
// count) and reports backlog as its unsent bytes. Overflow does what the
// server does for a WebSocket: leave the room and queue a close frame.
type fakeConn struct {
	m       Member
	wrote   []byte
	writes  int
	backlog int
	// overflows counts Overflow calls; closed is set by Overflow.
	overflows int
	closed    bool
	// onWrite, when set, runs after each Write (to leave or release
	// members in the middle of a flush).
	onWrite func()
	// joins and acks record Subscribed and Published; onJoin, when set,
	// runs in Subscribed (to queue an acknowledgement frame).
	joins  []JoinResult
	acks   []ack
	onJoin func(*Sub, JoinResult)
}

type ack struct {
	id     uint32
	room   string
	offset uint64
}

var closeFrame = []byte("<close 1013>")

func (c *fakeConn) Queued() int { return c.backlog }

func (c *fakeConn) Write(p []byte) {
	c.wrote = append(c.wrote, p...)
	c.writes++
	if c.onWrite != nil {
		c.onWrite()
	}
}

func (c *fakeConn) Subscribed(s *Sub, res JoinResult) {
	c.joins = append(c.joins, res)
	if c.onJoin != nil {
		c.onJoin(s, res)
	}
}

func (c *fakeConn) Published(id uint32, a Answer) {
	c.acks = append(c.acks, ack{id, a.Room, a.Offset})
}

func (c *fakeConn) Overflow() {
	c.overflows++
	c.closed = true
	c.m.Leave()
	c.m.Queue(closeFrame)
}

// take returns what was written since the last take.
func (c *fakeConn) take() []byte {
	b := c.wrote
	c.wrote = nil
	return b
}

func testConfig(loops, maxPending int) Config {
	return Config{Loops: loops, MaxPending: maxPending, CorkLimit: 64 << 10, MaxFreeBytes: 8 << 20}
}

// oneLoop is an engine with one loop driven by the test.
func oneLoop(t *testing.T, maxPending int) (*Engine, *Loop, *cycleLoop) {
	t.Helper()
	e := New(testConfig(1, maxPending))
	cl := &cycleLoop{}
	return e, e.AddLoop(cl), cl
}

func newMember(l *Loop, room string) *fakeConn {
	c := &fakeConn{}
	c.m.Init(l, c)
	if room != "" {
		c.m.Join([]byte(room), Raw)
	}
	return c
}

// frame is a test frame: a one-byte header naming the payload's length,
// then the payload. The engine does not look inside frames.
func frame(payload string) []byte { return append([]byte{byte(len(payload))}, payload...) }

func publish(l *Loop, r *Room, payload string) {
	f := frame(payload)
	l.Publish(r, Publication{Op: f[0], Payload: f[1:]}, Ack{})
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// goLoop is an Executor with its own goroutine, like an event loop: tasks
// run in the order Execute accepted them. stop ends it after the queued
// tasks ran.
type goLoop struct {
	mu    sync.Mutex
	cond  *sync.Cond
	queue []Task
	done  bool
	exit  chan struct{}
}

func startGoLoop() *goLoop {
	g := &goLoop{exit: make(chan struct{})}
	g.cond = sync.NewCond(&g.mu)
	go g.run()
	return g
}

func (g *goLoop) Execute(_ context.Context, t Task) error {
	g.mu.Lock()
	g.queue = append(g.queue, t)
	g.mu.Unlock()
	g.cond.Signal()
	return nil
}

// do runs f on the loop and waits for it.
func (g *goLoop) do(f func()) {
	done := make(chan struct{})
	_ = g.Execute(context.Background(), taskFunc(func() { f(); close(done) }))
	<-done
}

func (g *goLoop) run() {
	defer close(g.exit)
	for {
		g.mu.Lock()
		for len(g.queue) == 0 && !g.done {
			g.cond.Wait()
		}
		if len(g.queue) == 0 {
			g.mu.Unlock()
			return
		}
		t := g.queue[0]
		g.queue = g.queue[1:]
		g.mu.Unlock()
		_ = t.Run(context.Background())
	}
}

func (g *goLoop) stop() {
	g.mu.Lock()
	g.done = true
	g.mu.Unlock()
	g.cond.Signal()
	<-g.exit
}
