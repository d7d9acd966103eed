package cluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	natsserver "github.com/nats-io/nats-server/v2/server"
	natstest "github.com/nats-io/nats-server/v2/test"
	"go.uber.org/goleak"

	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
	"github.com/loopcast/loopcast/server/cluster"
)

// TestMain fails the package if a test leaves goroutines behind. gnet's
// shared worker pool (ants) keeps idle workers by design; not ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*goWorker).run.func1"),
	)
}

// runNATS starts a real NATS server in the test process on 127.0.0.1:port
// (0: any free port) and shuts it down at cleanup. maxPayload 0 keeps
// NATS's default (1 MiB).
func runNATS(t testing.TB, port int, maxPayload int32) *natsserver.Server {
	t.Helper()
	opts := natstest.DefaultTestOptions
	opts.Port = port
	if port == 0 {
		opts.Port = -1
	}
	opts.MaxPayload = maxPayload
	ns := natstest.RunServer(&opts)
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func natsURL(ns *natsserver.Server) string { return "nats://" + ns.Addr().String() }

// freePort returns a loopback port nobody listens on (for now).
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// node is one loopcast instance with its NATS bridge.
type node struct {
	srv    *server.Server
	bridge *cluster.Bridge
	logs   *syncBuffer
	stop   sync.Once
}

type syncBuffer = testutil.SyncBuffer

// startNode runs a server on 127.0.0.1:0 (two event loops, no admin
// listener, no publish rate limit: the tests publish in bursts) bridged to
// NATS at url, the way cmd/loopcast wires them.
func startNode(t testing.TB, url string, adjust ...func(*server.Config)) *node {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.AdminAddr = ""
	cfg.EventLoops = 2
	cfg.PublishRate = 0
	for _, f := range adjust {
		f(&cfg)
	}
	n := &node{logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := cluster.New(cluster.Options{
		URL: url, Logger: log, MaxMessage: cfg.MaxMessage,
		ReconnectWait: 10 * time.Millisecond, MaxReconnectWait: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Broker = b
	srv, err := server.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	n.srv, n.bridge = srv, b
	t.Cleanup(func() {
		n.close(t)
		if t.Failed() {
			t.Logf("node %s log:\n%s", srv.Addr(), n.logs.String())
		}
	})
	return n
}

// close stops the server, then the bridge, as the command does.
func (n *node) close(t testing.TB) {
	n.stop.Do(func() {
		if err := n.srv.Close(); err != nil {
			t.Errorf("server close: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.bridge.Close(ctx); err != nil {
			t.Errorf("bridge close: %v", err)
		}
	})
}

// member is a WebSocket client in a room, collecting what it receives.
type member struct {
	name string
	ws   *gorilla.Conn
	mu   sync.Mutex
	msgs []string
	ops  []int // gorilla message types, parallel to msgs
	done chan struct{}
	err  error
}

func join(t testing.TB, n *node, room, name string) *member {
	t.Helper()
	ws, _, err := gorilla.DefaultDialer.Dial("ws://"+n.srv.Addr().String()+"/ws/"+room, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &member{name: name, ws: ws, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			op, b, err := ws.ReadMessage()
			if err != nil {
				m.mu.Lock()
				m.err = err
				m.mu.Unlock()
				return
			}
			m.mu.Lock()
			m.msgs = append(m.msgs, string(b))
			m.ops = append(m.ops, op)
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() { m.leave() })
	return m
}

func (m *member) leave() {
	_ = m.ws.Close()
	<-m.done
}

func (m *member) send(t testing.TB, msg string) {
	t.Helper()
	if err := m.ws.WriteMessage(gorilla.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("%s send: %v", m.name, err)
	}
}

func (m *member) opcodes() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]int(nil), m.ops...)
}

func (m *member) received() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.msgs...)
}

// waitFor polls cond until it holds or the timeout passes.
var waitFor = testutil.WaitFor

// waitInterest waits until want instances subscribe to room on NATS, so
// that a message published next reaches all of them.
func waitInterest(t testing.TB, ns *natsserver.Server, room string, want int) {
	t.Helper()
	subj := "loopcast.room." + strings.ReplaceAll(room, ".", "~") + ".text"
	waitFor(t, 5*time.Second, fmt.Sprintf("%d subscriptions to %s", want, subj), func() bool {
		return ns.GlobalAccount().Interest(subj) == want
	})
}

// msg is "publisher:seq", what the tests publish.
func msg(pub string, seq int) string { return pub + ":" + strconv.Itoa(seq) }

// settle makes sure nothing more is on its way to members from nodes:
// each node publishes a marker to room, after everything it sent before,
// and settle waits until every member got every marker. A duplicate or a
// late message of a node would arrive before its marker (the room's
// owner loop forwards in the room's order, and NATS keeps each
// connection's order). It returns how many markers each member got.
func settle(t testing.TB, room string, nodes []*node, members ...*member) int {
	t.Helper()
	for i, n := range nodes {
		if _, err := n.srv.Publish(room, server.Text, []byte(msg(fmt.Sprintf("marker%d", i), 0))); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members {
		waitFor(t, 10*time.Second, m.name+" to get the markers", func() bool {
			n := 0
			for _, s := range m.received() {
				if strings.HasPrefix(s, "marker") {
					n++
				}
			}
			return n == len(nodes)
		})
	}
	return len(nodes)
}

// checkOrder reports duplicates and reordering: every publisher's
// sequence numbers must strictly increase. It returns them by publisher.
func checkOrder(t testing.TB, who string, msgs []string) map[string][]int {
	t.Helper()
	by := map[string][]int{}
	for _, s := range msgs {
		pub, seq, ok := strings.Cut(s, ":")
		n, err := strconv.Atoi(seq)
		if !ok || err != nil {
			t.Errorf("%s: unexpected message %q", who, s)
			continue
		}
		if l := by[pub]; len(l) > 0 && n <= l[len(l)-1] {
			t.Errorf("%s: %s after %s: duplicate or out of order", who, s, msg(pub, l[len(l)-1]))
		}
		by[pub] = append(by[pub], n)
	}
	return by
}

// hasAll reports whether seqs holds every number in [from, to).
func hasAll(seqs []int, from, to int) bool {
	have := map[int]bool{}
	for _, n := range seqs {
		have[n] = true
	}
	for i := from; i < to; i++ {
		if !have[i] {
			return false
		}
	}
	return true
}
