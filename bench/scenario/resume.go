package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/bench/hist"
	"github.com/loopcast/loopcast/bench/result"
	"github.com/loopcast/loopcast/bench/wsclient"
)

// ResumeConfig drives the resume scenario, what an Application Gateway
// configuration update does to a feed: Conns clients, each subscribed to
// one of Rooms rooms, get Rate messages a second (over all rooms) from a
// publisher; after Warm, every client's connection is dropped at once;
// each reconnects with full-jitter backoff and resumes from the last
// message it got. Reported: the time until every client is back and has
// every message published before the drop, messages lost (must be 0),
// duplicates (0), resumes the server could not recover (0), and the
// reconnect storm's handshakes per second.
//
// Protocol "loopcast" speaks loopcast.v1 and publishes over a loopcast.v1
// connection; "centrifugo" speaks Centrifugo's JSON protocol and
// publishes through its HTTP API (APIURL, APIKey).
type ResumeConfig struct {
	Common
	Conns    int           // default 10000
	Rooms    int           // default 100
	Rate     float64       // messages per second over all rooms; default 200
	Warm     time.Duration // before the drop; default 2 s
	After    time.Duration // publishing after everyone caught up; default 2 s
	Backoff  time.Duration // first retry delay; default 50 ms
	Protocol string        // "loopcast" (default) or "centrifugo"
	APIURL   string        // centrifugo: http://host:port/api
	APIKey   string
	// Addrs, when it has several instances (loopcast over JetStream),
	// spreads the clients over them (client i on Addrs[i%n]) and sends
	// each reconnect to the next one: every resume on another instance.
	// The publisher uses Addrs[0]. Empty: Addr alone.
	Addrs []string
}

// Metric names of the resume scenario.
const (
	CaughtUpSeconds = "caught_up_s" // drop to every client holding every message published before it
	NotRecovered    = "not_recovered"
	Lost            = "lost"
)

// resumeClient is one client's view of its room.
type resumeClient struct {
	room   int
	mu     sync.Mutex
	epoch  string
	offset uint64
	seq    int // last seq received
	// counters
	lost, dups, notRecovered int
	// After the drop: the seq to reach (the room's last before the
	// drop), and how long after the drop it was reached (0: not yet).
	drop     time.Time
	target   int
	caughtUp time.Duration
}

// Resume runs the resume scenario.
func Resume(ctx context.Context, cfg ResumeConfig) (*result.Result, error) {
	cfg.defaults()
	cfg.Conns = orDefault(cfg.Conns, 10000)
	cfg.Rooms = orDefault(cfg.Rooms, 100)
	if cfg.Rate <= 0 {
		cfg.Rate = 200
	}
	if cfg.Warm <= 0 {
		cfg.Warm = 2 * time.Second
	}
	if cfg.After <= 0 {
		cfg.After = 2 * time.Second
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 50 * time.Millisecond
	}
	var proto resumeProto
	switch cfg.Protocol {
	case "", "loopcast":
		proto = loopcastProto{}
	case "centrifugo":
		proto = centrifugoProto{}
	default:
		return nil, fmt.Errorf("resume: protocol %q: want loopcast or centrifugo", cfg.Protocol)
	}
	r := result.New(result.Resume, cfg.Server, cfg.Addr)
	r.Params = result.Params{Conns: cfg.Conns, Subscribers: cfg.Rooms, Rate: cfg.Rate, SourceIPs: cfg.SourceIPs}

	var hs hist.Histogram
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = []string{cfg.Addr}
	}
	cfg.Addr = cfg.Addrs[0]
	dialers := make([]*dialer, len(cfg.Addrs))
	for i, a := range cfg.Addrs {
		c := cfg.Common
		c.Addr = a
		dialers[i] = newDialer(&c, idleReadBuffer, &hs)
		dialers[i].protocol = proto.subprotocol()
	}
	dialerFor := func(i, round int) *dialer { return dialers[(i+round)%len(dialers)] }
	clients := make([]*resumeClient, cfg.Conns)
	for i := range clients {
		clients[i] = &resumeClient{room: i % cfg.Rooms}
	}
	names := make([]string, cfg.Rooms)
	for i := range names {
		names[i] = fmt.Sprintf("feed-%d", i)
	}

	// Connect and subscribe everyone.
	pr := startProgress(cfg.Progress, "resume")
	defer pr.close()
	var subscribed, reconnected atomic.Int64
	conns := make([]*wsclient.Conn, cfg.Conns)
	var connMu sync.Mutex
	var readers sync.WaitGroup
	session := func(i int, c *wsclient.Conn, first bool) {
		defer readers.Done()
		cl := clients[i]
		if err := proto.subscribe(c, names[cl.room], cl); err != nil {
			return
		}
		for {
			_, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			if ok := proto.handle(c, p, cl, func() {
				if first {
					subscribed.Add(1)
				}
			}); !ok {
				return
			}
		}
	}
	t0 := time.Now()
	var firstErr error
	var failed int
	{
		var wg sync.WaitGroup
		var next atomic.Int64
		var mu sync.Mutex
		for range min(cfg.DialConcurrency, cfg.Conns) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= cfg.Conns || ctx.Err() != nil {
						return
					}
					c, err := dialerFor(i, 0).dial(ctx, proto.path())
					if err != nil {
						mu.Lock()
						failed++
						firstErr = err
						mu.Unlock()
						continue
					}
					connMu.Lock()
					conns[i] = c
					connMu.Unlock()
					pr.connected.Add(1)
					readers.Add(1)
					go session(i, c, true)
				}
			}()
		}
		wg.Wait()
	}
	if failed > 0 {
		closeAll(conns)
		return nil, fmt.Errorf("resume: %d of %d clients failed to connect: %w", failed, cfg.Conns, firstErr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for subscribed.Load() < int64(cfg.Conns) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			closeAll(conns)
			return nil, fmt.Errorf("resume: %d of %d clients subscribed", subscribed.Load(), cfg.Conns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.Metrics[result.SetupSeconds] = round3(time.Since(t0).Seconds())

	// The publisher.
	pub, err := proto.publisher(ctx, &cfg, names)
	if err != nil {
		closeAll(conns)
		return nil, err
	}
	seqs := make([]atomic.Int64, cfg.Rooms)
	pctx, stopPub := context.WithCancel(ctx)
	var pubWG sync.WaitGroup
	var pubErr atomic.Pointer[error]
	var published atomic.Int64
	pubWG.Add(1)
	go func() {
		defer pubWG.Done()
		interval := time.Duration(float64(time.Second) / cfg.Rate)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for k := 0; pctx.Err() == nil; k++ {
			room := k % cfg.Rooms
			seq := seqs[room].Load() + 1
			if err := pub(names[room], int(seq)); err != nil {
				pubErr.CompareAndSwap(nil, &err)
				return
			}
			seqs[room].Store(seq)
			published.Add(1)
			select {
			case <-tick.C:
			case <-pctx.Done():
			}
		}
	}()

	u := startUsage(cfg.PID)
	time.Sleep(cfg.Warm)
	// The drop.
	atDrop := make([]int, cfg.Rooms)
	for i := range atDrop {
		atDrop[i] = int(seqs[i].Load())
	}
	drop := time.Now()
	connMu.Lock()
	for _, c := range conns {
		c.Close()
	}
	connMu.Unlock()
	readers.Wait()
	pr.set(func() string { return fmt.Sprintf("%d of %d back", reconnected.Load(), cfg.Conns) })
	var back hist.Histogram
	var attempts, fails atomic.Int64
	var allBackAt atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, cfg.Duration+30*time.Second)
	defer cancel()
	for i := range cfg.Conns {
		readers.Add(1)
		go func() {
			rng := rand.New(rand.NewPCG(uint64(i), uint64(drop.UnixNano())))
			delay := cfg.Backoff
			// Full jitter before the first attempt too: a client library
			// does not reconnect in lockstep.
			time.Sleep(time.Duration(rng.Int64N(int64(delay))))
			for rctx.Err() == nil {
				attempts.Add(1)
				c, err := dialerFor(i, 1).dial(rctx, proto.path())
				if err == nil {
					back.Record(int64(time.Since(drop)))
					if reconnected.Add(1) == int64(cfg.Conns) {
						allBackAt.Store(int64(time.Since(drop)))
					}
					connMu.Lock()
					conns[i] = c
					connMu.Unlock()
					cl := clients[i]
					cl.mu.Lock()
					cl.drop, cl.target = drop, atDrop[cl.room]
					if cl.seq >= cl.target {
						cl.caughtUp = time.Since(drop)
					}
					cl.mu.Unlock()
					session(i, c, false)
					return
				}
				fails.Add(1)
				time.Sleep(time.Duration(rng.Int64N(int64(delay))) + time.Millisecond)
				delay = min(delay*2, maxBackoff)
			}
			readers.Done()
		}()
	}
	// Wait until everyone caught up.
	var caught time.Duration
	for rctx.Err() == nil {
		all := true
		var worst time.Duration
		for _, cl := range clients {
			cl.mu.Lock()
			cu := cl.caughtUp
			cl.mu.Unlock()
			if cu == 0 {
				all = false
				break
			}
			worst = max(worst, cu)
		}
		if all {
			caught = worst
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(cfg.After)
	stopPub()
	pubWG.Wait()
	// Wait for the last messages to arrive everywhere.
	final := make([]int, cfg.Rooms)
	for i := range final {
		final[i] = int(seqs[i].Load())
	}
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		behind := 0
		for _, cl := range clients {
			cl.mu.Lock()
			if cl.seq < final[cl.room] {
				behind++
			}
			cl.mu.Unlock()
		}
		if behind == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	u.finish(r)
	connMu.Lock()
	closeAll(conns)
	connMu.Unlock()
	cancel()

	var lost, dups, notRec, behind int
	for _, cl := range clients {
		cl.mu.Lock()
		lost += cl.lost
		dups += cl.dups
		notRec += cl.notRecovered
		if cl.seq < final[cl.room] {
			behind++
			lost += final[cl.room] - cl.seq
		}
		cl.mu.Unlock()
	}
	if p := pubErr.Load(); p != nil {
		r.Errorf("publisher: %v", *p)
	}
	if caught == 0 {
		r.Errorf("not every client caught up within %s", cfg.Duration+30*time.Second)
	}
	if lost > 0 || dups > 0 || notRec > 0 {
		r.Errorf("%d messages lost, %d duplicates, %d resumes not recovered, %d clients behind", lost, dups, notRec, behind)
	}
	r.ElapsedS = round3(time.Since(t0).Seconds())
	r.Metrics[CaughtUpSeconds] = round3(caught.Seconds())
	r.Metrics[result.RecoverySeconds] = round3(time.Duration(allBackAt.Load()).Seconds())
	if b := allBackAt.Load(); b > 0 {
		r.Metrics[result.HandshakesPerSec] = perSec(uint64(cfg.Conns), time.Duration(b))
	}
	r.Metrics[Lost] = float64(lost)
	r.Metrics[result.Duplicates] = float64(dups)
	r.Metrics[NotRecovered] = float64(notRec)
	r.Metrics[result.Messages] = float64(published.Load())
	r.Metrics[result.Attempts] = float64(attempts.Load())
	r.Metrics[result.Failed] = float64(fails.Load())
	r.Latency[result.LatencyReconnect] = result.FromHist(&back)
	r.Latency[result.LatencyHandshake] = result.FromHist(&hs)
	return r, nil
}

// resumeProto is what the scenario needs of a server's protocol.
type resumeProto interface {
	path() string
	subprotocol() string
	// subscribe sends what subscribes cl to room (resuming when cl has a
	// position).
	subscribe(c *wsclient.Conn, room string, cl *resumeClient) error
	// handle takes one message; subscribed is called at the
	// subscription's reply. false ends the session.
	handle(c *wsclient.Conn, p []byte, cl *resumeClient, subscribed func()) bool
	publisher(ctx context.Context, cfg *ResumeConfig, rooms []string) (func(room string, seq int) error, error)
}

// got records seq at offset for cl.
func (cl *resumeClient) got(epoch string, offset uint64, seq int) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	switch {
	case cl.seq == 0 || seq == cl.seq+1:
	case seq <= cl.seq:
		cl.dups++
		return
	default:
		cl.lost += seq - cl.seq - 1
	}
	cl.seq, cl.epoch, cl.offset = seq, epoch, offset
	if cl.target > 0 && cl.caughtUp == 0 && seq >= cl.target {
		cl.caughtUp = time.Since(cl.drop)
	}
}

type loopcastProto struct{}

func (loopcastProto) path() string        { return "/ws" }
func (loopcastProto) subprotocol() string { return "loopcast.v1" }

func (loopcastProto) subscribe(c *wsclient.Conn, room string, cl *resumeClient) error {
	cl.mu.Lock()
	cmd := "sub 1 " + room
	if cl.epoch != "" {
		cmd += " " + cl.epoch + " " + strconv.FormatUint(cl.offset, 10)
	}
	cl.mu.Unlock()
	return c.WriteFrame(wsclient.OpText, []byte(cmd))
}

func (loopcastProto) handle(_ *wsclient.Conn, p []byte, cl *resumeClient, subscribed func()) bool {
	line, body, _ := bytes.Cut(p, []byte("\n"))
	f := strings.Fields(string(line))
	switch {
	case len(f) == 4 && f[0] == "msg":
		off, _ := strconv.ParseUint(f[3], 10, 64)
		seq, _ := strconv.Atoi(string(body))
		cl.got(f[2], off, seq)
	case len(f) == 6 && f[0] == "sub":
		cl.mu.Lock()
		if cl.epoch == "" {
			cl.epoch, cl.offset = f[3], 0
			cl.offset, _ = strconv.ParseUint(f[4], 10, 64)
		} else if f[5] != "recovered" {
			cl.notRecovered++
		}
		cl.mu.Unlock()
		subscribed()
	default:
		return false
	}
	return true
}

func (loopcastProto) publisher(ctx context.Context, cfg *ResumeConfig, _ []string) (func(string, int) error, error) {
	o := wsclient.Options{Protocol: "loopcast.v1"}
	c, err := wsclient.Dial(ctx, cfg.Addr, "/ws", o)
	if err != nil {
		return nil, fmt.Errorf("resume: publisher: %w", err)
	}
	go func() { // replies to id 0 never come; read errors and pings
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	go func() { <-ctx.Done(); c.Close() }()
	return func(room string, seq int) error {
		return c.WriteFrame(wsclient.OpText, []byte("pub 0 "+room+"\n"+strconv.Itoa(seq)))
	}, nil
}

// centrifugoProto is Centrifugo's JSON protocol (v2): connect, subscribe
// with recover, publications pushed with an offset; pings are empty
// objects answered with empty objects.
type centrifugoProto struct{}

func (centrifugoProto) path() string        { return "/connection/websocket" }
func (centrifugoProto) subprotocol() string { return "" }

func (centrifugoProto) subscribe(c *wsclient.Conn, room string, cl *resumeClient) error {
	cl.mu.Lock()
	sub := map[string]any{"channel": room}
	if cl.epoch != "" {
		sub["recover"], sub["epoch"], sub["offset"] = true, cl.epoch, cl.offset
	}
	cl.mu.Unlock()
	s, _ := json.Marshal(map[string]any{"id": 2, "subscribe": sub})
	return c.WriteFrame(wsclient.OpText, append([]byte(`{"id":1,"connect":{}}`+"\n"), s...))
}

type cfPub struct {
	Data   struct{ S int } `json:"data"`
	Offset uint64          `json:"offset"`
}

type cfReply struct {
	ID    int `json:"id"`
	Error *struct {
		Code    int
		Message string
	}
	Subscribe *struct {
		Epoch         string  `json:"epoch"`
		Offset        uint64  `json:"offset"`
		Recovered     bool    `json:"recovered"`
		WasRecovering bool    `json:"was_recovering"`
		Publications  []cfPub `json:"publications"`
	} `json:"subscribe"`
	Push *struct {
		Pub *cfPub `json:"pub"`
	} `json:"push"`
}

func (centrifugoProto) handle(c *wsclient.Conn, p []byte, cl *resumeClient, subscribed func()) bool {
	for _, line := range bytes.Split(p, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if string(line) == "{}" {
			_ = c.WriteFrame(wsclient.OpText, []byte("{}")) // pong
			continue
		}
		var m cfReply
		if err := json.Unmarshal(line, &m); err != nil || m.Error != nil {
			return false
		}
		switch {
		case m.Subscribe != nil:
			cl.mu.Lock()
			resuming := cl.epoch != ""
			if resuming && !m.Subscribe.Recovered {
				cl.notRecovered++
			}
			if !resuming {
				cl.epoch, cl.offset = m.Subscribe.Epoch, m.Subscribe.Offset
			}
			cl.mu.Unlock()
			for _, pub := range m.Subscribe.Publications {
				cl.got(m.Subscribe.Epoch, pub.Offset, pub.Data.S)
			}
			subscribed()
		case m.Push != nil && m.Push.Pub != nil:
			cl.mu.Lock()
			epoch := cl.epoch
			cl.mu.Unlock()
			cl.got(epoch, m.Push.Pub.Offset, m.Push.Pub.Data.S)
		}
	}
	return true
}

func (centrifugoProto) publisher(ctx context.Context, cfg *ResumeConfig, _ []string) (func(string, int) error, error) {
	if cfg.APIURL == "" {
		return nil, errors.New("resume: centrifugo needs --api-url")
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	return func(room string, seq int) error {
		body := fmt.Sprintf(`{"channel":%q,"data":{"s":%d}}`, room, seq)
		req, _ := http.NewRequestWithContext(ctx, "POST", cfg.APIURL+"/publish", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", cfg.APIKey)
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		defer resp.Body.Close()
		var out struct{ Error *struct{ Message string } }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 200 || out.Error != nil {
			return fmt.Errorf("centrifugo publish: %s %v", resp.Status, out.Error)
		}
		return nil
	}, nil
}
