package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	natstest "github.com/nats-io/nats-server/v2/test"
)

// TestClusterEndToEnd runs two loopcast binaries against a NATS server in
// the test process: a member on either one gets the other's messages
// (and admin publishes made on the other) exactly once, in order; /rooms
// and /metrics show the cluster; SIGTERM drains and closes the bridge.
func TestClusterEndToEnd(t *testing.T) {
	opts := natstest.DefaultTestOptions
	opts.Port = -1
	ns := natstest.RunServer(&opts)
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	url := "nats://" + ns.Addr().String()

	a := startBinary(t, "--nats-url", url)
	b := startBinary(t, "--nats-url", url, "--drain-delay", "0s")
	dial := func(p *proc) *gorilla.Conn {
		c, _, err := gorilla.DefaultDialer.Dial("ws://"+p.addr+"/ws/e2e", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ca, cb := dial(a), dial(b)
	deadline := time.Now().Add(e2eWait)
	for ns.GlobalAccount().Interest("loopcast.room.e2e.text") != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the two instances did not subscribe to room e2e")
		}
		time.Sleep(10 * time.Millisecond)
	}

	const n = 100
	for i := range n {
		if err := ca.WriteMessage(gorilla.TextMessage, fmt.Appendf(nil, "a:%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	read := func(c *gorilla.Conn, want []string) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(e2eWait))
		for _, w := range want {
			_, m, err := c.ReadMessage()
			if err != nil || string(m) != w {
				t.Fatalf("got %q %v, want %q", m, err, w)
			}
		}
	}
	var fromA []string
	for i := range n {
		fromA = append(fromA, fmt.Sprintf("a:%d", i))
	}
	read(ca, fromA) // its own messages once (local fan-out; NoEcho)
	read(cb, fromA) // through NATS

	resp, err := http.Post("http://"+b.admin+"/publish/e2e", "text/plain", strings.NewReader("admin:0"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("admin publish on b: %s", resp.Status)
	}
	read(ca, []string{"admin:0"})
	read(cb, []string{"admin:0"})

	if out := adminGet(t, a, "/rooms"); !strings.Contains(out, `"cluster":{"connected":true`) || !strings.Contains(out, `"subscriptions":1`) {
		t.Errorf("/rooms on a: %s", out)
	}
	if out := adminGet(t, b, "/metrics"); !strings.Contains(out, "loopcast_cluster_connected 1") || !strings.Contains(out, fmt.Sprintf("loopcast_cluster_received_total %d", n)) {
		t.Errorf("/metrics on b lacks the cluster's state")
	}
	if !strings.Contains(a.stderr.String(), `cluster="nats core (at most once across replicas`) || !strings.Contains(a.stderr.String(), "NATS connected") ||
		!strings.Contains(a.stderr.String(), "the NATS server has no JetStream") {
		t.Errorf("start-up log:\n%s", a.stderr.String())
	}

	// b drains: its member is closed with 1001, its subscription goes.
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = cb.SetReadDeadline(time.Now().Add(e2eWait))
	if _, _, err := cb.ReadMessage(); !gorilla.IsCloseError(err, gorilla.CloseGoingAway) {
		t.Errorf("b's member: %v, want 1001", err)
	}
	select {
	case err := <-b.exited:
		b.exited <- err
		if err != nil {
			t.Fatalf("b exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b did not exit")
	}
	if ns.GlobalAccount().Interest("loopcast.room.e2e.text") != 1 {
		t.Error("b's subscription outlived it")
	}
	// a is unaffected.
	if err := ca.WriteMessage(gorilla.TextMessage, []byte("a:after")); err != nil {
		t.Fatal(err)
	}
	read(ca, []string{"a:after"})
}

// TestNATSURLChecked: a malformed --nats-url is a usage error (exit 2),
// also with --check; an unreachable NATS is not (it starts and retries).
func TestNATSURLChecked(t *testing.T) {
	out, err := exec.Command(binary, "--check", "--nats-url", "http://nats:4222").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "LOOPCAST_NATS_URL") {
		t.Errorf("--check with an http URL: %v\n%s", err, out)
	}
	cmd := exec.Command(binary, "--check")
	cmd.Env = append(cmd.Environ(), "LOOPCAST_NATS_URL=nats://nats.nats.svc:4222")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("--check with LOOPCAST_NATS_URL: %v\n%s", err, out)
	}
	p := startBinary(t, "--nats-url", "nats://127.0.0.1:1")
	if !strings.Contains(p.stderr.String(), "NATS unreachable") {
		t.Errorf("log:\n%s", p.stderr.String())
	}
}

// TestJetStreamEndToEnd runs two loopcast binaries against NATS with
// JetStream: a loopcast.v1 client on a, dropped, resumes on b without
// loss, from the log both read in one order; /rooms says so.
func TestJetStreamEndToEnd(t *testing.T) {
	opts := natstest.DefaultTestOptions
	opts.Port = -1
	opts.JetStream = true
	opts.StoreDir = t.TempDir()
	ns := natstest.RunServer(&opts)
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	url := "nats://" + ns.Addr().String()
	a := startBinary(t, "--nats-url", url, "--publish-rate", "0")
	b := startBinary(t, "--nats-url", url, "--publish-rate", "0")
	for _, p := range []*proc{a, b} {
		if !strings.Contains(p.stderr.String(), `cluster="jetstream (resume on any replica)"`) {
			t.Fatalf("start-up log:\n%s", p.stderr.String())
		}
	}
	d := gorilla.Dialer{Subprotocols: []string{"loopcast.v1"}}
	ca, _, err := d.Dial("ws://"+a.addr+"/ws/e2e", nil)
	if err != nil {
		t.Fatal(err)
	}
	read := func(c *gorilla.Conn) string {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(e2eWait))
		_, m, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return string(m)
	}
	var epoch string
	var off uint64
	var id int
	var status string
	if _, err := fmt.Sscanf(read(ca), "sub %d e2e %s %d %s", &id, &epoch, &off, &status); err != nil || status != "live" {
		t.Fatalf("sub reply: %v", err)
	}
	publish := func(p *proc, body string) {
		resp, err := http.Post("http://"+p.admin+"/publish/e2e", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("admin publish: %s", resp.Status)
		}
	}
	publish(b, "one") // appended on b, delivered on a from the log
	line, body, _ := strings.Cut(read(ca), "\n")
	if _, err := fmt.Sscanf(line, "msg e2e "+epoch+" %d", &off); err != nil || body != "one" {
		t.Fatalf("got %q %q", line, body)
	}
	ca.Close()          // dropped
	publish(a, "two")   // missed
	publish(b, "three") // missed
	cb, _, err := d.Dial("ws://"+b.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if err := cb.WriteMessage(gorilla.TextMessage, fmt.Appendf(nil, "sub 1 e2e %s %d", epoch, off)); err != nil {
		t.Fatal(err)
	}
	if r := read(cb); !strings.HasPrefix(r, "sub 1 e2e "+epoch) || !strings.HasSuffix(r, "recovered") {
		t.Fatalf("resume on b: %q", r)
	}
	for _, want := range []string{"two", "three"} {
		if _, body, _ := strings.Cut(read(cb), "\n"); body != want {
			t.Fatalf("replayed %q, want %q", body, want)
		}
	}
	if out := adminGet(t, b, "/rooms"); !strings.Contains(out, `"mode":"jetstream"`) || !strings.Contains(out, `"ready":true`) {
		t.Errorf("/rooms on b: %s", out)
	}
}
