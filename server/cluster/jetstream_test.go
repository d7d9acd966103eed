package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	natsserver "github.com/nats-io/nats-server/v2/server"
	natstest "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
	"github.com/loopcast/loopcast/server/cluster"
)

// runJetStream starts a real NATS server with JetStream in the test
// process; storeDir "" is a fresh temporary directory.
func runJetStream(t testing.TB, port int, storeDir string) *natsserver.Server {
	t.Helper()
	opts := natstest.DefaultTestOptions
	opts.Port = port
	if port == 0 {
		opts.Port = -1
	}
	opts.JetStream = true
	if storeDir == "" {
		storeDir = t.TempDir()
	}
	opts.StoreDir = storeDir
	ns := natstest.RunServer(&opts)
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// jsNode is one loopcast instance over a JetStream log.
type jsNode struct {
	srv    *server.Server
	stream *cluster.Stream
	logs   *syncBuffer
	stop   sync.Once
}

func startJSNode(t testing.TB, url string, storage jetstream.StorageType, adjust ...func(*server.Config)) *jsNode {
	t.Helper()
	return startJSNodeWait(t, url, storage, true, adjust...)
}

// startJSNodeWait is startJSNode; ready says whether to wait until the
// node warmed up from the stream.
func startJSNodeWait(t testing.TB, url string, storage jetstream.StorageType, ready bool, adjust ...func(*server.Config)) *jsNode {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.AdminAddr = ""
	cfg.EventLoops = 2
	cfg.PublishRate = 0
	for _, f := range adjust {
		f(&cfg)
	}
	n := &jsNode{logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := cluster.NewStream(cluster.StreamOptions{
		URL: url, Logger: log, MaxMessage: cfg.MaxMessage, Storage: storage,
		ReconnectWait: 10 * time.Millisecond, MaxReconnectWait: 100 * time.Millisecond,
		HistoryMessages: cfg.HistoryMessages, HistoryTTL: cfg.HistoryTTL, HistoryBytes: int64(cfg.HistoryMaxBytes),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Broker = st
	srv, err := server.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	n.srv, n.stream = srv, st
	t.Cleanup(func() {
		n.close(t)
		if t.Failed() {
			t.Logf("node %s log:\n%s", srv.Addr(), n.logs.String())
		}
	})
	if ready {
		testutil.WaitFor(t, 10*time.Second, "the node warmed up", st.Ready)
	}
	return n
}

// adminPost posts body to the node's admin path with header pairs
// (name, value, ...).
func adminPost(t testing.TB, n *jsNode, path, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Content-Type", "text/plain")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	n.srv.AdminHandler().ServeHTTP(rec, req)
	return rec
}

func (n *jsNode) close(t testing.TB) {
	n.stop.Do(func() {
		if err := n.srv.Close(); err != nil {
			t.Errorf("server close: %v", err)
		}
		_ = n.stream.Close(context.Background())
	})
}

func (n *jsNode) addr() string { return n.srv.Addr().String() }

// publishRetrying publishes through node i%len(nodes) in turn, retrying
// for up to 20 s when the log is unavailable (a NATS restart), as a
// publisher does.
func publishRetrying(nodes []*jsNode) func(room, payload string) error {
	var mu sync.Mutex
	i := 0
	return func(room, payload string) error {
		mu.Lock()
		n := nodes[i%len(nodes)]
		i++
		mu.Unlock()
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := n.srv.Publish(room, server.Text, []byte(payload))
			if err == nil || time.Now().After(deadline) {
				return err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// The Application Gateway drop across three nodes over a real NATS with
// JetStream: every reconnect lands on another node than before, and
// every client still ends with every message exactly once, in order.
func TestJetStreamDropAcrossNodes(t *testing.T) {
	ns := runJetStream(t, 0, "")
	url := natsURL(ns)
	nodes := []*jsNode{startJSNode(t, url, jetstream.MemoryStorage), startJSNode(t, url, jetstream.MemoryStorage), startJSNode(t, url, jetstream.MemoryStorage)}
	gw := testutil.StartGateway(t, nodes[0].addr(), nodes[1].addr(), nodes[2].addr())
	testutil.Drop{
		Rooms: 6, Clients: 90, RoomsPerClient: 3, Messages: 200, Interval: 5 * time.Millisecond,
		Publish: publishRetrying(nodes),
	}.Run(t, gw)
	if moved := gw.Moved(); moved < 2*90 {
		t.Fatalf("%d reconnects went to another node, want every one of at least 180", moved)
	}
}

// NATS restarts in the middle (file storage keeps the stream): clients
// dropped meanwhile resume without loss once it is back.
func TestJetStreamNATSRestart(t *testing.T) {
	port, dir := freePort(t), t.TempDir()
	ns := runJetStream(t, port, dir)
	url := natsURL(ns)
	nodes := []*jsNode{startJSNode(t, url, jetstream.FileStorage), startJSNode(t, url, jetstream.FileStorage)}
	gw := testutil.StartGateway(t, nodes[0].addr(), nodes[1].addr())
	testutil.Drop{
		Rooms: 4, Clients: 40, RoomsPerClient: 2, Messages: 200, Interval: 5 * time.Millisecond,
		Publish: publishRetrying(nodes),
		AfterFirstDrop: func() {
			ns.Shutdown()
			ns.WaitForShutdown()
			time.Sleep(200 * time.Millisecond)
			runJetStream(t, port, dir)
		},
	}.Run(t, gw)
}

// A loopcast instance that starts after the messages were published (a
// rollout's new pod) warms its history up from the stream before it is
// ready, and a client resumes there without loss; the epoch is the
// stream's, so it survives the restart of every loopcast instance.
func TestJetStreamResumeOnANewInstance(t *testing.T) {
	ns := runJetStream(t, 0, "")
	url := natsURL(ns)
	old := startJSNode(t, url, jetstream.MemoryStorage)
	c := dialV1(t, old.addr(), "news")
	epoch, off := c.subscribed(t, "news")
	for i := range 5 {
		if _, err := old.srv.Publish("news", server.Text, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if _, o := c.msg(t, "news", fmt.Sprint(i)); i == 1 {
			off = o // the client got 0 and 1, then its pod went away
		}
	}
	old.close(t)
	js := startPublisher(t, url)
	for i := 5; i < 8; i++ { // published meanwhile, by a backend, straight to the stream
		if _, err := js.Publish(context.Background(), cluster.SubjectPrefix+"news.text", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	fresh := startJSNode(t, url, jetstream.MemoryStorage)
	d := dialV1(t, fresh.addr(), "")
	d.send(t, fmt.Sprintf("sub 1 news %s %d", epoch, off))
	if line := d.read(t); !strings.HasPrefix(line, "sub 1 news "+epoch+" ") || !strings.HasSuffix(line, " recovered") {
		t.Fatalf("resume on the new instance: %q", line)
	}
	for i := 2; i < 8; i++ {
		if _, o := d.msg(t, "news", fmt.Sprint(i)); o != uint64(i+1) {
			t.Fatalf("message %d at offset %d, want %d", i, o, i+1)
		}
	}
	// The whole stream is kept: a resume from 0 replays all of it.
	e := dialV1(t, fresh.addr(), "")
	e.send(t, fmt.Sprintf("sub 2 news %s 0", epoch))
	if line := e.read(t); !strings.HasSuffix(line, " recovered") {
		t.Fatalf("resume from 0 with the whole stream kept: %q", line)
	}
	for i := range 8 {
		e.msg(t, "news", fmt.Sprint(i))
	}
	e.send(t, "sub 3 news 0000000000000001 0")
	if line := e.read(t); !strings.HasPrefix(line, "err 3 already_subscribed") {
		t.Fatalf("got %q", line)
	}
}

// startPublisher is a JetStream client of its own, publishing to the
// stream's subjects while no loopcast instance runs (a backend).
func startPublisher(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestJetStreamProbe(t *testing.T) {
	core := runNATS(t, 0, 0)
	st, err := cluster.NewStream(cluster.StreamOptions{URL: natsURL(core), HistoryMessages: 1, HistoryTTL: time.Minute, HistoryBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.CloseUnstarted()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.Probe(ctx); !errors.Is(err, cluster.ErrNoJetStream) {
		t.Fatalf("Probe on core NATS: %v, want ErrNoJetStream", err)
	}
}

// v1 is a minimal loopcast.v1 client for these tests.
type v1 struct{ c *gorilla.Conn }

func dialV1(t *testing.T, addr, room string) v1 {
	t.Helper()
	d := gorilla.Dialer{Subprotocols: []string{"loopcast.v1"}, HandshakeTimeout: 5 * time.Second}
	path := "/ws"
	if room != "" {
		path += "/" + room
	}
	c, _, err := d.Dial("ws://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return v1{c}
}

func (v v1) send(t *testing.T, s string) {
	t.Helper()
	if err := v.c.WriteMessage(gorilla.TextMessage, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

func (v v1) read(t *testing.T) string {
	t.Helper()
	_ = v.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := v.c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// subscribed reads the reply to the /ws/{room} subscription.
func (v v1) subscribed(t *testing.T, room string) (epoch string, offset uint64) {
	t.Helper()
	line := v.read(t)
	var id int
	var status string
	if _, err := fmt.Sscanf(line, "sub %d "+room+" %s %d %s", &id, &epoch, &offset, &status); err != nil || status != "live" {
		t.Fatalf("sub reply %q: %v", line, err)
	}
	return epoch, offset
}

func (v v1) msg(t *testing.T, room, payload string) (epoch string, offset uint64) {
	t.Helper()
	s := v.read(t)
	line, body, _ := strings.Cut(s, "\n")
	if _, err := fmt.Sscanf(line, "msg "+room+" %s %d", &epoch, &offset); err != nil || body != payload {
		t.Fatalf("got %q, want a msg of %s with %q", s, room, payload)
	}
	return epoch, offset
}

// A resume older than what the stream still holds is told so
// (history_passed), never replayed with a hole.
func TestJetStreamResumePastTheStream(t *testing.T) {
	ns := runJetStream(t, 0, "")
	url := natsURL(ns)
	small := func(c *server.Config) { c.HistoryMessages = 2 } // the stream keeps 4 per subject
	old := startJSNode(t, url, jetstream.MemoryStorage, small)
	c := dialV1(t, old.addr(), "news")
	epoch, _ := c.subscribed(t, "news")
	for i := range 8 {
		if _, err := old.srv.Publish("news", server.Text, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	fresh := startJSNode(t, url, jetstream.MemoryStorage, small) // reads back 5 to 8
	d := dialV1(t, fresh.addr(), "")
	d.send(t, fmt.Sprintf("sub 1 news %s 2", epoch))
	if line := d.read(t); line != "sub 1 news "+epoch+" 8 history_passed" {
		t.Fatalf("resume from 2: %q", line)
	}
	d.send(t, "unsub 2 news")
	d.read(t)
	d.send(t, fmt.Sprintf("sub 3 news %s 6", epoch)) // 7 and 8 are here
	if line := d.read(t); line != "sub 3 news "+epoch+" 8 recovered" {
		t.Fatalf("resume from 6: %q", line)
	}
	d.msg(t, "news", "6")
	d.msg(t, "news", "7")
}

// With NATS gone a pub is refused with unavailable, and nothing else
// happens: the connection and its subscriptions stay.
func TestJetStreamPublishWhileNATSDown(t *testing.T) {
	ns := runJetStream(t, 0, "")
	n := startJSNode(t, natsURL(ns), jetstream.MemoryStorage)
	c := dialV1(t, n.addr(), "r")
	c.subscribed(t, "r")
	ns.Shutdown()
	ns.WaitForShutdown()
	testutil.WaitFor(t, 5*time.Second, "the node to see NATS gone", func() bool {
		return !n.stream.ClusterStatus().(cluster.StreamStatus).Connected
	})
	c.send(t, "pub 7 r\nx")
	if line := c.read(t); !strings.HasPrefix(line, "err 7 unavailable ") {
		t.Fatalf("pub with NATS down: %q", line)
	}
	c.send(t, "pub 0 r\ny") // refused even without an id: never silent
	if line := c.read(t); !strings.HasPrefix(line, "err 0 unavailable ") {
		t.Fatalf("pub 0 with NATS down: %q", line)
	}
	c.send(t, "unsub 8 r")
	if line := c.read(t); line != "unsub 8 r" {
		t.Fatalf("after the refusals: %q", line)
	}
}

// TestBugStalePositionsAfterMemoryStreamRestart is the regression test
// for a memory stream recreated after a NATS restart: before, a plain
// sub answered the old stream's last offset and then delivered offsets
// below it, and the first acknowledgements carried the old epoch with
// the new stream's offsets. Now every acknowledgement names the epoch
// and offset its message is delivered at, and a sub's reply is below
// every message that follows it.
func TestBugStalePositionsAfterMemoryStreamRestart(t *testing.T) {
	port := freePort(t)
	ns := runJetStream(t, port, "")
	n := startJSNode(t, natsURL(ns), jetstream.MemoryStorage)
	sub := dialV1(t, n.addr(), "r")
	sub.subscribed(t, "r")
	pub := dialV1(t, n.addr(), "")
	acks := map[string]string{} // payload -> "epoch offset"
	publish := func(i int) {
		payload := fmt.Sprint("m", i)
		deadline := time.Now().Add(30 * time.Second)
		for {
			pub.send(t, fmt.Sprintf("pub %d r k%d\n%s", i+1, i, payload)) // ids from 1: id 0 asks for no acknowledgement
			line := pub.read(t)
			if f := strings.Fields(line); len(f) == 5 && f[0] == "pub" {
				acks[payload] = f[3] + " " + f[4]
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("pub %d never acknowledged; last %q", i, line)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := range 20 {
		publish(i)
	}
	oldEpoch := n.stream.ClusterStatus().(cluster.StreamStatus).Epoch
	ns.Shutdown()
	ns.WaitForShutdown()
	runJetStream(t, port, "") // memory storage: the stream is gone
	for i := 20; i < 30; i++ {
		publish(i) // retried until the stream is back (recreated, a new epoch)
	}
	newEpoch := n.stream.ClusterStatus().(cluster.StreamStatus).Epoch
	if newEpoch == oldEpoch {
		t.Fatalf("the recreated stream kept epoch %s", oldEpoch)
	}
	late := dialV1(t, n.addr(), "")
	late.send(t, "sub 1 r")
	reply := strings.Fields(late.read(t))
	if len(reply) != 6 || reply[3] != newEpoch {
		t.Fatalf("sub after the restart: %v, want epoch %s", reply, newEpoch)
	}
	var replyOffset uint64
	fmt.Sscan(reply[4], &replyOffset)
	publish(30)
	if e, o := late.msg(t, "r", "m30"); e != newEpoch || o <= replyOffset {
		t.Fatalf("after sub reply offset %d: msg at %s %d", replyOffset, e, o)
	}
	// The subscriber that was there all along: every message at the
	// place its acknowledgement named.
	for i := range 31 {
		payload := fmt.Sprint("m", i)
		e, o := sub.msg(t, "r", payload)
		if got := fmt.Sprint(e, " ", o); got != acks[payload] {
			t.Fatalf("%s delivered at %s, acknowledged at %s", payload, got, acks[payload])
		}
	}
}

// Before it has read the stream back (here: NATS unreachable), an
// instance is not ready and says why, rather than "draining"; /livez
// stays 200.
func TestNotReadySaysWhy(t *testing.T) {
	t.Parallel()
	n := startJSNodeWait(t, "nats://127.0.0.1:"+strconv.Itoa(freePort(t)), jetstream.MemoryStorage, false)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + n.addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 503 || !strings.HasPrefix(body, "not ready: ") {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := get("/livez"); code != 200 || body != "ok\n" {
		t.Fatalf("/livez: %d %q", code, body)
	}
}
