//go:build linux

package testutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// Bounds of the NATS cluster harness. None is an assertion about NATS's
// speed: each only keeps a broken cluster from hanging a test run.
const (
	// natsBuildTimeout bounds `go build` of nats-server; a cold build
	// cache took 47 s on the 2-CPU development machine.
	natsBuildTimeout = 10 * time.Minute
	// natsReadyTimeout bounds the wait for a started cluster (every node
	// answering, one JetStream meta leader), and for a restarted node to
	// report healthy.
	natsReadyTimeout = 30 * time.Second
	// natsExitTimeout bounds the wait for a killed process to be reaped.
	natsExitTimeout = 10 * time.Second
	// natsMonitorTimeout bounds one request to a monitoring endpoint: a
	// stopped (SIGSTOP) node accepts the connection and never answers.
	natsMonitorTimeout = time.Second
	// natsLogTail is how much of each node's log a failed test prints.
	natsLogTail = 64 << 10
)

// NATSCluster is a real three-node NATS cluster with JetStream, each
// node a nats-server process of its own (so that a test can SIGKILL it,
// or freeze it with SIGSTOP), on loopback ports, with file storage in
// the test's temporary directory. Its nodes are named n1, n2 and n3
// (server_name, which JetStream reports as a stream's leader). Everything
// is killed at the test's cleanup, and each node's log is printed when
// the test failed.
//
// The methods are meant for the test's goroutine (they call t.Fatal);
// URLs, Names and the monitoring look-ups are safe from any goroutine.
type NATSCluster struct {
	t     testing.TB
	nodes []*natsNode
	http  *http.Client
}

type natsNode struct {
	name                     string
	client, route, monitor   int
	dir, conf, store, logPth string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd was reaped
	frozen  bool          // SIGSTOP'd
	running bool
}

// StartNATSCluster builds nats-server from the module's go.mod (once
// per test binary, while some cluster uses it), starts three clustered
// nodes and returns once every node answers and JetStream has a meta
// leader that every node agrees on.
func StartNATSCluster(t testing.TB) *NATSCluster {
	t.Helper()
	bin := natsServerBinary(t)
	dir := t.TempDir()
	ports := freePorts(t, 9)
	c := &NATSCluster{t: t, http: &http.Client{
		Timeout: natsMonitorTimeout,
		// No idle connections left behind for goleak to find.
		Transport: &http.Transport{DisableKeepAlives: true},
	}}
	for i := range 3 {
		n := &natsNode{
			name:   fmt.Sprintf("n%d", i+1),
			client: ports[3*i], route: ports[3*i+1], monitor: ports[3*i+2],
		}
		n.dir = filepath.Join(dir, n.name)
		n.conf = filepath.Join(n.dir, "nats.conf")
		n.store = filepath.Join(n.dir, "jetstream")
		n.logPth = filepath.Join(n.dir, "nats.log")
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if err := os.MkdirAll(n.store, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(n.conf, []byte(c.config(n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Registered before the processes start: they are killed even when
	// a start below fails the test.
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.kill()
		}
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("nats-server %s log (%s):\n%s", n.name, n.logPth, tail(n.logPth, natsLogTail))
			}
		}
	})
	for _, n := range c.nodes {
		if err := n.start(bin); err != nil {
			t.Fatalf("start nats-server %s: %v", n.name, err)
		}
	}
	c.poll(natsReadyTimeout, "every NATS node up and a JetStream meta leader", func() bool {
		leader := ""
		for _, n := range c.nodes {
			info, err := c.jsz(n, "")
			if err != nil || info.Meta == nil || info.Meta.Leader == "" {
				return false
			}
			if leader != "" && info.Meta.Leader != leader {
				return false
			}
			leader = info.Meta.Leader
		}
		return true
	})
	return c
}

// config is node n's configuration file.
func (c *NATSCluster) config(n *natsNode) string {
	var routes []string
	for _, o := range c.nodes {
		if o != n {
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.route))
		}
	}
	return fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
logtime: true
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 1GB
}
cluster {
  name: loopcast-test
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, n.name, n.client, n.monitor, n.store, n.route, strings.Join(routes, ", "))
}

// Names are the nodes' server names, n1 to n3.
func (c *NATSCluster) Names() []string {
	var s []string
	for _, n := range c.nodes {
		s = append(s, n.name)
	}
	return s
}

// URLs are the client URLs of all three nodes, comma-separated (what
// --nats-url takes).
func (c *NATSCluster) URLs() string {
	var s []string
	for _, n := range c.nodes {
		s = append(s, c.URL(n.name))
	}
	return strings.Join(s, ",")
}

// URL is node name's client URL.
func (c *NATSCluster) URL(name string) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.node(name).client)
}

// LogPath is the file node name logs to.
func (c *NATSCluster) LogPath(name string) string { return c.node(name).logPth }

func (c *NATSCluster) node(name string) *natsNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no NATS node %q (have n1, n2, n3)", name)
	return nil
}

// Kill sends SIGKILL to node name (a crashed pod or machine) and waits
// until the process is gone. A stopped (SIGSTOP) node dies as well.
func (c *NATSCluster) Kill(name string) {
	c.t.Helper()
	if !c.node(name).kill() {
		c.t.Fatalf("nats-server %s did not exit within %s of SIGKILL", name, natsExitTimeout)
	}
}

// Restart starts node name again after Kill, with the same ports, store
// directory and configuration, and waits until it reports healthy
// (/healthz: JetStream is current, its streams caught up).
func (c *NATSCluster) Restart(name string) {
	c.t.Helper()
	n := c.node(name)
	if err := n.start(""); err != nil {
		c.t.Fatalf("restart nats-server %s: %v", name, err)
	}
	c.poll(natsReadyTimeout, "nats-server "+name+" healthy after its restart", func() bool { return c.Healthy(name) })
}

// Stop freezes node name with SIGSTOP: its sockets stay open and nothing
// answers on them, as with a network partition; Cont heals it.
func (c *NATSCluster) Stop(name string) { c.signal(name, syscall.SIGSTOP) }

// Cont resumes a node frozen by Stop with SIGCONT.
func (c *NATSCluster) Cont(name string) { c.signal(name, syscall.SIGCONT) }

func (c *NATSCluster) signal(name string, sig syscall.Signal) {
	c.t.Helper()
	n := c.node(name)
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		c.t.Fatalf("nats-server %s is not running", name)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("nats-server %s: %v: %v", name, sig, err)
	}
	n.frozen = sig == syscall.SIGSTOP
}

// live are the nodes that run and are not frozen: those whose monitoring
// endpoint can answer.
func (c *NATSCluster) live() []*natsNode {
	var l []*natsNode
	for _, n := range c.nodes {
		n.mu.Lock()
		if n.running && !n.frozen {
			l = append(l, n)
		}
		n.mu.Unlock()
	}
	return l
}

// Healthy reports whether node name answers /healthz with 200 (its
// JetStream is current).
func (c *NATSCluster) Healthy(name string) bool {
	n := c.node(name)
	resp, err := c.http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.monitor))
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// jszInfo is the part of a node's /jsz the harness reads (the fields of
// nats-server's JSInfo, declared here so that the packages importing
// testutil do not link nats-server).
type jszInfo struct {
	Meta *struct {
		Leader string `json:"leader"`
	} `json:"meta_cluster"`
	AccountDetails []struct {
		Streams []StreamView `json:"stream_detail"`
	} `json:"account_details"`
}

// StreamView is one node's view of a stream, from its /jsz (nats-server's
// StreamDetail): the replica it holds.
type StreamView struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Cluster *struct {
		Leader string `json:"leader"` // whom this node takes for the leader
	} `json:"cluster"`
	Config json.RawMessage `json:"config"` // the stream's configuration as this node has it
	State  struct {
		Msgs     uint64 `json:"messages"`
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
	} `json:"state"`
}

func (c *NATSCluster) jsz(n *natsNode, query string) (*jszInfo, error) {
	var info jszInfo
	if err := c.getJSON(n, "/jsz?"+query, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

func (c *NATSCluster) getJSON(n *natsNode, path string, v any) error {
	resp, err := c.http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", n.monitor, path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", n.name, path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// StreamReplicas is each live node's view of stream (a node that does not
// answer, or holds no replica, is left out).
func (c *NATSCluster) StreamReplicas(stream string) map[string]StreamView {
	views := map[string]StreamView{}
	for _, n := range c.live() {
		info, err := c.jsz(n, "accounts=true&streams=true&config=true")
		if err != nil {
			continue
		}
		for _, a := range info.AccountDetails {
			for _, s := range a.Streams {
				if s.Name == stream {
					views[n.name] = s
				}
			}
		}
	}
	return views
}

// StreamLeader is the server name of stream's leader, when every live
// node holding a replica names the same one, and that one is live and
// says so itself; "" otherwise (an election, or a frozen leader the
// others have not voted out yet). Poll it.
func (c *NATSCluster) StreamLeader(stream string) string {
	views := c.StreamReplicas(stream)
	leader := ""
	for _, v := range views {
		if v.Cluster == nil || v.Cluster.Leader == "" {
			return ""
		}
		if leader != "" && v.Cluster.Leader != leader {
			return ""
		}
		leader = v.Cluster.Leader
	}
	if _, ok := views[leader]; !ok {
		return "" // named by the others, but not answering
	}
	return leader
}

// MoveStreamLeader asks stream's leader to step down in favour of node
// to ($JS.API.STREAM.LEADER.STEPDOWN with a preferred placement), and
// waits until every live replica names to as the leader.
func (c *NATSCluster) MoveStreamLeader(stream, to string) {
	c.t.Helper()
	if c.StreamLeader(stream) == to {
		return
	}
	nc, err := nats.Connect(c.URLs(), nats.Name("harness"), nats.Timeout(natsMonitorTimeout))
	if err != nil {
		c.t.Fatalf("move the leader of %s: %v", stream, err)
	}
	defer nc.Close()
	req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, to)
	msg, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(req), 5*time.Second)
	if err != nil {
		c.t.Fatalf("move the leader of %s to %s: %v", stream, to, err)
	}
	var resp struct {
		Success bool            `json:"success"`
		Error   json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil || !resp.Success {
		c.t.Fatalf("move the leader of %s to %s: %s (%v)", stream, to, msg.Data, err)
	}
	c.poll(natsReadyTimeout, fmt.Sprintf("%s leading %s", to, stream), func() bool { return c.StreamLeader(stream) == to })
}

// MetaLeader is the JetStream meta leader every live node names, or "".
func (c *NATSCluster) MetaLeader() string {
	leader := ""
	for _, n := range c.live() {
		info, err := c.jsz(n, "")
		if err != nil || info.Meta == nil || info.Meta.Leader == "" {
			return ""
		}
		if leader != "" && info.Meta.Leader != leader {
			return ""
		}
		leader = info.Meta.Leader
	}
	return leader
}

// ClientServer is the name of the live node that holds a client
// connection named clientName (nats.Name), or "".
func (c *NATSCluster) ClientServer(clientName string) string {
	for _, n := range c.live() {
		var cz struct {
			Conns []struct {
				Name string `json:"name"`
			} `json:"connections"`
		}
		if err := c.getJSON(n, "/connz?limit=1024", &cz); err != nil {
			continue
		}
		for _, ci := range cz.Conns {
			if ci.Name == clientName {
				return n.name
			}
		}
	}
	return ""
}

// poll checks cond every 50 ms until it holds, or fails the test after
// timeout naming what it waited for.
func (c *NATSCluster) poll(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// start runs the node's process; bin "" reuses the last one's binary.
func (n *natsNode) start(bin string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running {
		return errors.New("already running")
	}
	if bin == "" {
		bin = n.cmd.Path
	}
	logf, err := os.OpenFile(n.logPth, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "--- harness: starting %s at %s\n", n.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(bin, "-c", n.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should the test binary die (a panic, a -timeout), the kernel kills
	// the node too: no nats-server outlives the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		fmt.Fprintf(logf, "--- harness: %s exited (%v) at %s\n", n.name, cmd.ProcessState, time.Now().Format(time.RFC3339Nano))
		logf.Close()
		close(exited)
	}()
	n.cmd, n.exited, n.running, n.frozen = cmd, exited, true, false
	return nil
}

// kill SIGKILLs the process if it runs and waits for it; false when it
// was not reaped in time.
func (n *natsNode) kill() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return true
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-n.exited:
	case <-time.After(natsExitTimeout):
		return false
	}
	n.running, n.frozen = false, false
	return true
}

// natsServerBinary builds nats-server at the version go.mod requires,
// once while any cluster of this test binary uses it; the directory goes
// when the last of them is cleaned up. The build cache makes a later
// build a relink (about 1.5 s).
func natsServerBinary(t testing.TB) string {
	t.Helper()
	natsBin.mu.Lock()
	defer natsBin.mu.Unlock()
	if natsBin.users == 0 {
		dir, err := os.MkdirTemp("", "loopcast-nats-server-")
		if err != nil {
			t.Fatal(err)
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		ctx, cancel := context.WithTimeout(context.Background(), natsBuildTimeout)
		defer cancel()
		bin := filepath.Join(dir, "nats-server")
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/nats-io/nats-server/v2")
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			t.Fatalf("go build nats-server (%s): %v\n%s", time.Since(start).Round(time.Millisecond), err, out)
		}
		natsBin.dir, natsBin.path = dir, bin
	}
	natsBin.users++
	t.Cleanup(func() {
		natsBin.mu.Lock()
		defer natsBin.mu.Unlock()
		if natsBin.users--; natsBin.users == 0 {
			os.RemoveAll(natsBin.dir)
		}
	})
	return natsBin.path
}

var natsBin struct {
	mu        sync.Mutex
	users     int
	dir, path string
}

// freePorts returns n distinct loopback ports nobody listened on, all
// held open together so that none is handed out twice.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// tail is the last limit bytes of the file at path.
func tail(path string, limit int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(0, st.Size()-limit)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		return err.Error()
	}
	if off > 0 {
		return fmt.Sprintf("[... %d bytes before]\n%s", off, b)
	}
	return string(b)
}
