//go:build linux

// Package natscluster runs a real NATS cluster with JetStream on loopback,
// each node a nats-server process of its own, so that a caller can kill it
// (SIGKILL), freeze it (SIGSTOP, a partition that heals) and restart it:
// the faults a NATS pod suffers on AKS. The tests' harness
// (internal/testutil.StartNATSCluster) and the load generator's cluster
// scenario (loopcast-bench cluster) both run their clusters through it.
//
// It depends on nothing of package testing: every method returns an error
// (or a zero value) instead of failing a test, and the caller decides.
// Processes are started with the parent-death signal SIGKILL, so no node
// outlives the process that started it, even when that one dies hard.
package natscluster

import (
	"context"
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
	"time"
)

// Bounds of the cluster's operations. None is a claim about NATS's speed:
// each only keeps a broken cluster from hanging its caller.
const (
	// BuildTimeout bounds `go build` of nats-server; a cold build cache
	// took 47 s on the 2-CPU development machine.
	BuildTimeout = 10 * time.Minute
	// ReadyTimeout bounds the wait for a started cluster (every node
	// answering, one JetStream meta leader), and for a restarted node to
	// report healthy.
	ReadyTimeout = 30 * time.Second
	// ExitTimeout bounds the wait for a killed process to be reaped.
	ExitTimeout = 10 * time.Second
	// MonitorTimeout bounds one request to a monitoring endpoint: a
	// stopped (SIGSTOP) node accepts the connection and never answers.
	MonitorTimeout = time.Second
	// pollEvery is the pace of Poll.
	pollEvery = 50 * time.Millisecond
)

// Options configure Start.
type Options struct {
	// Dir holds each node's configuration, JetStream store and log, in a
	// directory per node (Dir/n1, …). Required; the caller removes it.
	Dir string
	// Bin is the nats-server binary (Build makes one from go.mod).
	Bin string
	// Nodes is the cluster's size; default 3.
	Nodes int
	// ClusterName is the NATS cluster's name; default "loopcast-test".
	ClusterName string
	// Prefix is run in front of the binary, which it must exec (so that
	// signals reach nats-server): {"taskset", "-c", "0"} pins every node
	// to CPU 0. Empty: the binary is run directly.
	Prefix []string
	// MaxFileStore bounds each node's JetStream file storage; default 1 GiB.
	MaxFileStore int64
}

// Cluster is a running NATS cluster. Its nodes are named n1, n2, … (their
// server_name, which JetStream reports as a stream's leader). Its methods
// are safe for concurrent use.
type Cluster struct {
	opts  Options
	nodes []*node
	http  *http.Client
}

type node struct {
	name                     string
	client, route, monitor   int
	dir, conf, store, logPth string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd was reaped
	frozen  bool          // SIGSTOP'd
	running bool
}

// Start writes every node's configuration, starts the nodes and returns
// once every node answers and JetStream has a meta leader that every node
// agrees on (within ReadyTimeout, or ctx). On an error the nodes that
// started are killed again, and the returned Cluster (non-nil once the
// nodes were laid out) still tells where their logs are.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Dir == "" || o.Bin == "" {
		return nil, errors.New("natscluster: Options.Dir and Options.Bin are required")
	}
	if o.Nodes <= 0 {
		o.Nodes = 3
	}
	if o.ClusterName == "" {
		o.ClusterName = "loopcast-test"
	}
	if o.MaxFileStore <= 0 {
		o.MaxFileStore = 1 << 30
	}
	ports, err := FreePorts(3 * o.Nodes)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: o, http: &http.Client{
		Timeout: MonitorTimeout,
		// No idle connections left behind (tests check for leaked
		// goroutines).
		Transport: &http.Transport{DisableKeepAlives: true},
	}}
	for i := range o.Nodes {
		n := &node{
			name:   fmt.Sprintf("n%d", i+1),
			client: ports[3*i], route: ports[3*i+1], monitor: ports[3*i+2],
		}
		n.dir = filepath.Join(o.Dir, n.name)
		n.conf = filepath.Join(n.dir, "nats.conf")
		n.store = filepath.Join(n.dir, "jetstream")
		n.logPth = filepath.Join(n.dir, "nats.log")
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if err := os.MkdirAll(n.store, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(n.conf, []byte(c.config(n)), 0o644); err != nil {
			return nil, err
		}
	}
	for _, n := range c.nodes {
		if err := n.start(o.Prefix, o.Bin); err != nil {
			c.Close()
			return c, fmt.Errorf("start nats-server %s: %w", n.name, err)
		}
	}
	err = Poll(ctx, ReadyTimeout, "every NATS node up and a JetStream meta leader", func() bool {
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
	if err != nil {
		c.Close()
		return c, err
	}
	return c, nil
}

// config is node n's configuration file.
func (c *Cluster) config(n *node) string {
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
  max_file_store: %d
}
cluster {
  name: %s
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, n.name, n.client, n.monitor, n.store, c.opts.MaxFileStore, c.opts.ClusterName, n.route, strings.Join(routes, ", "))
}

// Close kills every node (SIGKILL) and waits for them. Safe to call more
// than once.
func (c *Cluster) Close() {
	for _, n := range c.nodes {
		n.kill()
	}
}

// Names are the nodes' server names, n1, n2, ….
func (c *Cluster) Names() []string {
	var s []string
	for _, n := range c.nodes {
		s = append(s, n.name)
	}
	return s
}

// URLs are the client URLs of all nodes, comma-separated (what loopcast's
// --nats-url takes).
func (c *Cluster) URLs() string {
	var s []string
	for _, n := range c.nodes {
		s = append(s, c.URL(n.name))
	}
	return strings.Join(s, ",")
}

// URL is node name's client URL; "" for no such node.
func (c *Cluster) URL(name string) string {
	n := c.node(name)
	if n == nil {
		return ""
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", n.client)
}

// ClientPort is node name's client port; 0 for no such node.
func (c *Cluster) ClientPort(name string) int {
	if n := c.node(name); n != nil {
		return n.client
	}
	return 0
}

// LogPath is the file node name logs to; "" for no such node.
func (c *Cluster) LogPath(name string) string {
	if n := c.node(name); n != nil {
		return n.logPth
	}
	return ""
}

// PID is node name's process id, 0 when it does not run.
func (c *Cluster) PID(name string) int {
	n := c.node(name)
	if n == nil {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return 0
	}
	return n.cmd.Process.Pid
}

// Has reports whether the cluster has a node called name.
func (c *Cluster) Has(name string) bool { return c.node(name) != nil }

func (c *Cluster) node(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func (c *Cluster) mustNode(name string) (*node, error) {
	if n := c.node(name); n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("no NATS node %q (have %s)", name, strings.Join(c.Names(), ", "))
}

// Kill sends SIGKILL to node name (a crashed pod or machine) and waits
// until the process is gone. A stopped (SIGSTOP) node dies as well.
func (c *Cluster) Kill(name string) error {
	n, err := c.mustNode(name)
	if err != nil {
		return err
	}
	if !n.kill() {
		return fmt.Errorf("nats-server %s did not exit within %s of SIGKILL", name, ExitTimeout)
	}
	return nil
}

// Restart starts node name again after Kill, with the same ports, store
// directory and configuration, and waits until it reports healthy
// (/healthz: JetStream is current, its streams caught up), within
// ReadyTimeout or ctx.
func (c *Cluster) Restart(ctx context.Context, name string) error {
	n, err := c.mustNode(name)
	if err != nil {
		return err
	}
	if err := n.start(c.opts.Prefix, c.opts.Bin); err != nil {
		return fmt.Errorf("restart nats-server %s: %w", name, err)
	}
	return Poll(ctx, ReadyTimeout, "nats-server "+name+" healthy after its restart", func() bool { return c.Healthy(name) })
}

// Stop freezes node name with SIGSTOP: its sockets stay open and nothing
// answers on them, as with a network partition; Cont heals it.
func (c *Cluster) Stop(name string) error { return c.signal(name, syscall.SIGSTOP) }

// Cont resumes a node frozen by Stop with SIGCONT.
func (c *Cluster) Cont(name string) error { return c.signal(name, syscall.SIGCONT) }

func (c *Cluster) signal(name string, sig syscall.Signal) error {
	n, err := c.mustNode(name)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return fmt.Errorf("nats-server %s is not running", name)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("nats-server %s: %v: %w", name, sig, err)
	}
	n.frozen = sig == syscall.SIGSTOP
	return nil
}

// Poll checks cond every 50 ms until it holds; after timeout (or when ctx
// ends) it returns an error naming what it waited for.
func Poll(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
	return nil
}

// start runs the node's process.
func (n *node) start(prefix []string, bin string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(n.logPth, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "--- natscluster: starting %s at %s\n", n.name, time.Now().Format(time.RFC3339Nano))
	args := append(append(append([]string(nil), prefix...), bin), "-c", n.conf)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should the process that started the node die (a panic, a test's
	// -timeout, a SIGKILL), the kernel kills the node too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		fmt.Fprintf(logf, "--- natscluster: %s exited (%v) at %s\n", n.name, cmd.ProcessState, time.Now().Format(time.RFC3339Nano))
		logf.Close()
		close(exited)
	}()
	n.cmd, n.exited, n.running, n.frozen = cmd, exited, true, false
	return nil
}

// kill SIGKILLs the process if it runs and waits for it; false when it
// was not reaped in time.
func (n *node) kill() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return true
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-n.exited:
	case <-time.After(ExitTimeout):
		return false
	}
	n.running, n.frozen = false, false
	return true
}

// Build builds nats-server at the version go.mod requires into dir (run
// from within the module), within BuildTimeout, and returns the binary's
// path. The build cache makes a later build a relink (about 1.5 s).
func Build(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(ctx, BuildTimeout)
	defer cancel()
	bin := filepath.Join(dir, "nats-server")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build nats-server (%s): %w\n%s", time.Since(start).Round(time.Millisecond), err, out)
	}
	return bin, nil
}

// FreePorts returns n distinct loopback ports nobody listened on, all
// held open together so that none is handed out twice.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Tail is the last limit bytes of the file at path (or why it could not
// be read).
func Tail(path string, limit int64) string {
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
