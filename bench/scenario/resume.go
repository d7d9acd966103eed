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

// resume is the state of one run of the resume scenario.
type resume struct {
	cfg     ResumeConfig
	proto   resumeProto
	r       *result.Result
	pr      *progress
	hs      hist.Histogram // handshakes
	dialers []*dialer
	clients []*resumeClient
	names   []string // room names

	connMu  sync.Mutex
	conns   []*wsclient.Conn // each client's current connection
	readers sync.WaitGroup   // sessions (and reconnect loops) running

	subscribed, reconnected atomic.Int64

	// The publisher: seqs[room] is the room's last published sequence.
	seqs      []atomic.Int64
	published atomic.Int64
	pubErr    atomic.Pointer[error]
	stopPub   context.CancelFunc
	pubWG     sync.WaitGroup

	// The storm.
	back            hist.Histogram // drop to back, per client
	attempts, fails atomic.Int64
	allBackAt       atomic.Int64 // nanoseconds after the drop
}

// Resume runs the resume scenario: connect and subscribe everyone, start
// publishing, drop every connection after Warm, reconnect and resume,
// wait until everyone caught up, publish for After more, then check.
func Resume(ctx context.Context, cfg ResumeConfig) (*result.Result, error) {
	proto, err := cfg.resumeDefaults()
	if err != nil {
		return nil, err
	}
	s := newResume(cfg, proto)
	s.pr = startProgress(cfg.Progress, "resume")
	defer s.pr.close()

	t0 := time.Now()
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	s.r.Metrics[result.SetupSeconds] = round3(time.Since(t0).Seconds())
	if err := s.startPublisher(ctx); err != nil {
		closeAll(s.conns)
		return nil, err
	}

	u := startUsage(cfg.PID)
	time.Sleep(cfg.Warm)
	drop, atDrop := s.drop()
	rctx, cancel := context.WithTimeout(ctx, cfg.Duration+30*time.Second)
	defer cancel()
	s.reconnectAll(rctx, drop, atDrop)
	caught := s.waitCaughtUp(rctx)
	time.Sleep(cfg.After)
	final := s.stopPublishing()
	s.waitDelivered(final)
	u.finish(s.r)
	s.connMu.Lock()
	closeAll(s.conns)
	s.connMu.Unlock()
	cancel()

	s.report(final, caught)
	s.r.ElapsedS = round3(time.Since(t0).Seconds())
	return s.r, nil
}

// resumeDefaults fills in what the caller left zero and picks the
// protocol.
func (cfg *ResumeConfig) resumeDefaults() (resumeProto, error) {
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
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = []string{cfg.Addr}
	}
	switch cfg.Protocol {
	case "", "loopcast":
		return loopcastProto{}, nil
	case "centrifugo":
		return centrifugoProto{}, nil
	}
	return nil, fmt.Errorf("resume: protocol %q: want loopcast or centrifugo", cfg.Protocol)
}

// newResume lays out the clients, rooms and dialers (one per instance).
func newResume(cfg ResumeConfig, proto resumeProto) *resume {
	// The result names the address as given (--addr, or the default),
	// as it did before --addrs existed.
	s := &resume{cfg: cfg, proto: proto, r: result.New(result.Resume, cfg.Server, cfg.Addr)}
	s.r.Params = result.Params{Conns: cfg.Conns, Subscribers: cfg.Rooms, Rate: cfg.Rate, SourceIPs: cfg.SourceIPs}
	s.cfg.Addr = cfg.Addrs[0]
	s.dialers = make([]*dialer, len(cfg.Addrs))
	for i, a := range cfg.Addrs {
		c := cfg.Common
		c.Addr = a
		s.dialers[i] = newDialer(&c, idleReadBuffer, &s.hs)
		s.dialers[i].protocol = proto.subprotocol()
	}
	s.clients = make([]*resumeClient, cfg.Conns)
	for i := range s.clients {
		s.clients[i] = &resumeClient{room: i % cfg.Rooms}
	}
	s.names = make([]string, cfg.Rooms)
	for i := range s.names {
		s.names[i] = fmt.Sprintf("feed-%d", i)
	}
	s.conns = make([]*wsclient.Conn, cfg.Conns)
	s.seqs = make([]atomic.Int64, cfg.Rooms)
	return s
}

// dialerFor is client i's instance in round (0: the first connection):
// each reconnect goes to the next one.
func (s *resume) dialerFor(i, round int) *dialer { return s.dialers[(i+round)%len(s.dialers)] }

// session subscribes client i on c and reads until the connection ends;
// first: the client's first connection (counted in subscribed).
func (s *resume) session(i int, c *wsclient.Conn, first bool) {
	defer s.readers.Done()
	cl := s.clients[i]
	if err := s.proto.subscribe(c, s.names[cl.room], cl); err != nil {
		return
	}
	for {
		_, p, err := c.ReadMessage()
		if err != nil {
			return
		}
		if ok := s.proto.handle(c, p, cl, func() {
			if first {
				s.subscribed.Add(1)
			}
		}); !ok {
			return
		}
	}
}

// connect opens every client (DialConcurrency handshakes in flight) and
// waits until each one's subscription was answered.
func (s *resume) connect(ctx context.Context) error {
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		mu       sync.Mutex
		failed   int
		firstErr error
	)
	for range min(s.cfg.DialConcurrency, s.cfg.Conns) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= s.cfg.Conns || ctx.Err() != nil {
					return
				}
				c, err := s.dialerFor(i, 0).dial(ctx, s.proto.path())
				if err != nil {
					mu.Lock()
					failed++
					firstErr = err
					mu.Unlock()
					continue
				}
				s.connMu.Lock()
				s.conns[i] = c
				s.connMu.Unlock()
				s.pr.connected.Add(1)
				s.readers.Add(1)
				go s.session(i, c, true)
			}
		}()
	}
	wg.Wait()
	if failed > 0 {
		closeAll(s.conns)
		return fmt.Errorf("resume: %d of %d clients failed to connect: %w", failed, s.cfg.Conns, firstErr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.subscribed.Load() < int64(s.cfg.Conns) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			closeAll(s.conns)
			return fmt.Errorf("resume: %d of %d clients subscribed", s.subscribed.Load(), s.cfg.Conns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// startPublisher publishes Rate messages a second, the rooms in turn,
// each message its room's next sequence, until stopPublishing.
func (s *resume) startPublisher(ctx context.Context) error {
	pub, err := s.proto.publisher(ctx, &s.cfg, s.names)
	if err != nil {
		return err
	}
	pctx, stop := context.WithCancel(ctx)
	s.stopPub = stop
	s.pubWG.Add(1)
	go func() {
		defer s.pubWG.Done()
		interval := time.Duration(float64(time.Second) / s.cfg.Rate)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for k := 0; pctx.Err() == nil; k++ {
			room := k % s.cfg.Rooms
			seq := s.seqs[room].Load() + 1
			if err := pub(s.names[room], int(seq)); err != nil {
				s.pubErr.CompareAndSwap(nil, &err)
				return
			}
			s.seqs[room].Store(seq)
			s.published.Add(1)
			select {
			case <-tick.C:
			case <-pctx.Done():
			}
		}
	}()
	return nil
}

// lastSeqs is each room's last published sequence.
func (s *resume) lastSeqs() []int {
	out := make([]int, s.cfg.Rooms)
	for i := range out {
		out[i] = int(s.seqs[i].Load())
	}
	return out
}

// drop closes every client's connection at once and waits for the
// sessions to end; it returns when it dropped and each room's last
// sequence before it.
func (s *resume) drop() (time.Time, []int) {
	atDrop := s.lastSeqs()
	drop := time.Now()
	s.connMu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.connMu.Unlock()
	s.readers.Wait()
	return drop, atDrop
}

// reconnectAll starts every client's reconnect loop: full-jitter backoff
// from Backoff (before the first attempt too: a client library does not
// reconnect in lockstep), each one to its next instance, then a resuming
// session.
func (s *resume) reconnectAll(rctx context.Context, drop time.Time, atDrop []int) {
	s.pr.set(func() string { return fmt.Sprintf("%d of %d back", s.reconnected.Load(), s.cfg.Conns) })
	for i := range s.cfg.Conns {
		s.readers.Add(1)
		go s.reconnect(rctx, i, drop, atDrop)
	}
}

func (s *resume) reconnect(rctx context.Context, i int, drop time.Time, atDrop []int) {
	rng := rand.New(rand.NewPCG(uint64(i), uint64(drop.UnixNano())))
	delay := s.cfg.Backoff
	time.Sleep(time.Duration(rng.Int64N(int64(delay))))
	for rctx.Err() == nil {
		s.attempts.Add(1)
		c, err := s.dialerFor(i, 1).dial(rctx, s.proto.path())
		if err == nil {
			s.back.Record(int64(time.Since(drop)))
			if s.reconnected.Add(1) == int64(s.cfg.Conns) {
				s.allBackAt.Store(int64(time.Since(drop)))
			}
			s.connMu.Lock()
			s.conns[i] = c
			s.connMu.Unlock()
			cl := s.clients[i]
			cl.mu.Lock()
			cl.drop, cl.target = drop, atDrop[cl.room]
			if cl.seq >= cl.target {
				cl.caughtUp = time.Since(drop)
			}
			cl.mu.Unlock()
			s.session(i, c, false)
			return
		}
		s.fails.Add(1)
		time.Sleep(time.Duration(rng.Int64N(int64(delay))) + time.Millisecond)
		delay = min(delay*2, maxBackoff)
	}
	s.readers.Done()
}

// waitCaughtUp waits until every client holds every message published
// before the drop, and returns the slowest one's time (0: not before
// rctx ended).
func (s *resume) waitCaughtUp(rctx context.Context) time.Duration {
	for rctx.Err() == nil {
		var worst time.Duration
		all := true
		for _, cl := range s.clients {
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
			return worst
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}

// stopPublishing stops the publisher and returns each room's last
// sequence.
func (s *resume) stopPublishing() []int {
	s.stopPub()
	s.pubWG.Wait()
	return s.lastSeqs()
}

// behind counts the clients that do not hold their room's final message
// yet, and the messages they miss.
func (s *resume) behind(final []int) (clients, messages int) {
	for _, cl := range s.clients {
		cl.mu.Lock()
		if cl.seq < final[cl.room] {
			clients++
			messages += final[cl.room] - cl.seq
		}
		cl.mu.Unlock()
	}
	return clients, messages
}

// waitDelivered waits (10 s at most) for the last messages to arrive
// everywhere.
func (s *resume) waitDelivered(final []int) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if n, _ := s.behind(final); n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// report checks every client and fills in the result.
func (s *resume) report(final []int, caught time.Duration) {
	r := s.r
	behind, lost := s.behind(final)
	var dups, notRec int
	for _, cl := range s.clients {
		cl.mu.Lock()
		lost += cl.lost
		dups += cl.dups
		notRec += cl.notRecovered
		cl.mu.Unlock()
	}
	if p := s.pubErr.Load(); p != nil {
		r.Errorf("publisher: %v", *p)
	}
	if caught == 0 {
		r.Errorf("not every client caught up within %s", s.cfg.Duration+30*time.Second)
	}
	if lost > 0 || dups > 0 || notRec > 0 {
		r.Errorf("%d messages lost, %d duplicates, %d resumes not recovered, %d clients behind", lost, dups, notRec, behind)
	}
	r.Metrics[CaughtUpSeconds] = round3(caught.Seconds())
	r.Metrics[result.RecoverySeconds] = round3(time.Duration(s.allBackAt.Load()).Seconds())
	if b := s.allBackAt.Load(); b > 0 {
		r.Metrics[result.HandshakesPerSec] = perSec(uint64(s.cfg.Conns), time.Duration(b))
	}
	r.Metrics[Lost] = float64(lost)
	r.Metrics[result.Duplicates] = float64(dups)
	r.Metrics[NotRecovered] = float64(notRec)
	r.Metrics[result.Messages] = float64(s.published.Load())
	r.Metrics[result.Attempts] = float64(s.attempts.Load())
	r.Metrics[result.Failed] = float64(s.fails.Load())
	r.Latency[result.LatencyReconnect] = result.FromHist(&s.back)
	r.Latency[result.LatencyHandshake] = result.FromHist(&s.hs)
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
