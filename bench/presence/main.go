// Command presence measures presence join/leave throughput of one WebSocket
// server: N connections (each a distinct user, spread over R rooms) loop
// closed-loop "subscribe, wait for the reply, unsubscribe, wait for the
// reply" for a measured window, while one watcher connection per room counts
// the join/leave events the server pushes. It reports completed
// subscribe+unsubscribe cycles per second, the p50/p99 of a subscribe reply,
// the watchers' join/leave events, and the server process's CPU seconds in
// the window (/proc/PID/stat utime+stime), i.e. server CPU µs per cycle.
//
// Two protocols (the client is bench/wsclient, one epoll loop for all
// connections):
//
//	-server loopcast    loopcast.v1 text frames (sub/unsub, watch … presence)
//	-server centrifugo  Centrifugo's JSON protocol (connect, subscribe,
//	                    unsubscribe; watchers subscribe with join_leave:true)
//
// One JSON object per run goes to stdout; `presence summary` reads such
// lines on stdin and prints a table.
//
// bench/presence/run runs both servers, alternating, on pinned CPUs.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/loopcast/loopcast/bench/wsclient"
)

// proto is one server's client protocol.
type proto interface {
	room(i int) string
	// path is the upgrade request's path for user; subprotocol is offered.
	path(user string) string
	subprotocol() string
	// hello runs the connect handshake after the upgrade, if any.
	hello(c *client, user string) error
	// subCmd, unsubCmd and watchCmd append a command to b[:0].
	subCmd(b []byte, id int, room string) []byte
	unsubCmd(b []byte, id int, room string) []byte
	watchCmd(b []byte, id int, room string) []byte
	// scan reads one message: the replies in it (appended to replies),
	// the join and leave events in it, and whether it is a ping to answer.
	scan(msg []byte, replies []reply) (_ []reply, joins, leaves int, ping bool)
}

type reply struct {
	id   int
	bad  bool
	text string // the error, when bad
}

// client is one connection and its closed loop. Everything but dialling
// runs on the poller's goroutine.
type client struct {
	ws      *wsclient.Conn
	room    string
	watcher bool
	id      int   // id of the last command sent
	unsub   bool  // awaiting the unsub reply (else the sub reply)
	inWin   bool  // the current cycle's sub was sent inside the window
	t0, t1  int64 // when the sub was sent, when its reply came
	done    bool
	buf     []byte
	replies []reply
	// pushes counts events delivered to a cycling connection (Centrifugo
	// with force_push_join_leave pushes every join/leave to every
	// subscriber).
	pushes int64
}

// call writes cmd (whose id is c.id) and reads, blocking, until its reply;
// only before the poller takes the connection over.
func (c *client) call(p proto, cmd []byte) error {
	if err := c.ws.WriteFrame(wsclient.OpText, cmd); err != nil {
		return err
	}
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			return err
		}
		var ping bool
		c.replies, _, _, ping = p.scan(msg, c.replies[:0])
		if ping {
			c.ws.WriteFrame(wsclient.OpText, []byte("{}"))
		}
		for _, r := range c.replies {
			if r.id == c.id {
				if r.bad {
					return fmt.Errorf("%s", r.text)
				}
				return nil
			}
		}
	}
}

type result struct {
	Server         string  `json:"server"`
	Label          string  `json:"label"`
	Round          int     `json:"round"`
	Conns          int     `json:"conns"`
	Rooms          int     `json:"rooms"`
	DurationS      float64 `json:"duration_s"`
	Cycles         int64   `json:"cycles"`
	CyclesPerS     float64 `json:"cycles_per_s"`
	SubP50Ms       float64 `json:"sub_p50_ms"`
	SubP99Ms       float64 `json:"sub_p99_ms"`
	UnsubP50Ms     float64 `json:"unsub_p50_ms"`
	UnsubP99Ms     float64 `json:"unsub_p99_ms"`
	WatcherJoins   int64   `json:"watcher_joins"`
	WatcherLeaves  int64   `json:"watcher_leaves"`
	WatcherFrames  int64   `json:"watcher_frames"`
	CyclerPushes   int64   `json:"cycler_pushes"`
	Errors         int64   `json:"errors"`
	FirstError     string  `json:"first_error,omitempty"`
	ServerCPUS     float64 `json:"server_cpu_s"`
	ServerCPUUsPer float64 `json:"server_cpu_us_per_cycle"`
	ServerCPUUtil  float64 `json:"server_cpu_util"`
	ClientCPUS     float64 `json:"client_cpu_s"`
	ClientCPUUtil  float64 `json:"client_cpu_util"`
	ServerRSSMiB   float64 `json:"server_rss_mib"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "summary" {
		summary()
		return
	}
	var (
		server  = flag.String("server", "loopcast", "loopcast or centrifugo")
		addr    = flag.String("addr", "", "server host:port (default 127.0.0.1:18080 for loopcast, 127.0.0.1:18000 for centrifugo)")
		pid     = flag.Int("pid", 0, "server process id, for its CPU time (0: not measured)")
		n       = flag.Int("conns", 200, "cycling connections, each a distinct user")
		rooms   = flag.Int("rooms", 10, "rooms; connection i uses room i%rooms; one watcher per room")
		dur     = flag.Duration("duration", 10*time.Second, "measured window")
		warmup  = flag.Duration("warmup", 2*time.Second, "cycling before the window opens")
		secret  = flag.String("secret", "0123456789abcdef0123456789abcdef", "HS256 JWT secret")
		label   = flag.String("label", "", "label in the result (default: server)")
		round   = flag.Int("round", 0, "round number in the result")
		noWatch = flag.Bool("no-watchers", false, "no watcher connections")
	)
	flag.Parse()
	if *label == "" {
		*label = *server
	}
	var p proto
	switch *server {
	case "loopcast":
		if *addr == "" {
			*addr = "127.0.0.1:18080"
		}
		p = &loopcast{secret: []byte(*secret)}
	case "centrifugo":
		if *addr == "" {
			*addr = "127.0.0.1:18000"
		}
		p = &centrifugo{secret: []byte(*secret)}
	default:
		fatalf("unknown -server %q", *server)
	}

	// Connect everyone first (not measured): cyclers, then watchers.
	nw := *rooms
	if *noWatch {
		nw = 0
	}
	clients := make([]*client, *n+nw)
	var wg sync.WaitGroup
	var dialErr atomic.Value
	sem := make(chan struct{}, 32)
	for i := range clients {
		user := fmt.Sprintf("u%d", i)
		c := &client{room: p.room(i % *rooms), buf: make([]byte, 0, 128)}
		if i >= *n {
			user = fmt.Sprintf("watcher%d", i-*n)
			c.room = p.room(i - *n)
			c.watcher = true
		}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ws, err := wsclient.Dial(context.Background(), *addr, p.path(user), wsclient.Options{Protocol: p.subprotocol()})
			if err != nil {
				dialErr.CompareAndSwap(nil, fmt.Errorf("dial %s: %w", user, err))
				return
			}
			ws.Tag = i
			c.ws = ws
			if err := p.hello(c, user); err != nil {
				dialErr.CompareAndSwap(nil, fmt.Errorf("connect %s: %w", user, err))
				return
			}
			if c.watcher {
				c.id++
				if err := c.call(p, p.watchCmd(c.buf, c.id, c.room)); err != nil {
					dialErr.CompareAndSwap(nil, fmt.Errorf("watch %s: %w", c.room, err))
				}
			}
		}()
	}
	wg.Wait()
	if e := dialErr.Load(); e != nil {
		fatalf("%v", e)
	}

	// The closed loops, all on one goroutine reading every socket through
	// one epoll instance (bench/wsclient.Poller): the load tool's own cost
	// per cycle stays well under the server's.
	var (
		measuring, stop                        atomic.Bool
		cycles, errs, wJoins, wLeaves, wFrames int64
		firstErr                               string
		subLat, unsubLat                       []int64
	)
	send := func(c *client, unsub bool) {
		c.id++
		c.unsub = unsub
		if unsub {
			c.buf = p.unsubCmd(c.buf, c.id, c.room)
		} else {
			c.inWin = measuring.Load()
			c.buf = p.subCmd(c.buf, c.id, c.room)
			c.t0 = time.Now().UnixNano()
		}
		if err := c.ws.WriteFrame(wsclient.OpText, c.buf); err != nil {
			errs++
			if firstErr == "" {
				firstErr = err.Error()
			}
			c.done = true
		}
	}
	onMessage := func(ws *wsclient.Conn, _ byte, msg []byte, _ int64) {
		c := clients[ws.Tag]
		var j, l int
		var ping bool
		c.replies, j, l, ping = p.scan(msg, c.replies[:0])
		if ping {
			ws.WriteFrame(wsclient.OpText, []byte("{}"))
		}
		if j+l > 0 {
			if c.watcher {
				if measuring.Load() {
					wJoins += int64(j)
					wLeaves += int64(l)
					wFrames++
				}
			} else {
				c.pushes += int64(j + l)
			}
		}
		for _, r := range c.replies {
			if c.watcher || c.done || r.id != c.id {
				continue
			}
			now := time.Now().UnixNano()
			if r.bad {
				// Count it and start the cycle again.
				errs++
				if firstErr == "" {
					firstErr = r.text
				}
				if !stop.Load() {
					send(c, false)
				}
				continue
			}
			if !c.unsub {
				c.t1 = now
				send(c, true)
				continue
			}
			// A cycle counts if its sub was sent inside the window and
			// its unsub reply came inside it.
			if c.inWin && measuring.Load() {
				cycles++
				subLat = append(subLat, c.t1-c.t0)
				unsubLat = append(unsubLat, now-c.t1)
			}
			if stop.Load() {
				c.done = true
				continue
			}
			send(c, false)
		}
	}
	poller, err := wsclient.NewPoller(onMessage, func(ws *wsclient.Conn, err error) {
		c := clients[ws.Tag]
		if !stop.Load() {
			errs++
			if firstErr == "" {
				firstErr = "connection ended: " + err.Error()
			}
		}
		c.done = true
	})
	if err != nil {
		fatalf("%v", err)
	}
	ran := make(chan error, 1)
	go func() {
		for _, c := range clients {
			if err := poller.Add(c.ws); err != nil {
				ran <- err
				return
			}
		}
		for _, c := range clients {
			if !c.watcher {
				send(c, false)
			}
		}
		ran <- poller.Run()
	}()

	time.Sleep(*warmup)
	cpu0 := procCPU(*pid)
	self0 := selfCPU()
	start := time.Now()
	measuring.Store(true)
	time.Sleep(*dur)
	measuring.Store(false)
	elapsed := time.Since(start)
	cpu1 := procCPU(*pid)
	self1 := selfCPU()
	rss := procRSS(*pid)
	stop.Store(true)
	time.Sleep(200 * time.Millisecond) // let cycles in flight end
	poller.Stop()
	if err := <-ran; err != nil {
		fatalf("poller: %v", err)
	}
	for _, c := range clients {
		c.ws.Close()
	}

	r := result{
		Server: *server, Label: *label, Round: *round, Conns: *n, Rooms: *rooms,
		DurationS:     elapsed.Seconds(),
		Cycles:        cycles,
		WatcherJoins:  wJoins,
		WatcherLeaves: wLeaves,
		WatcherFrames: wFrames,
		Errors:        errs,
		FirstError:    firstErr,
		ServerCPUS:    cpu1 - cpu0,
		ClientCPUS:    self1 - self0,
		ServerRSSMiB:  rss / (1 << 20),
	}
	for _, c := range clients {
		r.CyclerPushes += c.pushes
	}
	r.CyclesPerS = float64(r.Cycles) / r.DurationS
	if r.Cycles > 0 {
		r.ServerCPUUsPer = r.ServerCPUS * 1e6 / float64(r.Cycles)
	}
	r.ServerCPUUtil = r.ServerCPUS / r.DurationS
	r.ClientCPUUtil = r.ClientCPUS / r.DurationS
	r.SubP50Ms, r.SubP99Ms = percentiles(subLat)
	r.UnsubP50Ms, r.UnsubP99Ms = percentiles(unsubLat)
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	fmt.Fprintf(os.Stderr, "%s round %d: %.0f cycles/s, server %.1f µs CPU/cycle (%.0f%% of a core), sub p50 %.2f ms p99 %.2f ms, watcher events %d (joins %d leaves %d, %d frames), pushes to cyclers %d, errors %d, load tool CPU %.0f%%\n",
		r.Label, r.Round, r.CyclesPerS, r.ServerCPUUsPer, 100*r.ServerCPUUtil, r.SubP50Ms, r.SubP99Ms,
		r.WatcherJoins+r.WatcherLeaves, r.WatcherJoins, r.WatcherLeaves, r.WatcherFrames, r.CyclerPushes, r.Errors, 100*r.ClientCPUUtil)
	if r.FirstError != "" {
		fmt.Fprintf(os.Stderr, "  first error: %s\n", r.FirstError)
	}
}

func percentiles(all []int64) (p50, p99 float64) {
	if len(all) == 0 {
		return 0, 0
	}
	slices.Sort(all)
	at := func(q float64) float64 {
		i := int(q * float64(len(all)-1))
		return float64(all[i]) / 1e6
	}
	return at(0.50), at(0.99)
}

// procCPU returns utime+stime of pid in seconds (0 when pid is 0).
func procCPU(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		fatalf("server CPU: %v", err)
	}
	// Fields after the parenthesised command name: state is field 3, so
	// utime (14) and stime (15) are at 11 and 12 of what follows ")".
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func procRSS(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			kb, _ := strconv.ParseFloat(f[0], 64)
			return kb * 1024
		}
	}
	return 0
}

func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func token(secret []byte, user string) string {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user,
		"exp": time.Now().Add(time.Hour).Unix(),
	})
	s, err := t.SignedString(secret)
	if err != nil {
		fatalf("token: %v", err)
	}
	return s
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "presence: "+format+"\n", args...)
	os.Exit(1)
}
