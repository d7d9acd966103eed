package main

import (
	"bufio"
	be "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// soakHTTP fetches admin pages without keep-alive, so the measuring
// itself leaves no connection (and no server goroutine) behind.
var soakHTTP = &http.Client{Timeout: soakWait, Transport: &http.Transport{DisableKeepAlives: true}}

func soakGet(t *testing.T, p *proc, path string) string {
	t.Helper()
	resp, err := soakHTTP.Get("http://" + p.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return string(b)
}

// procSample is what the soak watches for growth.
type procSample struct {
	goroutines int
	heapInuse  int64 // runtime HeapInuse after two forced GCs
	openFiles  int
	rss        int64
}

func (s procSample) String() string {
	return fmt.Sprintf("goroutines %d, HeapInuse %.2f MiB, open files %d, RSS %.1f MiB",
		s.goroutines, float64(s.heapInuse)/(1<<20), s.openFiles, float64(s.rss)/(1<<20))
}

// sample reads the server's goroutines (pprof), heap in use after a
// forced GC (pprof heap ?gc=1, twice so pooled objects are dropped too),
// open files (/proc/PID/fd) and RSS.
func sample(t *testing.T, p *proc) procSample {
	t.Helper()
	var s procSample
	soakGet(t, p, "/debug/pprof/heap?gc=1")
	heap := soakGet(t, p, "/debug/pprof/heap?debug=1&gc=1")
	i := strings.Index(heap, "# HeapInuse = ")
	if i < 0 {
		t.Fatalf("no HeapInuse in the heap profile")
	}
	if _, err := fmt.Sscanf(heap[i:], "# HeapInuse = %d", &s.heapInuse); err != nil {
		t.Fatal(err)
	}
	out := soakGet(t, p, "/debug/pprof/goroutine?debug=1")
	if _, err := fmt.Sscanf(out, "goroutine profile: total %d", &s.goroutines); err != nil {
		t.Fatalf("goroutine profile: %v", err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	s.openFiles = len(fds)
	s.rss = rssBytes(t, p.cmd.Process.Pid)
	return s
}

// soakStats is the part of /stats the soak reads.
type soakStats struct {
	Connections   int64            `json:"connections"`
	WebSockets    int64            `json:"websockets"`
	Rooms         int64            `json:"rooms"`
	Accepted      int64            `json:"accepted"`
	Upgrades      int64            `json:"upgrades"`
	Health        int64            `json:"health"`
	MessagesIn    int64            `json:"messages_in"`
	Deliveries    int64            `json:"deliveries"`
	SlowConsumers int64            `json:"slow_consumers"`
	Closes        map[string]int64 `json:"closes"`
}

func getStats(t *testing.T, p *proc) soakStats {
	t.Helper()
	var st soakStats
	if err := json.Unmarshal([]byte(soakGet(t, p, "/stats")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// soakDuration is LOOPCAST_SOAK (a Go duration), 5 s by default so the
// soak runs in CI; e.g. LOOPCAST_SOAK=10m go test ./cmd/loopcast -run Soak -v.
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("LOOPCAST_SOAK")
	if v == "" {
		return 5 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("LOOPCAST_SOAK=%q: want a duration such as 10m", v)
	}
	return d
}

// soakCounts are the churn's totals.
type soakCounts struct {
	sessions, roomSessions, echoSessions, probes, abandoned atomic.Int64
	published, received, echoed                             atomic.Int64
	cleanCloses, abruptCloses, slowClosed                   atomic.Int64
}

// TestSoak runs the built binary and churns connections and messages for
// LOOPCAST_SOAK (default 5 s) with at most 200 live clients: members
// joining one of 20 rooms, publishing and reading until their own
// messages came back, then leaving with a close handshake or by dropping
// TCP; echo sessions; health probes; handshakes abandoned half-way. It
// prints the server's goroutines, heap in use (after forced GCs), open
// files and RSS at start, after a 1 s warm-up (the baseline: lazily
// started pools and buffers exist by then) and at the end, once every
// client is gone, and fails when goroutines or open files grew by more
// than 2 or the heap by more than 4 MiB over the baseline.
func TestSoak(t *testing.T) {
	d := soakDuration(t)
	// --pprof for the heap profile; --publish-rate 0: the load publishes
	// far faster than any person.
	// --history-ttl 2s: rooms are forgotten once their history expired.
	// --ping-interval 1s: sessions see pings. The handshake and idle
	// timeouts stay far above anything a loaded machine makes a client
	// wait: with 2 s, 200 clients dialing at once under -race beside a
	// CPU-heavy job had a request still unsent 2 s after the server
	// accepted (nothing in gnet's buffer or the socket): the server was
	// right to close it, and the test failed. No session leans on either
	// timeout: each ends itself.
	p := startBinary(t, "--event-loops", "2", "--pprof", "--publish-rate", "0", "--history-ttl", "2s", "--ping-interval", "1s", "--idle-timeout", "20s",
		"--handshake-timeout", "10s", "--max-message", "64KiB", "--max-pending", "1MiB")
	cold := sample(t, p)
	t.Logf("start:    %v", cold)

	const workers = 200
	var c soakCounts
	var errMu sync.Mutex
	var errs []error
	churn := func(until time.Time, seed uint64) {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(seed, uint64(w)))
				for time.Now().Before(until) {
					if err := soakSession(p.addr, r, &c); err != nil {
						errMu.Lock()
						errs = append(errs, err)
						errMu.Unlock()
					}
				}
			})
		}
		wg.Wait()
	}
	waitIdle := func(what string) {
		deadline := time.Now().Add(soakWait)
		for st := getStats(t, p); st.Connections != 0 || st.Rooms != 0; st = getStats(t, p) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d connections and %d rooms left %s after the last client left", what, st.Connections, st.Rooms, soakWait)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	churn(time.Now().Add(time.Second), 1)
	waitIdle("warm-up")
	base := sample(t, p)
	t.Logf("baseline: %v (after a 1 s warm-up)", base)

	start := time.Now()
	churn(start.Add(d), 2)
	elapsed := time.Since(start)
	waitIdle("soak")
	end := sample(t, p)
	t.Logf("end:      %v (after %s of churn)", end, elapsed.Round(time.Millisecond))

	st := getStats(t, p)
	t.Logf("churn: %d sessions (%d room, %d echo, %d health probes, %d abandoned handshakes); %d published, %d received by members, %d echoed; %d close handshakes, %d dropped TCP, %d closed as slow consumers",
		c.sessions.Load(), c.roomSessions.Load(), c.echoSessions.Load(), c.probes.Load(), c.abandoned.Load(),
		c.published.Load(), c.received.Load(), c.echoed.Load(), c.cleanCloses.Load(), c.abruptCloses.Load(), c.slowClosed.Load())
	t.Logf("server: accepted %d, upgrades %d, health %d, messages in %d, deliveries %d, closes %v",
		st.Accepted, st.Upgrades, st.Health, st.MessagesIn, st.Deliveries, st.Closes)
	if len(errs) > 0 {
		for i, err := range errs[:min(len(errs), 10)] {
			t.Logf("client error %d: %v", i+1, err)
		}
		t.Errorf("%d client errors; first: %v", len(errs), errs[0])
	}
	if c.sessions.Load() < workers {
		t.Errorf("only %d sessions in %s", c.sessions.Load(), d)
	}
	if end.goroutines > base.goroutines+2 {
		t.Errorf("goroutines grew from %d to %d", base.goroutines, end.goroutines)
	}
	if end.openFiles > base.openFiles+2 {
		t.Errorf("open files grew from %d to %d", base.openFiles, end.openFiles)
	}
	if end.heapInuse > base.heapInuse+4<<20 {
		t.Errorf("heap in use grew from %.2f to %.2f MiB", float64(base.heapInuse)/(1<<20), float64(end.heapInuse)/(1<<20))
	}
}

// soakWait bounds every wait of a client (dial, handshake, read, write)
// and of the test. It only keeps a broken server from hanging the test;
// it is no claim about speed, so it is far above what a loaded machine
// takes (200 clients, -race, two cores shared with other work).
const soakWait = 20 * time.Second

var soakDialer = &gorilla.Dialer{HandshakeTimeout: soakWait}

// soakSession runs one random client session against addr. Every wait
// has a deadline (soakWait), so a session ends whatever the server does.
func soakSession(addr string, r *rand.Rand, c *soakCounts) error {
	c.sessions.Add(1)
	switch k := r.IntN(10); {
	case k < 5:
		c.roomSessions.Add(1)
		return soakRoom(addr, r, c)
	case k < 8:
		c.echoSessions.Add(1)
		return soakEcho(addr, r, c)
	case k < 9:
		c.probes.Add(1)
		return soakProbe(addr)
	default:
		c.abandoned.Add(1)
		conn, err := net.DialTimeout("tcp", addr, soakWait)
		if err != nil {
			return err
		}
		_, _ = conn.Write([]byte("GET /ws/soak HTTP/1.1\r\nHost: localhost\r\nUpgrade: web"))
		time.Sleep(time.Duration(r.IntN(50)) * time.Millisecond)
		return conn.Close()
	}
}

// soakLeave ends a session: a close handshake or a dropped connection.
func soakLeave(ws *gorilla.Conn, r *rand.Rand, c *soakCounts) {
	if r.IntN(2) == 0 {
		c.abruptCloses.Add(1)
		_ = ws.NetConn().Close()
		return
	}
	c.cleanCloses.Add(1)
	_ = ws.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(gorilla.CloseNormalClosure, "bye"), time.Now().Add(soakWait))
	_ = ws.SetReadDeadline(time.Now().Add(soakWait))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			break
		}
	}
	_ = ws.Close()
}

// soakRoom joins a random room, publishes a few messages and reads until
// its own last message came back (a member receives its own messages, in
// order among everything the room sequenced).
func soakRoom(addr string, r *rand.Rand, c *soakCounts) error {
	room := fmt.Sprintf("soak-%d", r.IntN(20))
	ws, _, err := soakDialer.Dial("ws://"+addr+"/ws/"+room, nil)
	if err != nil {
		return fmt.Errorf("join %s: %w", room, err)
	}
	defer ws.Close()
	id := r.Uint64()
	n := 1 + r.IntN(8)
	for i := range n {
		msg := make([]byte, 16+r.IntN(4096))
		be.BigEndian.PutUint64(msg, id)
		be.BigEndian.PutUint64(msg[8:], uint64(i))
		_ = ws.SetWriteDeadline(time.Now().Add(soakWait))
		if err := ws.WriteMessage(gorilla.BinaryMessage, msg); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		c.published.Add(1)
	}
	next := uint64(0)
	_ = ws.SetReadDeadline(time.Now().Add(soakWait))
	for next < uint64(n) {
		_, msg, err := ws.ReadMessage()
		if gorilla.IsCloseError(err, 1013) {
			c.slowClosed.Add(1) // a busy room outran this reader: told, not a gap
			return nil
		}
		if err != nil {
			return fmt.Errorf("member of %s after %d of its %d messages: %w", room, next, n, err)
		}
		c.received.Add(1)
		if len(msg) >= 16 && be.BigEndian.Uint64(msg) == id {
			if got := be.BigEndian.Uint64(msg[8:]); got != next {
				return fmt.Errorf("member of %s: own message %d arrived when %d was due", room, got, next)
			}
			next++
		}
	}
	soakLeave(ws, r, c)
	return nil
}

// soakEcho runs a few echo round trips of random sizes and opcodes.
func soakEcho(addr string, r *rand.Rand, c *soakCounts) error {
	ws, _, err := soakDialer.Dial("ws://"+addr+"/echo", nil)
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	defer ws.Close()
	for range 1 + r.IntN(10) {
		op := gorilla.BinaryMessage
		msg := make([]byte, r.IntN(8192))
		for i := range msg {
			msg[i] = byte(r.Uint32())
		}
		if r.IntN(2) == 0 {
			op = gorilla.TextMessage
			for i := range msg {
				msg[i] = 'a' + msg[i]%26
			}
		}
		_ = ws.SetWriteDeadline(time.Now().Add(soakWait))
		if err := ws.WriteMessage(op, msg); err != nil {
			return fmt.Errorf("echo write: %w", err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(soakWait))
		gotOp, got, err := ws.ReadMessage()
		if err != nil || gotOp != op || string(got) != string(msg) {
			return fmt.Errorf("echo of %d bytes: op %d, %d bytes, %v", len(msg), gotOp, len(got), err)
		}
		c.echoed.Add(1)
	}
	soakLeave(ws, r, c)
	return nil
}

// soakProbe is a health probe on the main listener.
func soakProbe(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, soakWait)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(soakWait))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200 ") {
		return fmt.Errorf("health probe: %q %v", line, err)
	}
	return nil
}

// TestNeverReadingMembersRSS puts 200 members that never read (4 KiB
// receive buffers) in a room that a publisher keeps busy with 16 KiB
// messages, with --max-pending 256KiB, next to a control member that
// reads everything. Each slow member costs the server at most
// max-pending of unsent frames plus one cork (64 KiB) before it is
// closed with 1013. The Go heap may hold up to twice its live data before
// a collection (GOGC=100), so the server's peak RSS (VmHWM) may grow by
// at most
//
//	2 × 200 × (256 KiB + 64 KiB) + 32 MiB = 157 MiB
//
// over its RSS with everyone connected. All 200 are counted as slow
// consumers, each received a gap-free prefix of the messages followed by
// close 1013 or the end of the connection (the close frame is lost when
// it is queued behind unsent data at the close), and the control member
// got every message in order.
func TestNeverReadingMembersRSS(t *testing.T) {
	const members, size, maxPending = 200, 16 << 10, 256 << 10
	p := startBinary(t, "--event-loops", "2", "--max-pending", "256KiB", "--publish-rate", "0")
	pid := p.cmd.Process.Pid

	slow := make([]net.Conn, members)
	for i := range slow {
		d := net.Dialer{Timeout: soakWait, Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
			return errors.Join(err, serr)
		}}
		conn, err := d.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := rawUpgrade(conn, "/ws/busy"); err != nil {
			t.Fatal(err)
		}
		slow[i] = conn
	}
	pub, _, err := soakDialer.Dial("ws://"+p.addr+"/ws/busy", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctl, _, err := soakDialer.Dial("ws://"+p.addr+"/ws/busy", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	deadline := time.Now().Add(soakWait)
	for getStats(t, p).WebSockets != members+2 {
		if time.Now().After(deadline) {
			t.Fatal("members did not all join")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rssBefore := rssBytes(t, pid)

	// The control reads every message and checks the sequence until its
	// connection is closed.
	ctlDone := make(chan error, 1)
	var ctlSeen atomic.Int64
	go func() {
		for {
			_ = ctl.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, msg, err := ctl.ReadMessage()
			if err != nil {
				ctlDone <- fmt.Errorf("control after %d messages: %w", ctlSeen.Load(), err)
				return
			}
			if seq := int64(be.BigEndian.Uint64(msg)); seq != ctlSeen.Load() || len(msg) != size {
				ctlDone <- fmt.Errorf("control: message %d (%d bytes) when %d was due", seq, len(msg), ctlSeen.Load())
				return
			}
			ctlSeen.Add(1)
		}
	}()

	// Publish in bursts of 16, reading our own copies back, until every
	// slow member was closed (or 512 MiB fanned-in, a safety cap).
	msg := make([]byte, size)
	seq := 0
	start := time.Now()
	for {
		st := getStats(t, p)
		if st.SlowConsumers >= members {
			break
		}
		if seq*size > 512<<20 || time.Since(start) > 30*time.Second {
			t.Fatalf("after %d messages in %s only %d slow consumers were closed", seq, time.Since(start), st.SlowConsumers)
		}
		for i := range 16 {
			be.BigEndian.PutUint64(msg, uint64(seq+i))
			_ = pub.SetWriteDeadline(time.Now().Add(soakWait))
			if err := pub.WriteMessage(gorilla.BinaryMessage, msg); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 16 {
			_ = pub.SetReadDeadline(time.Now().Add(soakWait))
			_, got, err := pub.ReadMessage()
			if err != nil || int(be.BigEndian.Uint64(got)) != seq+i {
				t.Fatalf("publisher's own message %d: %v", seq+i, err)
			}
		}
		seq += 16
		// Pace on the control too: it reads, so it must never be more
		// than max-pending behind (a loaded CI machine can make a
		// reader slower than the publisher).
		for ctlSeen.Load() < int64(seq) {
			select {
			case err := <-ctlDone:
				t.Fatal(err)
			case <-time.After(time.Millisecond):
			}
			if time.Since(start) > 60*time.Second {
				t.Fatalf("control read %d of %d messages", ctlSeen.Load(), seq)
			}
		}
	}
	for ctlSeen.Load() != int64(seq) {
		select {
		case err := <-ctlDone:
			t.Fatal(err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("control read %d of %d messages", ctlSeen.Load(), seq)
		}
	}
	_ = ctl.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(1000, ""), time.Now().Add(soakWait))
	if err := <-ctlDone; !errors.As(err, new(*gorilla.CloseError)) || !strings.Contains(err.Error(), "close 1000") {
		t.Fatalf("control: %v, want its close handshake to end it", err)
	}
	hwm := procStatus(t, pid, "VmHWM:")
	rssAfter := rssBytes(t, pid)
	bound := int64(2*members*(maxPending+64<<10) + 32<<20)
	growth := hwm - rssBefore
	t.Logf("%d never-reading members, %d messages of %d KiB (%.0f MiB) published in %s: RSS %.1f MiB before, peak %.1f MiB (+%.1f MiB, bound +%.1f MiB), %.1f MiB after",
		members, seq, size>>10, float64(seq*size)/(1<<20), time.Since(start).Round(time.Millisecond),
		float64(rssBefore)/(1<<20), float64(hwm)/(1<<20), float64(growth)/(1<<20), float64(bound)/(1<<20), float64(rssAfter)/(1<<20))
	if growth > bound {
		t.Errorf("server peak RSS grew by %.1f MiB, bound %.1f MiB", float64(growth)/(1<<20), float64(bound)/(1<<20))
	}

	// Every slow member got a gap-free prefix, then 1013 or EOF. Read in
	// parallel, with receive buffers opened up now that the test is over:
	// through 4 KiB windows each stream is latency-bound.
	type result struct{ n, code int }
	results := make([]result, members)
	errs := make([]error, members)
	var wg sync.WaitGroup
	for i, conn := range slow {
		_ = conn.(*net.TCPConn).SetReadBuffer(1 << 20)
		wg.Go(func() {
			n, code, err := readPrefix(conn, size)
			results[i], errs[i] = result{n, code}, err
		})
	}
	wg.Wait()
	var told, dropped, frames int
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("slow member %d after %d messages: %v", i, r.n, errs[i])
		}
		frames += r.n
		switch r.code {
		case 1013:
			told++
		case 0:
			dropped++
		default:
			t.Fatalf("slow member %d: close code %d, want 1013", i, r.code)
		}
	}
	t.Logf("slow members: %.1f messages each on average before the close; %d saw close 1013, %d only the TCP close",
		float64(frames)/members, told, dropped)
	st := getStats(t, p)
	if st.SlowConsumers != members {
		t.Errorf("slow_consumers = %d, want %d", st.SlowConsumers, members)
	}
	if st.WebSockets > 1 {
		t.Errorf("%d WebSockets open, want only the publisher", st.WebSockets)
	}
	_ = pub.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(1000, ""), time.Now().Add(soakWait))
}

// rawUpgrade performs the handshake on conn and reads exactly the 101
// head, so no frame byte is consumed.
func rawUpgrade(conn net.Conn, path string) error {
	_ = conn.SetDeadline(time.Now().Add(soakWait))
	defer conn.SetDeadline(time.Time{})
	req := "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return err
	}
	var head []byte
	b := make([]byte, 1)
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		if _, err := conn.Read(b); err != nil {
			return fmt.Errorf("handshake: %q %w", head, err)
		}
		head = append(head, b[0])
	}
	if !strings.HasPrefix(string(head), "HTTP/1.1 101 ") {
		return fmt.Errorf("handshake: %q", head)
	}
	return nil
}

// readPrefix reads a slow member's stream: binary frames of size bytes
// numbered 0, 1, 2, … then a close frame (its code) or the end of the
// connection (code 0).
func readPrefix(conn net.Conn, size int) (n, code int, err error) {
	_ = conn.SetReadDeadline(time.Now().Add(soakWait))
	br := bufio.NewReaderSize(conn, 64<<10)
	payload := make([]byte, size)
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				return n, 0, nil
			}
			return n, 0, err
		}
		length := int(h[1] & 0x7f)
		switch length {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(br, e[:]); err != nil {
				return n, 0, truncated(err)
			}
			length = int(be.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(br, e[:]); err != nil {
				return n, 0, truncated(err)
			}
			length = int(be.BigEndian.Uint64(e[:]))
		}
		switch op := h[0] & 0x0f; {
		case op == 0x8:
			var p [125]byte
			if length < 2 || length > 125 {
				return n, 0, fmt.Errorf("close frame of %d bytes", length)
			}
			if _, err := io.ReadFull(br, p[:length]); err != nil {
				return n, 0, truncated(err)
			}
			return n, int(be.BigEndian.Uint16(p[:])), nil
		case op == 0x9:
			if _, err := io.CopyN(io.Discard, br, int64(length)); err != nil {
				return n, 0, truncated(err)
			}
			continue // a keepalive ping
		case op != 0x2 || length != size:
			return n, 0, fmt.Errorf("frame op %d of %d bytes", op, length)
		}
		if _, err := io.ReadFull(br, payload); err != nil {
			// The connection ended inside a frame: what the socket
			// had taken when the server dropped it.
			return n, 0, truncated(err)
		}
		if seq := be.BigEndian.Uint64(payload); seq != uint64(n) {
			return n, 0, fmt.Errorf("message %d when %d was due: a gap", seq, n)
		}
		n++
	}
}

// truncated accepts the end of the connection inside a frame (the rest
// was in the server's buffers when it closed) and reports other errors.
func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return err
}

// procStatus reads a kB field of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, field)), "%d", &kb)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
