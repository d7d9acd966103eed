package main

import (
	"bufio"
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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/loopcast/loopcast/internal/testutil"
	"go.uber.org/goleak"
)

// End-to-end tests run the real binary, built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "loopcast-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "loopcast")
	// Bounded only so a hung build fails the run, with its output,
	// instead of hanging it until go test kills the binary; on a cold
	// cache and a loaded machine it takes minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	build := exec.CommandContext(ctx, "go", "build", "-o", binary, ".")
	build.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	build.Cancel = func() error { return syscall.Kill(-build.Process.Pid, syscall.SIGKILL) }
	build.WaitDelay = 10 * time.Second
	out, err := build.CombinedOutput()
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	http.DefaultClient.CloseIdleConnections()
	if code == 0 {
		// gnet's shared worker pool (ants) starts its own goroutines
		// when the package loads; they are not the tests'.
		if err := goleak.Find(
			goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
			goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// proc is a running loopcast binary.
type proc struct {
	cmd    *exec.Cmd
	addr   string
	admin  string // "off" without an admin listener
	stderr *syncBuffer
	exited chan error
}

type syncBuffer = testutil.SyncBuffer

var servingAddr = regexp.MustCompile(`msg=serving addr=(\S+) admin=(\S+)`)

// startBinary runs loopcast on 127.0.0.1:0 (admin listener too) with
// extra flags and waits for its "serving" log line, which names the
// bound addresses.
func startBinary(t *testing.T, args ...string) *proc {
	t.Helper()
	return startBinaryEnv(t, nil, args...)
}

// startBinaryEnv is startBinary with env (nil: the test's own).
func startBinaryEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = env
	return startProc(t, cmd)
}

// startProc starts cmd, a loopcast command line, and waits for its
// "serving" log line.
func startProc(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("loopcast stderr:\n%s", p.stderr.String())
		}
	})
	deadline := time.Now().Add(e2eWait)
	for {
		if m := servingAddr.FindStringSubmatch(p.stderr.String()); m != nil {
			p.addr, p.admin = m[1], m[2]
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("loopcast did not start:\n%s", p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// e2eWait bounds the end-to-end tests' waits (a curl, a read, a process
// exit) only so a broken binary fails a test instead of hanging it: no
// claim about speed, far above what a loaded machine takes.
const e2eWait = 20 * time.Second

// curl runs curl -s -i with args and returns what it printed. curl ends
// when the response does; --max-time (e2eWait) only keeps a broken server
// from hanging the test. (An upgrade answered 101 leaves the connection
// open, and curl prints the 101 head only when it ends: TestSeedCurlCheck
// has the server close it.)
func curl(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed for the seed document's check (.ci/run installs it)")
	}
	out, _ := exec.Command("curl", append([]string{"-s", "-i", "--max-time", strconv.Itoa(int(e2eWait / time.Second))}, args...)...).Output()
	return string(out)
}

// TestSeedCurlCheck runs the curl check of Microsoft's "Expose a
// WebSocket server to Application Gateway" against the built binary.
//
// curl waits for the end of a connection answered 101 before it prints
// the head, so the server is what ends it: curl never answers a ping,
// and the idle timeout (500 ms) closes the session. (With a fixed
// --max-time instead, a loaded machine could end curl before the 101
// came.)
func TestSeedCurlCheck(t *testing.T) {
	p := startBinary(t, "--ping-interval", "200ms", "--idle-timeout", "500ms")
	url := "http://" + p.addr
	seed := []string{"-N", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
		"-H", "Origin: http://localhost", "-H", "Host: localhost", "-H", "Sec-WebSocket-Version: 13"}

	out := curl(t, append(seed, "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", url+"/ws")...)
	if !strings.HasPrefix(out, "HTTP/1.1 101 Switching Protocols\r\n") ||
		!strings.Contains(out, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") {
		t.Errorf("valid key: want 101 with RFC 6455's accept value, got:\n%s", out)
	}
	out = curl(t, append(seed, "-H", "Sec-WebSocket-Key: 123", url+"/ws")...)
	if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "base64") || !strings.Contains(out, "dGhlIHNhbXBsZSBub25jZQ==") {
		t.Errorf("key 123: want 400 explaining a valid key, got:\n%s", out)
	}
	for _, probe := range [][]string{{url + "/"}, {url + "/health"}, {"-H", "Host: localhost", url + "/"}, {"-I", url + "/"}} {
		out := curl(t, probe...)
		if !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") {
			t.Errorf("curl %v: want 200, got:\n%s", probe, out)
		}
	}
}

func TestFlagsAndEnvironment(t *testing.T) {
	cases := []struct {
		args    []string
		env     []string
		code    int
		message string
	}{
		{[]string{"--check"}, nil, 0, "configuration ok"},
		{[]string{"--check", "--max-message", "64KiB"}, []string{"LOOPCAST_PING_INTERVAL=5s"}, 0, "configuration ok"},
		{[]string{"--max-message", "lots"}, nil, 2, "max-message"},
		{[]string{"--check"}, []string{"LOOPCAST_PING_INTERVAL=soon"}, 2, "LOOPCAST_PING_INTERVAL"},
		{[]string{"--check", "--ping-interval", "50s"}, nil, 2, "idle-timeout 45s must exceed ping-interval 50s"},
		{[]string{"--check", "--addr", "8080"}, nil, 2, "addr"},
		{[]string{"--no-such-flag"}, nil, 2, "no-such-flag"},
		// A flag beats its environment variable, which is then not parsed.
		{[]string{"--check", "--ping-interval", "10s"}, []string{"LOOPCAST_PING_INTERVAL=50s"}, 0, "configuration ok"},
		{[]string{"--check", "--max-message", "2MiB"}, []string{"LOOPCAST_MAX_MESSAGE=abc"}, 0, "configuration ok"},
		// --check catches what a new user gets wrong.
		{[]string{"--check", "--addr", ":8080", "--admin-addr", ":8080", "--admin-no-token"}, nil, 2, "both on port 8080"},
		{[]string{"--check", "--addr", ":99999"}, nil, 2, "0 to 65535"},
		{[]string{"--check", "--allowed-origins", "localhost"}, nil, 2, "scheme://host"},
		{[]string{"--check", "--admin-addr", ":9090"}, nil, 2, "publish-token-file"},
		{[]string{"--check", "--admin-addr", ":9090", "--publish-token-file", "/nonexistent/token"}, nil, 2, "publish-token-file: open /nonexistent/token"},
		{[]string{"--check", "--admin-addr", ":9090", "--admin-no-token"}, nil, 0, "configuration ok"},
		// A misspelt variable names the closest one.
		{[]string{"--check"}, []string{"LOOPCAST_ADR=:1"}, 2, "LOOPCAST_ADR is not a loopcast setting; did you mean LOOPCAST_ADDR?"},
		// Kubernetes' service links for Services named loopcast... are not settings.
		{[]string{"--check"}, []string{"LOOPCAST_SERVICE_HOST=10.0.0.1", "LOOPCAST_SERVICE_PORT=8080", "LOOPCAST_PORT=tcp://10.0.0.1:8080",
			"LOOPCAST_PORT_8080_TCP=tcp://10.0.0.1:8080", "LOOPCAST_PORT_8080_TCP_ADDR=10.0.0.1", "LOOPCAST_ADMIN_SERVICE_PORT_ADMIN=9090"}, 0, "configuration ok"},
		// Errors say what was expected.
		{[]string{"--check", "--ping-interval", "soon"}, nil, 2, "want a number with a unit, like 20s"},
		{[]string{"--check"}, []string{"LOOPCAST_EVENT_LOOPS=two"}, 2, "want digits"},
		{[]string{"--check", "--client-publish=maybe"}, nil, 2, "want true or false"},
		{[]string{"--check", "--publish-rate", "fast"}, nil, 2, "want one like 50"},
		// Case does not matter for the log settings.
		{[]string{"--check"}, []string{"LOOPCAST_LOG_LEVEL=DEBUG", "LOOPCAST_LOG_FORMAT=JSON"}, 0, "configuration ok"},
		{[]string{"--version"}, nil, 0, "loopcast "},
		{[]string{"-h"}, nil, 0, "-max-pending"},
	}
	for _, c := range cases {
		cmd := exec.Command(binary, c.args...)
		cmd.Env = append(os.Environ(), c.env...)
		out, err := cmd.CombinedOutput()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || !strings.Contains(string(out), c.message) {
			t.Errorf("loopcast %v %v: exit %d %q, want exit %d mentioning %q", c.args, c.env, code, out, c.code, c.message)
		}
		// A usage error is the error and a one-line hint, not the flag list.
		if code == 2 && (strings.Contains(string(out), "-max-pending") || !strings.Contains(string(out), "loopcast -h")) {
			t.Errorf("loopcast %v %v: %q, want the error and a hint to run loopcast -h, without the usage", c.args, c.env, out)
		}
	}
}

// TestSIGTERMDrains: readiness turns 503 at once, sessions keep working
// for the drain delay, then get 1001 spread over the drain duration, and
// the process exits 0.
//
// What is asserted is what happens and in which order; of the timing only
// what no load can break: the first 1001 never comes before the drain
// delay. The delay (3 s) leaves a loaded machine ample time for the echo
// meant to run inside it, and the spread is checked as an order: when the
// first member has read its 1001, most others are still open, which a
// server closing everyone at once never shows.
func TestSIGTERMDrains(t *testing.T) {
	const delay, spread = 3 * time.Second, 4 * time.Second
	p := startBinary(t, "--drain-delay", delay.String(), "--drain-duration", spread.String())
	const clients = 24
	conns := make([]*gorilla.Conn, clients)
	for i := range conns {
		path := "/ws/drain" // conns[0] echoes, so the others get nothing but the close
		if i == 0 {
			path = "/echo"
		}
		c, _, err := gorilla.DefaultDialer.Dial("ws://"+p.addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	sent := time.Now() // before the signal: the server's delay starts later
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The first member to read its 1001 asks the server how many
	// WebSockets it still holds: spread over 4 s, nearly all; a server
	// that closed everyone at once, none but those whose clients have not
	// answered the close frame yet.
	var told atomic.Int64
	openAtFirst := make(chan string, 1)
	closedAt := make(chan time.Duration, clients)
	for i, c := range conns[1:] {
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(delay + spread + e2eWait))
			_, _, err := c.ReadMessage()
			after := time.Since(sent)
			if !gorilla.IsCloseError(err, gorilla.CloseGoingAway) {
				t.Errorf("client %d: want close 1001, got %v", i+1, err)
			}
			if told.Add(1) == 1 {
				openAtFirst <- statsNow(p)
			}
			closedAt <- after
		}()
	}
	// Still served during the drain delay: an echo round trip, answered
	// before this session's own 1001.
	ws := conns[0]
	_ = ws.SetReadDeadline(time.Now().Add(delay + e2eWait))
	if err := ws.WriteMessage(gorilla.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "still here" {
		t.Fatalf("during drain delay: %q %v", msg, err)
	}
	waitStatus := func(path string, want int) {
		deadline := time.Now().Add(e2eWait)
		for {
			out := curl(t, "http://"+p.addr+path)
			if strings.HasPrefix(out, fmt.Sprintf("HTTP/1.1 %d ", want)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s during drain: want %d, got %q", path, want, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitStatus("/", 503)
	waitStatus("/livez", 200)
	if _, _, err := ws.ReadMessage(); !gorilla.IsCloseError(err, gorilla.CloseGoingAway) {
		t.Fatalf("want close 1001, got %v", err)
	}
	first, last := time.Hour, time.Duration(0)
	for range clients - 1 {
		d := <-closedAt
		first, last = min(first, d), max(last, d)
	}
	t.Logf("1001 closes from %s to %s after SIGTERM", first.Round(time.Millisecond), last.Round(time.Millisecond))
	var st serverStats
	if out := <-openAtFirst; json.Unmarshal([]byte(out), &st) != nil {
		t.Errorf("/stats when the first member read its 1001: %q", out)
	} else if st.WebSockets < clients/2 {
		t.Errorf("when the first member read its 1001, %d of %d WebSockets were still open: want the closes spread over %s, most still to come", st.WebSockets, clients, spread)
	}
	// Never before the delay (timed from before the signal).
	if first < delay {
		t.Errorf("first 1001 came %s after SIGTERM, before the %s drain delay", first, delay)
	}
	select {
	case err := <-p.exited:
		p.exited <- err // for Cleanup
		if err != nil {
			t.Fatalf("exit: %v, want status 0", err)
		}
	case <-time.After(e2eWait):
		t.Fatal("loopcast did not exit after the drain")
	}
}

// TestHoldsManyIdleConnections opens 19,000 WebSockets to one server
// process (this machine allows 20,000 open files per process), spread
// over 127.0.0.x source addresses: half in one room, half in a room of
// their own. It checks that every handshake succeeded and that the
// server still serves, reports its RSS per connection, then closes them
// all and checks that no connection, room or goroutine is left.
func TestHoldsManyIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 19,000 sockets")
	}
	n := 19_000
	if max := fdLimit() - 500; max < n {
		t.Skipf("open-file limit allows %d sockets here", max)
	}
	// --pprof: goroutine profile below. Pings and the idle timeout out of
	// the way: these clients never answer a ping, and opening 19,000 of
	// them may take a loaded machine longer than the default 45 s idle
	// timeout (they would rightly be closed, and a ping would break the
	// silence checked below).
	p := startBinary(t, "--event-loops", "2", "--pprof", "--ping-interval", "1h", "--idle-timeout", "2h")
	rssBefore := rssBytes(t, p.cmd.Process.Pid)

	conns := make([]net.Conn, n)
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				room := "idle"
				if i%2 == 1 {
					room = fmt.Sprintf("solo-%d", i)
				}
				c, err := handshake(p.addr, fmt.Sprintf("127.0.0.%d", 2+i%8), room)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d handshakes failed; first: %v", f, n, firstErr.Load())
	}
	rss := rssBytes(t, p.cmd.Process.Pid)
	t.Logf("%d idle WebSockets: %.0f handshakes/s, server RSS %d MiB, %d bytes per connection",
		n, float64(n)/elapsed.Seconds(), rss>>20, (rss-rssBefore)/int64(n))

	// Still serving: a health probe and an echo.
	if out := curl(t, "http://"+p.addr+"/"); !strings.HasPrefix(out, "HTTP/1.1 200 ") {
		t.Fatalf("health with %d open: %q", n, out)
	}
	ws, _, err := gorilla.DefaultDialer.Dial("ws://"+p.addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.WriteMessage(gorilla.BinaryMessage, []byte("x"))
	_ = ws.SetReadDeadline(time.Now().Add(e2eWait))
	if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "x" {
		t.Fatalf("echo with %d open: %q %v", n, msg, err)
	}
	// None of the idle ones was closed.
	for i, c := range conns[:100] {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
			t.Fatalf("idle connection %d: %v, want it open and silent", i, err)
		}
	}
	st := stats(t, p)
	if st.WebSockets != int64(n)+1 || st.Rooms != int64(n/2)+1 {
		t.Fatalf("with %d open: %d websockets in %d rooms, want %d in %d", n, st.WebSockets, st.Rooms, n+1, n/2+1)
	}
	goroutines := goroutineCount(t, p)

	for i, c := range conns {
		c.Close()
		conns[i] = nil
	}
	ws.Close()
	deadline := time.Now().Add(20 * time.Second)
	for st = stats(t, p); st.Connections != 0 || st.Rooms != 0; st = stats(t, p) {
		if time.Now().After(deadline) {
			t.Fatalf("after closing every client: %d connections, %d rooms left", st.Connections, st.Rooms)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if after := goroutineCount(t, p); after > goroutines {
		t.Fatalf("server goroutines grew from %d to %d", goroutines, after)
	}
}

type serverStats struct {
	Connections, WebSockets, Rooms int64
}

func stats(t *testing.T, p *proc) serverStats {
	t.Helper()
	var st serverStats
	out := adminGet(t, p, "/stats")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("/stats: %v in %q", err, out)
	}
	return st
}

// goroutineCount reads the server's goroutine count from pprof.
func goroutineCount(t *testing.T, p *proc) int {
	t.Helper()
	var n int
	out := adminGet(t, p, "/debug/pprof/goroutine?debug=1")
	if _, err := fmt.Sscanf(out, "goroutine profile: total %d", &n); err != nil {
		t.Fatalf("goroutine profile: %v in %.100q", err, out)
	}
	return n
}

// statsNow is the admin listener's /stats, or the error, for use off the
// test goroutine.
func statsNow(p *proc) string {
	resp, err := http.Get("http://" + p.admin + "/stats")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func adminGet(t *testing.T, p *proc, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// handshake opens a WebSocket from a given local address with a raw
// socket, reads the 101 and returns the open connection.
func handshake(addr, local, room string) (net.Conn, error) {
	d := net.Dialer{Timeout: e2eWait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(e2eWait))
	req := "GET /ws/" + room + " HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	line, err := bufio.NewReaderSize(c, 256).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 101 ") {
		c.Close()
		return nil, fmt.Errorf("handshake: %q %v", line, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func fdLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 1024
	}
	return int(r.Cur)
}

func rssBytes(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &kb)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestSecondSignalExitsAtOnce: during a long drain, a second SIGTERM ends
// the process without waiting.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	p := startBinary(t, "--drain-delay", "1m")
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(e2eWait)
	for !strings.Contains(p.stderr.String(), "msg=draining") {
		if time.Now().After(deadline) {
			t.Fatal("no drain after the first signal")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		if err == nil {
			t.Fatal("exit status 0 after an interrupted drain; want the signal's")
		}
	case <-time.After(e2eWait): // the drain alone would take a minute
		t.Fatalf("still running %s after the second signal (drain delay 1m)", e2eWait)
	}
}

// Secrets given to the real binary, from a file or as a flag, appear in
// no log line, in neither /stats nor /metrics, and not in pprof (which
// never serves the command line).
func TestSecretsNeverShown(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "publish-token")
	const token, jwtSecret = "tok-6f1d3c9a-from-a-file", "jwt-secret-b2e4f8a1-as-a-flag-0123"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, "--publish-token-file", tokenFile, "--jwt-secret", jwtSecret, "--pprof", "--log-level", "debug")
	get := func(path string, auth bool) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+p.admin+path, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	defer http.DefaultClient.CloseIdleConnections()
	if code, _ := get("/stats", false); code != 401 {
		t.Fatalf("/stats without the token from the file: %d, want 401", code)
	}
	var seen strings.Builder
	for _, path := range []string{"/stats", "/rooms", "/metrics", "/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=2"} {
		code, body := get(path, true)
		if path == "/debug/pprof/cmdline" && code != 404 {
			t.Errorf("%s: %d, want 404", path, code)
		}
		seen.WriteString(body)
	}
	seen.WriteString(p.stderr.String())
	for _, secret := range []string{token, jwtSecret} {
		if strings.Contains(seen.String(), secret) {
			t.Errorf("secret %q shown by the admin listener or the log", secret)
		}
	}
}
