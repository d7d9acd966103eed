package scenario

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loopcast/loopcast/bench/procstat"
	"github.com/loopcast/loopcast/bench/result"
	"github.com/loopcast/loopcast/internal/natscluster"
)

// Bounds of the cluster scenario's process handling; each only keeps a
// broken process from hanging the run.
const (
	// instanceReadyTimeout bounds the wait for a started loopcast to
	// pass its readiness check (it reads the stream back first).
	instanceReadyTimeout = 60 * time.Second
	// instanceStopTimeout is how long a SIGTERM'd instance may take
	// before SIGKILL.
	instanceStopTimeout = 5 * time.Second
	// buildTimeout bounds `go build` of loopcast (a cold cache takes
	// about a minute on two cores).
	buildTimeout = 10 * time.Minute
)

// clusterStream is the JetStream stream loopcast keeps rooms in (its
// --nats-stream default).
const clusterStream = "LOOPCAST"

// fleet is the processes of a cluster run: the NATS cluster and the
// loopcast instances.
type fleet struct {
	cfg    *ClusterConfig
	dir    string
	tmpDir bool
	prefix []string // taskset in front of every server process
	nats   *natscluster.Cluster
	inst   []*instance
	http   *http.Client
}

// instance is one loopcast process.
type instance struct {
	name        string // lc1, lc2, …
	addr        string // 127.0.0.1:port (WebSockets and health)
	admin       string // 127.0.0.1:port (metrics)
	logPath     string
	bin         string
	args        []string
	mu          sync.Mutex
	cmd         *exec.Cmd
	exited      chan struct{}
	running     bool
	starts      int
	pidsStarted []int
}

// startFleet builds what it must and starts the NATS cluster and every
// instance, each ready. It returns the fleet even with an error, so that
// the caller stops what did start.
func startFleet(ctx context.Context, cfg *ClusterConfig, pr *progress) (*fleet, error) {
	f := &fleet{cfg: cfg, dir: cfg.Dir, http: &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	if f.dir == "" {
		d, err := os.MkdirTemp("", "loopcast-bench-cluster-")
		if err != nil {
			return nil, err
		}
		f.dir, f.tmpDir = d, true
	} else if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return nil, err
	}
	if cfg.ServerCPUs != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return f, fmt.Errorf("cluster: --server-cpus needs taskset (util-linux): %w", err)
		}
		f.prefix = []string{ts, "-c", cfg.ServerCPUs}
	}
	pr.set(func() string { return "building loopcast and nats-server" })
	lcBin, natsBin, err := f.binaries(ctx)
	if err != nil {
		return f, err
	}
	pr.set(func() string { return "starting the NATS cluster" })
	f.nats, err = natscluster.Start(ctx, natscluster.Options{Dir: filepath.Join(f.dir, "nats"), Bin: natsBin,
		Nodes: cfg.NATSNodes, ClusterName: "loopcast-bench", Prefix: f.prefix})
	if err != nil {
		return f, fmt.Errorf("cluster: %w", err)
	}
	ports, err := natscluster.FreePorts(2 * cfg.Instances)
	if err != nil {
		return f, err
	}
	for i := range cfg.Instances {
		in := &instance{name: fmt.Sprintf("lc%d", i+1), addr: fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			admin: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]), bin: lcBin}
		in.logPath = filepath.Join(f.dir, in.name+".log")
		in.args = append([]string{
			"--addr", in.addr, "--admin-addr", in.admin,
			"--nats-url", f.nats.URLs(), "--nats-jetstream", "on",
			"--nats-replicas", strconv.Itoa(min(3, cfg.NATSNodes)), "--nats-storage", "file",
			// The load publishes and subscribes far faster than the
			// per-client defaults allow (as in bench/run).
			"--publish-rate", "0", "--subscribe-rate", "0",
			"--log-level", "info",
		}, cfg.LoopcastArgs...)
		f.inst = append(f.inst, in)
	}
	pr.set(func() string { return "starting the loopcast instances" })
	// The first creates the stream; the others then find it.
	if err := f.startInstance(ctx, f.inst[0]); err != nil {
		return f, err
	}
	errs := make(chan error, len(f.inst))
	for _, in := range f.inst[1:] {
		go func() { errs <- f.startInstance(ctx, in) }()
	}
	for range f.inst[1:] {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	return f, err
}

// binaries are the loopcast and nats-server binaries: as configured, or
// built into the work directory.
func (f *fleet) binaries(ctx context.Context) (lc, nats string, err error) {
	lc, nats = f.cfg.LoopcastBin, f.cfg.NATSBin
	if lc == "" {
		lc = filepath.Join(f.dir, "loopcast")
		bctx, cancel := context.WithTimeout(ctx, buildTimeout)
		defer cancel()
		out, err := exec.CommandContext(bctx, "go", "build", "-o", lc, "github.com/loopcast/loopcast/cmd/loopcast").CombinedOutput()
		if err != nil {
			return "", "", fmt.Errorf("cluster: go build loopcast (run inside the module, or pass --loopcast-bin): %w\n%s", err, out)
		}
	}
	if nats == "" {
		if nats, err = natscluster.Build(ctx, f.dir); err != nil {
			return "", "", fmt.Errorf("cluster: %w (or pass --nats-server-bin)", err)
		}
	}
	return lc, nats, nil
}

// addrs are the instances' addresses.
func (f *fleet) addrs() []string {
	var a []string
	for _, in := range f.inst {
		a = append(a, in.addr)
	}
	return a
}

// startInstance starts in and waits until it is ready.
func (f *fleet) startInstance(ctx context.Context, in *instance) error {
	in.mu.Lock()
	if in.running {
		in.mu.Unlock()
		return fmt.Errorf("%s is running", in.name)
	}
	logf, err := os.OpenFile(in.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		in.mu.Unlock()
		return err
	}
	fmt.Fprintf(logf, "--- loopcast-bench: starting %s at %s\n", in.name, time.Now().Format(time.RFC3339Nano))
	args := append(append(append([]string(nil), f.prefix...), in.bin), in.args...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should loopcast-bench die, the kernel ends the instance too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		in.mu.Unlock()
		return fmt.Errorf("start %s: %w", in.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		fmt.Fprintf(logf, "--- loopcast-bench: %s exited (%v) at %s\n", in.name, cmd.ProcessState, time.Now().Format(time.RFC3339Nano))
		logf.Close()
		close(exited)
	}()
	in.cmd, in.exited, in.running = cmd, exited, true
	in.starts++
	in.pidsStarted = append(in.pidsStarted, cmd.Process.Pid)
	in.mu.Unlock()

	err = natscluster.Poll(ctx, instanceReadyTimeout, in.name+" ready (/healthz 200)", func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		return f.ready(in)
	})
	select {
	case <-exited:
		return fmt.Errorf("%s exited at start; its log %s:\n%s", in.name, in.logPath, natscluster.Tail(in.logPath, 2048))
	default:
	}
	return err
}

// ready reports whether in answers its readiness check (any plain GET
// on the main port: 200 once the stream was read back, 503 before).
func (f *fleet) ready(in *instance) bool {
	resp, err := f.http.Get("http://" + in.addr + "/healthz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// kill sends sig to in and, for SIGKILL or SIGTERM, waits until it is gone
// (SIGKILL after instanceStopTimeout).
func (f *fleet) kill(in *instance, sig syscall.Signal) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.running {
		return nil
	}
	_ = in.cmd.Process.Signal(sig)
	select {
	case <-in.exited:
	case <-time.After(instanceStopTimeout):
		_ = in.cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-in.exited:
		case <-time.After(natscluster.ExitTimeout):
			return fmt.Errorf("%s did not exit", in.name)
		}
	}
	in.running = false
	return nil
}

// pid is in's process id, 0 when it does not run.
func (in *instance) pid() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.running {
		return 0
	}
	return in.cmd.Process.Pid
}

// stop ends every process and removes the work directory unless it is
// to be kept; it returns the directory when kept.
func (f *fleet) stop(failed bool) string {
	var wg sync.WaitGroup
	for _, in := range f.inst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = f.kill(in, syscall.SIGTERM)
		}()
	}
	wg.Wait()
	if f.nats != nil {
		f.nats.Close()
	}
	if f.tmpDir && !f.cfg.Keep && !failed {
		os.RemoveAll(f.dir)
		return ""
	}
	return f.dir
}

// waitNATSHealthy waits until every running, unfrozen NATS node reports
// healthy and the stream has a leader every replica agrees on; it
// returns the leader.
func (f *fleet) waitNATSHealthy(ctx context.Context, timeout time.Duration) (string, error) {
	leader := ""
	err := natscluster.Poll(ctx, timeout, "every NATS node healthy and one stream leader", func() bool {
		for _, n := range f.nats.Names() {
			if !f.nats.Healthy(n) {
				return false
			}
		}
		leader = f.nats.StreamLeader(clusterStream)
		return leader != ""
	})
	return leader, err
}

// natsNodesOf names the NATS nodes instance in holds a client
// connection to (from the process's established sockets, /proc).
func (f *fleet) natsNodesOf(in *instance) []string {
	pid := in.pid()
	if pid == 0 {
		return nil
	}
	ports, err := remotePorts(pid)
	if err != nil {
		return nil
	}
	var nodes []string
	for _, n := range f.nats.Names() {
		if ports[f.nats.ClientPort(n)] > 0 {
			nodes = append(nodes, n)
		}
	}
	return nodes
}

// connections lists the instances connected to each NATS node, and
// where each instance is connected ("lc1@n2 lc2@n3"), for the notes.
func (f *fleet) connections() (on map[string][]string, desc string) {
	on = map[string][]string{}
	var parts []string
	for _, in := range f.inst {
		nodes := f.natsNodesOf(in)
		for _, n := range nodes {
			on[n] = append(on[n], in.name)
		}
		where := strings.Join(nodes, "+")
		if where == "" {
			where = "-"
		}
		parts = append(parts, in.name+"@"+where)
	}
	return on, strings.Join(parts, " ")
}

// remotePorts counts pid's established TCP (IPv4) sockets by remote
// port: its fds' socket inodes matched in /proc/PID/net/tcp.
func remotePorts(pid int) (map[int]int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	tf, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return nil, err
	}
	defer tf.Close()
	ports := map[int]int{}
	sc := bufio.NewScanner(tf)
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "01" || !inodes[f[9]] {
			continue
		}
		_, port, ok := strings.Cut(f[2], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseUint(port, 16, 16); err == nil {
			ports[int(p)]++
		}
	}
	return ports, sc.Err()
}

// cpuMeter samples the CPU time of every server process (also those
// killed during the run: the last sample before the kill counts).
type cpuMeter struct {
	f     *fleet
	mu    sync.Mutex
	first map[int]time.Duration
	last  map[int]time.Duration
	kind  map[int]string // "loopcast" or "nats"
	stop  chan struct{}
	done  chan struct{}
}

// cpuSample is the pace of the meter: CPU used by a process in its last
// half second before a SIGKILL goes uncounted.
const cpuSample = 500 * time.Millisecond

func (f *fleet) startCPU() *cpuMeter {
	m := &cpuMeter{f: f, first: map[int]time.Duration{}, last: map[int]time.Duration{}, kind: map[int]string{},
		stop: make(chan struct{}), done: make(chan struct{})}
	m.sample()
	go func() {
		defer close(m.done)
		t := time.NewTicker(cpuSample)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.sample()
			}
		}
	}()
	return m
}

// sample reads every running server process's CPU time.
func (m *cpuMeter) sample() {
	pids := map[int]string{}
	for _, in := range m.f.inst {
		if p := in.pid(); p > 0 {
			pids[p] = "loopcast"
		}
	}
	for _, n := range m.f.nats.Names() {
		if p := m.f.nats.PID(n); p > 0 {
			pids[p] = "nats"
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for p, k := range pids {
		d, err := procstat.CPU(p)
		if err != nil {
			continue
		}
		if _, ok := m.first[p]; !ok {
			m.first[p] = d
			m.kind[p] = k
		}
		m.last[p] = d
	}
}

// finish records the server processes' CPU time in r.
func (m *cpuMeter) finish(r *result.Result) {
	m.sample()
	close(m.stop)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	var lc, nats time.Duration
	for p, d := range m.last {
		if m.kind[p] == "nats" {
			nats += d - m.first[p]
		} else {
			lc += d - m.first[p]
		}
	}
	r.Metrics[result.ServerCPUSeconds] = round3((lc + nats).Seconds())
	r.Metrics["server_cpu_s.loopcast"] = round3(lc.Seconds())
	r.Metrics["server_cpu_s.nats"] = round3(nats.Seconds())
}

// logLine picks level and msg out of a loopcast (slog text) log line.
var logLine = regexp.MustCompile(`level=(WARN|ERROR) msg="([^"]*)"`)

// logSummary counts each instance's warnings and errors by message, for
// the notes: what the servers said about the faults.
func (f *fleet) logSummary() []string {
	var out []string
	for _, in := range f.inst {
		b, err := os.ReadFile(in.logPath)
		if err != nil {
			continue
		}
		counts := map[string]int{}
		for _, line := range strings.Split(string(b), "\n") {
			if m := logLine.FindStringSubmatch(line); m != nil {
				counts[m[1]+" "+m[2]]++
			}
		}
		keys := make([]string, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		in.mu.Lock()
		starts := in.starts
		in.mu.Unlock()
		out = append(out, fmt.Sprintf("%s log (%d starts): %d kinds of warning or error", in.name, starts, len(keys)))
		for _, k := range keys {
			msg := k
			if len(msg) > 110 {
				msg = msg[:110] + "…"
			}
			out = append(out, fmt.Sprintf("  %d× %s", counts[k], msg))
		}
	}
	return out
}

// saveMetrics writes each running instance's /metrics into the work
// directory (evidence when the run is kept).
func (f *fleet) saveMetrics() {
	for _, in := range f.inst {
		resp, err := f.http.Get("http://" + in.admin + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = os.WriteFile(filepath.Join(f.dir, in.name+".metrics"), b, 0o644)
	}
}
