package cluster_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/loopcast/loopcast/server"
	"github.com/loopcast/loopcast/server/cluster"
	"github.com/loopcast/loopcast/server/internal/bus"
)

const perPublisher = 200

// TestFanoutAcrossNodes: three instances on one NATS server, two members
// on each, one of them publishing, and admin publishes on the first:
// every member gets every message from every instance exactly once, in
// each publisher's order, and its own instance's messages only once.
func TestFanoutAcrossNodes(t *testing.T) {
	ns := runNATS(t, 0, 0)
	nodes := []*node{startNode(t, natsURL(ns)), startNode(t, natsURL(ns)), startNode(t, natsURL(ns))}
	var pubs, all []*member
	for i, n := range nodes {
		p := join(t, n, "lobby", fmt.Sprintf("pub%d", i))
		pubs = append(pubs, p)
		all = append(all, p, join(t, n, "lobby", fmt.Sprintf("quiet%d", i)))
	}
	waitInterest(t, ns, "lobby", 3)

	done := make(chan struct{})
	for _, p := range pubs {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range perPublisher {
				p.send(t, msg(p.name, i))
			}
		}()
	}
	for i := range perPublisher / 4 {
		if _, err := nodes[0].srv.Publish("lobby", server.Text, []byte(msg("admin", i))); err != nil {
			t.Fatal(err)
		}
	}
	for range pubs {
		<-done
	}

	want := len(pubs)*perPublisher + perPublisher/4
	for _, m := range all {
		waitFor(t, 10*time.Second, m.name+" to get every message", func() bool { return len(m.received()) >= want })
	}
	want += settle(t, "lobby", nodes, all...) // a duplicate would have arrived by now
	for _, m := range all {
		got := m.received()
		if len(got) != want {
			t.Errorf("%s: %d messages, want %d", m.name, len(got), want)
		}
		by := checkOrder(t, m.name, got)
		for _, p := range pubs {
			if !hasAll(by[p.name], 0, perPublisher) {
				t.Errorf("%s: missing messages of %s", m.name, p.name)
			}
		}
	}
	for i, n := range nodes {
		st, cs := n.srv.Stats(), n.bridge.Status()
		if !cs.Connected || cs.Subscriptions != 1 {
			t.Errorf("node %d: connected %v, subscriptions %d", i, cs.Connected, cs.Subscriptions)
		}
		wantPub := int64(perPublisher) + 1 // its marker too
		if i == 0 {
			wantPub += perPublisher / 4
		}
		if cs.Published != wantPub || cs.Received != int64(want)-wantPub || st.Remote != cs.Received {
			t.Errorf("node %d: published %d (want %d), received %d, remote %d (want %d)", i, cs.Published, wantPub, cs.Received, st.Remote, int64(want)-wantPub)
		}
		for k, v := range cs.Errors {
			if v != 0 {
				t.Errorf("node %d: %d %s errors", i, v, k)
			}
		}
	}
}

// TestSubscriptionFollowsMembers: an instance subscribes to a room while
// it has members there and unsubscribes after the last one left.
func TestSubscriptionFollowsMembers(t *testing.T) {
	ns := runNATS(t, 0, 0)
	n := startNode(t, natsURL(ns))
	a := join(t, n, "r1", "a")
	b := join(t, n, "r1", "b")
	waitInterest(t, ns, "r1", 1)
	a.leave()
	waitFor(t, 10*time.Second, "a gone", func() bool { return n.srv.Rooms()[0].Members == 1 })
	waitInterest(t, ns, "r1", 1) // b is still there
	b.leave()
	waitInterest(t, ns, "r1", 0)
	waitFor(t, time.Second, "no subscriptions", func() bool { return n.bridge.Status().Subscriptions == 0 })
	join(t, n, "r1", "c")
	waitInterest(t, ns, "r1", 1)
}

// TestRoomNamesWithDots: room names may contain '.', NATS's token
// separator; rooms "a", "a.text" and "a.b" stay apart across instances.
func TestRoomNamesWithDots(t *testing.T) {
	ns := runNATS(t, 0, 0)
	n1, n2 := startNode(t, natsURL(ns)), startNode(t, natsURL(ns))
	rooms := []string{"a", "a.text", "a.b", ".x..y."}
	recv := map[string]*member{}
	for _, r := range rooms {
		join(t, n1, r, "sender-"+r) // so n1 has the room too
		recv[r] = join(t, n2, r, "receiver-"+r)
		waitInterest(t, ns, r, 2)
	}
	for _, r := range rooms {
		if _, err := n1.srv.Publish(r, server.Text, []byte(r+":0")); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range rooms {
		m := recv[r]
		waitFor(t, 5*time.Second, "message in "+r, func() bool { return len(m.received()) > 0 })
	}
	for _, r := range rooms {
		settle(t, r, []*node{n1}, recv[r])
		if got := recv[r].received(); len(got) != 2 || got[0] != r+":0" {
			t.Errorf("room %q received %q", r, got)
		}
	}
}

// TestBinaryOpcodeCrossesNodes: the opcode travels with the message.
func TestBinaryOpcodeCrossesNodes(t *testing.T) {
	ns := runNATS(t, 0, 0)
	n1, n2 := startNode(t, natsURL(ns)), startNode(t, natsURL(ns))
	join(t, n1, "bin", "x")
	m := join(t, n2, "bin", "y")
	waitInterest(t, ns, "bin", 2)
	payload := []byte{0, 0xff, 0xfe, 'a'} // not UTF-8: would close a text receiver with 1007
	if _, err := n1.srv.Publish("bin", server.Binary, payload); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "binary message", func() bool { return len(m.received()) == 1 })
	if _, err := n1.srv.Publish("bin", server.Text, []byte("text")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "text message", func() bool { return len(m.received()) == 2 })
	if got := m.received(); got[0] != string(payload) || got[1] != "text" {
		t.Errorf("got %q", got)
	}
	if ops := m.opcodes(); ops[0] != gorilla.BinaryMessage || ops[1] != gorilla.TextMessage {
		t.Errorf("message types %v, want binary then text", ops)
	}
}

// TestNATSRestart: NATS goes away mid-test. Each instance keeps serving
// its own members (local messages, health 200), reports the outage, and
// when NATS is back on the same port reconnects and resubscribes by
// itself; messages between instances during the outage are at most once
// (never duplicated, never reordered), all of them after it.
func TestNATSRestart(t *testing.T) {
	port := freePort(t)
	ns := runNATS(t, port, 0)
	url := natsURL(ns)
	n1, n2 := startNode(t, url), startNode(t, url)
	p1, q1 := join(t, n1, "room", "p1"), join(t, n1, "room", "q1")
	p2, q2 := join(t, n2, "room", "p2"), join(t, n2, "room", "q2")
	members := []*member{p1, q1, p2, q2}
	waitInterest(t, ns, "room", 2)

	seq := 0
	send := func(k int) (from int) {
		from = seq
		for range k {
			p1.send(t, msg("p1", seq))
			p2.send(t, msg("p2", seq))
			seq++
		}
		return from
	}
	waitAll := func(what string, pub string, ms []*member, from, to int) {
		for _, m := range ms {
			waitFor(t, 10*time.Second, m.name+" to get "+what, func() bool {
				return hasAll(checkOrder(t, m.name, m.received())[pub], from, to)
			})
		}
	}

	// Before: everything everywhere.
	from := send(50)
	waitAll("p1's messages before the outage", "p1", members, from, seq)
	waitAll("p2's messages before the outage", "p2", members, from, seq)

	// Outage.
	ns.Shutdown()
	ns.WaitForShutdown()
	for _, n := range []*node{n1, n2} {
		waitFor(t, 5*time.Second, "the bridge to see the outage", func() bool {
			st := n.bridge.Status()
			return !st.Connected && st.Disconnects >= 1
		})
		if code := httpGet(t, "http://"+n.srv.Addr().String()+"/healthz"); code != 200 {
			t.Errorf("readiness during the NATS outage: %d, want 200", code)
		}
	}
	from = send(50)
	waitAll("p1's messages locally during the outage", "p1", []*member{p1, q1}, from, seq)
	waitAll("p2's messages locally during the outage", "p2", []*member{p2, q2}, from, seq)
	if !strings.Contains(n1.logs.String(), "NATS disconnected") {
		t.Error("the outage was not logged")
	}

	// NATS is back on the same port.
	ns2 := runNATS(t, port, 0)
	for _, n := range []*node{n1, n2} {
		waitFor(t, 10*time.Second, "the bridge to reconnect", func() bool {
			st := n.bridge.Status()
			return st.Connected && st.Reconnects >= 1
		})
	}
	waitInterest(t, ns2, "room", 2)
	from = send(50)
	waitAll("p1's messages after the outage", "p1", members, from, seq)
	waitAll("p2's messages after the outage", "p2", members, from, seq)
	settle(t, "room", []*node{n1, n2}, members...)
	for _, m := range members {
		checkOrder(t, m.name, m.received()) // no duplicate, no reordering at any time
	}
	if !strings.Contains(n1.logs.String(), "NATS reconnected") {
		t.Error("the reconnect was not logged")
	}
}

// TestNodeStops: one instance of three stops; the others keep exchanging
// every message, and NATS forgets the stopped one's subscription.
func TestNodeStops(t *testing.T) {
	ns := runNATS(t, 0, 0)
	n1, n2, n3 := startNode(t, natsURL(ns)), startNode(t, natsURL(ns)), startNode(t, natsURL(ns))
	m1, m2 := join(t, n1, "r", "m1"), join(t, n2, "r", "m2")
	m3 := join(t, n3, "r", "m3")
	waitInterest(t, ns, "r", 3)
	m1.send(t, msg("m1", 0))
	waitFor(t, 5*time.Second, "m3 to get m1's message", func() bool { return len(m3.received()) == 1 })

	n3.close(t)
	<-m3.done
	waitInterest(t, ns, "r", 2)
	for i := 1; i <= 100; i++ {
		m1.send(t, msg("m1", i))
		m2.send(t, msg("m2", i))
	}
	for _, m := range []*member{m1, m2} {
		waitFor(t, 5*time.Second, m.name+" to get every message", func() bool { return len(m.received()) == 201 })
		by := checkOrder(t, m.name, m.received())
		if !hasAll(by["m1"], 0, 101) || !hasAll(by["m2"], 1, 101) {
			t.Errorf("%s: missing messages", m.name)
		}
	}
	for _, n := range []*node{n1, n2} {
		if st := n.bridge.Status(); !st.Connected {
			t.Error("a remaining node lost NATS")
		}
	}
}

// TestStartWithoutNATS: an instance whose NATS is not there yet starts
// anyway, serves its local rooms, and joins the cluster once NATS comes.
func TestStartWithoutNATS(t *testing.T) {
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	n1, n2 := startNode(t, url), startNode(t, url)
	a, b := join(t, n1, "r", "a"), join(t, n2, "r", "b")
	if st := n1.bridge.Status(); st.Connected {
		t.Fatal("connected to nothing")
	}
	a.send(t, msg("a", 0))
	waitFor(t, 5*time.Second, "local delivery without NATS", func() bool { return len(a.received()) == 1 })
	if !strings.Contains(n1.logs.String(), "NATS unreachable") {
		t.Error("not logged that NATS is unreachable")
	}

	ns := runNATS(t, port, 0)
	waitInterest(t, ns, "r", 2)
	a.send(t, msg("a", 1))
	waitFor(t, 5*time.Second, "cross-node delivery once NATS is up", func() bool {
		return hasAll(checkOrder(t, "b", b.received())["a"], 1, 2)
	})
}

// TestMaxPayload: a message over NATS's max_payload reaches only the
// local members; the publisher is told why it did not go further
// (Published.NotForwarded, "not_forwarded" on POST /publish) and it is
// counted. A message of exactly max_payload still goes (without its
// origin header). Connecting warns that --max-message is above
// max_payload.
func TestMaxPayload(t *testing.T) {
	ns := runNATS(t, 0, 1024)
	n1, n2 := startNode(t, natsURL(ns)), startNode(t, natsURL(ns))
	local := join(t, n1, "big", "local")
	remote := join(t, n2, "big", "remote")
	waitInterest(t, ns, "big", 2)
	waitFor(t, 5*time.Second, "max_payload from NATS", func() bool { return n1.bridge.Status().MaxPayload == 1024 })
	if !strings.Contains(n1.logs.String(), "max-message is over the NATS server's max_payload") {
		t.Errorf("no start-up warning about --max-message:\n%s", n1.logs.String())
	}

	big := strings.Repeat("x", 1025)
	n, err := n1.srv.Publish("big", server.Text, []byte(big))
	if err != nil || !errors.Is(n.NotForwarded, cluster.ErrTooLarge) || n.Members != 1 || n.Offset != 1 ||
		!strings.Contains(n.NotForwarded.Error(), "1025 bytes is over the NATS server's max_payload of 1024 bytes") {
		t.Errorf("Publish: %+v, %v", n, err)
	}

	rec := httptest.NewRecorder()
	n1.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("POST", "/publish/big", strings.NewReader(big)))
	if body := rec.Body.String(); rec.Code != 202 || !strings.Contains(body, `"not_forwarded":"message of 1025 bytes is over the NATS server's max_payload of 1024 bytes"`) {
		t.Errorf("admin publish: %d %s", rec.Code, body)
	}

	fits := strings.Repeat("y", 1024)
	if _, err := n1.srv.Publish("big", server.Text, []byte(fits)); err != nil {
		t.Errorf("a message of exactly max_payload: %v", err)
	}
	waitFor(t, 5*time.Second, "the local member to get all three", func() bool { return len(local.received()) == 3 })
	waitFor(t, 5*time.Second, "the remote member to get the one that fits", func() bool { return len(remote.received()) == 1 })
	settle(t, "big", []*node{n1}, remote)
	if got := remote.received(); len(got) != 2 || got[0] != fits {
		t.Errorf("remote got %d messages", len(got))
	}
	if e := n1.bridge.Status().Errors["too_large"]; e != 2 {
		t.Errorf("too_large errors %d, want 2", e)
	}
	if st := n1.srv.Stats(); st.BrokerErrors != 2 {
		t.Errorf("server broker errors %d, want 2", st.BrokerErrors)
	}
}

// TestAdminShowsCluster: GET /rooms and /metrics show the bridge's state.
func TestAdminShowsCluster(t *testing.T) {
	ns := runNATS(t, 0, 0)
	n := startNode(t, natsURL(ns))
	join(t, n, "lobby", "a")
	waitInterest(t, ns, "lobby", 1)
	h := n.srv.AdminHandler()

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/rooms", nil))
	body := rec.Body.String()
	for _, want := range []string{`"name":"lobby"`, `"members":1`, `"cluster":{"connected":true`, `"subscriptions":1`, `"max_payload":1048576`} {
		if !strings.Contains(body, want) {
			t.Errorf("/rooms lacks %s:\n%s", want, body)
		}
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body = rec.Body.String()
	for _, want := range []string{"loopcast_cluster_connected 1", "loopcast_cluster_subscriptions 1", `loopcast_cluster_errors_total{reason="too_large"} 0`, "loopcast_cluster_published_total 0", "loopcast_rooms 1"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestValidateURL: what --nats-url accepts.
func TestValidateURL(t *testing.T) {
	for _, ok := range []string{"nats://127.0.0.1:4222", "nats://a:4222,nats://b:4222", "tls://nats.example:4222", "nats.nats.svc:4222", "nats://user:pw@h:4222"} {
		if err := cluster.ValidateURL(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "http://h:4222", "nats://", "nats://a:1,"} {
		if err := cluster.ValidateURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := cluster.New(cluster.Options{URL: "http://x"}); err == nil {
		t.Error("New accepted an http URL")
	}
}

// BenchmarkForward: the event loop's side of a cross-instance message is
// a copy into a pooled buffer and a channel send, without allocation.
func BenchmarkForward(b *testing.B) {
	ns := runNATS(b, 0, 0)
	br, err := cluster.New(cluster.Options{URL: natsURL(ns)})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close(b.Context())
	payload := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		for br.Forward("bench", bus.Binary, payload, bus.Position{Epoch: 1, Offset: 1}) != nil {
			time.Sleep(time.Microsecond) // queue full: NATS is behind
		}
	}
}

func httpGet(t testing.TB, url string) int {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

var _ server.Broker = (*cluster.Bridge)(nil)
var _ bus.Status = (*cluster.Bridge)(nil)

// TestBugCoreNATSLossIsSilent is the regression test for losses between
// instances over core NATS: a message that never reached another
// instance left its loopcast.v1 clients with contiguous offsets (each
// instance numbers its own) and no sign of the gap. Now each forwarded
// message carries its place in its origin's order; the receiver that
// sees a count skip starts the room's new epoch before the next message,
// so its v1 clients see the epoch change, and counts the loss.
func TestBugCoreNATSLossIsSilent(t *testing.T) {
	ns := runNATS(t, 0, 1024)
	n1, n2 := startNode(t, natsURL(ns)), startNode(t, natsURL(ns))
	c := dialV1(t, n2.srv.Addr().String(), "g")
	epoch, _ := c.subscribed(t, "g")
	waitInterest(t, ns, "g", 1)
	waitFor(t, 5*time.Second, "max_payload from NATS", func() bool { return n1.bridge.Status().MaxPayload == 1024 })
	if _, err := n1.srv.Publish("g", server.Text, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if e, o := c.msg(t, "g", "one"); e != epoch || o != 1 {
		t.Fatalf("first message at %s %d", e, o)
	}
	// Lost on its way: over NATS's max_payload, it reaches only n1.
	if p, err := n1.srv.Publish("g", server.Text, []byte(strings.Repeat("x", 2000))); err != nil || p.NotForwarded == nil {
		t.Fatalf("the lost one: %+v, %v", p, err)
	}
	if _, err := n1.srv.Publish("g", server.Text, []byte("three")); err != nil {
		t.Fatal(err)
	}
	e, o := c.msg(t, "g", "three")
	if e == epoch || o != 1 {
		t.Fatalf("after the loss: msg at %s %d, want a new epoch from offset 1 (was %s)", e, o, epoch)
	}
	if st := n2.bridge.Status(); st.Gaps != 1 || st.Missed != 1 || n2.srv.Stats().Lost != 1 {
		t.Fatalf("gaps %d, missed %d, server lost %d; want 1 each", st.Gaps, st.Missed, n2.srv.Stats().Lost)
	}
}
