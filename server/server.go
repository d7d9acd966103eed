package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/loopcast/loopcast/server/internal/bus"
	"github.com/loopcast/loopcast/server/internal/deflate"
	"github.com/loopcast/loopcast/server/internal/fanout"
)

// Server is a loopcast server. Create it with New, run it with Start, stop
// it with Shutdown (graceful) or Close. Its methods are safe for
// concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	nloops int
	tick   time.Duration // timing wheel resolution
	start  time.Time

	gnet   gnet.Engine
	addr   net.Addr
	booted chan struct{}
	// ready is closed once every event loop is registered (Start):
	// rooms need a loop to own them, so publishing waits for it.
	ready    chan struct{}
	done     chan struct{} // closed when gnet.Run returned
	runErr   error
	draining atomic.Bool
	// closing is set by Close before it stops the engine: a stop without
	// it is a failure (Err); engineErr holds gnet's last error line (why
	// it stopped).
	closing   atomic.Bool
	engineErr atomic.Pointer[string]

	// connBudget is how many connections the main listener holds at once
	// (fdbudget.go), open how many it holds; maxConns is the WebSocket
	// cap admission enforces (Config.MaxConns, or derived from the
	// budget).
	connBudget int
	maxConns   int
	open       atomic.Int64

	loopsMu sync.Mutex
	loops   atomic.Pointer[[]*eventLoop] // indexed by loop idx; grows as loops appear

	engine *fanout.Engine      // rooms and the write path
	clog   bus.Log             // Config.Broker when it is a log (JetStream), else nil
	bridge bus.Broker          // Config.Broker when it is a broker (core NATS), else nil
	zip    *deflate.Compressor // nil without Config.Compression
	pages  pageResponses       // Config.Pages, built
	// hooks call the application's backend (hooks.go).
	hooks *hooks
	// dynPages are the Config.Pages with a Dynamic body.
	dynPages map[string]Page
	zstats   compressionStats
	auth     *authenticator // nil: no token required
	admit    *admission
	remote   atomic.Int64 // messages from other instances delivered here
	// forwardErrors counts messages the broker refused to forward (they
	// reached only this instance's members); logRefusals publications
	// the log refused at once; lost the losses other instances' messages
	// suffered on their way here (each renews a room's epoch).
	forwardErrors, logRefusals, lost atomic.Int64
	// logRoomsRefused counts the log's messages not kept for want of a
	// room (max-rooms of rooms held only for the log); the first is
	// logged.
	logRoomsRefused atomic.Int64
	warnedLogRooms  atomic.Bool

	// assembling is the bytes held by messages in progress (fragments,
	// frames still arriving) on every connection, at most maxAssembling;
	// assemblyRefused counts the connections closed for it (ws.go).
	assembling, assemblyRefused atomic.Int64
	maxAssembling               atomic.Int64 // set by New; a test lowers it

	admin     *http.Server // nil without an admin listener
	adminAddr net.Addr

	stopBackground context.CancelFunc // ends the JWKS refresh and the peers watch; set by Start

	// occ counts rooms' members across instances (occupancy.go); its
	// goroutine closes occDone when it returns.
	occ     *occupancy
	occDone chan struct{}
	// pres lists presence rooms' users (presence.go); it ticks with occ.
	pres *presence

	peersMu   sync.Mutex
	peers     peers         // the last lookup of Config.PeersDNS
	peersDone chan struct{} // closed when watchPeers returns (at once without PeersDNS)
}

// New reads the secret files cfg names (PublishTokenFile,
// JWTSecretFile), checks cfg and returns a Server that is not yet
// listening. logger may be nil (discard).
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.readSecretFiles(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := cfg.EventLoops
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	s := &Server{
		cfg:    cfg,
		log:    logger,
		nloops: n,
		tick:   tickFor(cfg),
		booted: make(chan struct{}),
		ready:  make(chan struct{}),
		done:   make(chan struct{}),

		peersDone: make(chan struct{}),
		occDone:   make(chan struct{}),
	}
	fc := fanout.Config{
		Loops: n, MaxPending: cfg.MaxPending, CorkLimit: corkLimit, MaxFreeBytes: maxFreeBufferBytes, MaxRooms: cfg.MaxRooms,
	}
	if cfg.HistoryMessages > 0 {
		fc.History = fanout.HistoryConfig{Messages: cfg.HistoryMessages, TTL: cfg.HistoryTTL, MaxBytes: int64(cfg.HistoryMaxBytes)}
	}
	switch b := cfg.Broker.(type) {
	case nil:
	case bus.Log:
		if cfg.HistoryMessages == 0 {
			return nil, errors.New("a JetStream log needs history-messages above 0: rooms keep the log's recent messages for resumes")
		}
		s.clog = b // attached in Start, once the loops exist
		fc.External = &fanout.External{Epoch: b.Epoch, Covered: b.Covered, Handed: b.Handed, MaxWait: resumeWaitMax}
	case bus.Broker:
		s.bridge = b
		fc.RoomOpened, fc.RoomClosed = b.Subscribe, b.Unsubscribe
		fc.Forward = s.forward
	default:
		return nil, errBrokerKind
	}
	if cfg.Compression {
		var err error
		if s.zip, err = deflate.NewCompressor(cfg.CompressionLevel); err != nil {
			return nil, err
		}
	}
	s.hooks = newHooks(cfg)
	s.pages = buildPages(cfg.Pages)
	s.dynPages = dynamicPages(cfg.Pages)
	fc.Encode = s.encodeFrame
	s.engine = fanout.New(fc)
	var err error
	if s.auth, err = newAuthenticator(cfg); err != nil {
		return nil, err
	}
	if s.admit, err = newAdmission(cfg, logger); err != nil {
		return nil, err
	}
	budget, nofile, err := connBudget(n)
	if err != nil {
		return nil, err
	}
	s.maxAssembling.Store(int64(max(minAssemblingBytes, assemblingMessages*cfg.MaxMessage)))
	s.connBudget = budget
	s.maxConns = effectiveMaxConns(cfg.MaxConns, budget, logger, nofile)
	s.admit.maxConns = s.maxConns
	empty := []*eventLoop{}
	s.loops.Store(&empty)
	id := newInstanceID()
	s.occ = newOccupancy(s, id)
	s.pres = newPresence(s, id)
	if s.bridge != nil {
		s.bridge.Attach(host{s})
	}
	return s, nil
}

// tickFor picks the timing wheel's resolution: a tenth of the shortest
// timeout, between 1 ms and 1 s, so deadlines fire within 10% late; and
// fine enough to spread a drain's closes over at least 20 ticks.
func tickFor(cfg Config) time.Duration {
	d := min(cfg.PingInterval, cfg.IdleTimeout, cfg.HandshakeTimeout) / tickDivisor
	if cfg.DrainDuration > 0 {
		d = min(d, cfg.DrainDuration/drainTicks)
	}
	return min(max(d, minTick), maxTick)
}

// Start listens on Config.Addr and serves in the background. It returns
// once the listener is bound (Addr is valid) or with the reason it could
// not be.
func (s *Server) Start() error {
	s.start = time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	s.stopBackground = cancel
	if err := s.auth.startJWKS(ctx, s.log); err != nil {
		cancel()
		return err
	}
	if s.cfg.PeersDNS != "" {
		go s.watchPeers(ctx)
	} else {
		close(s.peersDone)
	}
	addr, err := reservePort(s.cfg.Addr)
	if err != nil {
		cancel()
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
	}
	go func() {
		defer close(s.done)
		s.runErr = gnet.Run(&handler{s: s}, "tcp://"+addr,
			gnet.WithNumEventLoop(s.nloops),
			gnet.WithMulticore(s.nloops > 1),
			gnet.WithReuseAddr(true),
			// One listener per loop, each accepting on its own loop: see
			// fdbudget.go (why) and reservePort (the port they share).
			gnet.WithReusePort(true),
			gnet.WithTicker(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{s.log, s}),
		)
	}()
	select {
	case <-s.booted:
		if err := s.registerLoops(); err != nil {
			_ = s.Close()
			return err
		}
		close(s.ready)
		go s.occ.run(ctx, s.occDone)
		if s.clog != nil {
			s.clog.Attach(host{s}) // reads the log back into the loops' rooms
		}
		if err := s.startAdmin(); err != nil {
			_ = s.Close()
			return err
		}
		return nil
	case <-s.done:
		cancel()
		if s.runErr == nil {
			s.runErr = errors.New("engine stopped before it started")
		}
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, s.runErr)
	}
}

// reservePort resolves addr to the address every loop's listener binds
// with SO_REUSEPORT. It binds addr once without SO_REUSEPORT and closes
// it: a port that another process holds is refused here (SO_REUSEPORT
// would otherwise share it with that process, if it set the option too),
// and port 0 becomes a concrete port that all the loops share.
func reservePort(addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// Addr is the address the main listener is bound to (after Start).
func (s *Server) Addr() net.Addr { return s.addr }

// Done is closed when the server's event loops have stopped: after Close
// or Shutdown, or on their own when the engine failed (Err then says
// why). A process should exit when Done is closed and it did not ask
// for it, so that its supervisor restarts it.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err reports why the event loops stopped on their own (nil while they
// run, and after Close or Shutdown stopped them).
func (s *Server) Err() error {
	select {
	case <-s.done:
	default:
		return nil
	}
	if s.closing.Load() {
		return nil
	}
	why := "the event loops stopped"
	if p := s.engineErr.Load(); p != nil {
		why += ": " + *p
	}
	if s.runErr != nil {
		return fmt.Errorf("%s: %w", why, s.runErr)
	}
	return errors.New(why)
}

// ConnectionBudget is how many connections the main listener holds at
// once, from the open-file limit (beyond it a connection gets 503 at
// accept), and MaxConns the WebSocket sessions it admits.
func (s *Server) ConnectionBudget() (budget, maxConns int) { return s.connBudget, s.maxConns }

// EventLoops is the number of gnet event loops the server runs
// (Config.EventLoops, or GOMAXPROCS when that is 0).
func (s *Server) EventLoops() int { return s.nloops }

// Close stops the engine at once: connections are dropped without a
// close handshake. It waits for the engine to stop. Calling it again (or
// after Shutdown) waits for the same stop and returns nil.
func (s *Server) Close() error {
	select {
	case <-s.booted:
	default:
		return nil
	}
	if !s.closing.CompareAndSwap(false, true) {
		<-s.done // closed already, or closing: once is enough
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if s.admin != nil {
		_ = s.admin.Shutdown(ctx)
	}
	s.stopBackground()
	err := s.gnet.Stop(ctx)
	<-s.done
	<-s.peersDone
	s.hooks.close()
	select {
	case <-s.ready:
		<-s.occDone // started with the loops
	default:
	}
	return err
}

// Shutdown drains the server: the health responder answers 503 and new
// upgrades are refused at once; existing sessions keep working for
// Config.DrainDelay; then every WebSocket is closed with 1001 "going
// away", spread over Config.DrainDuration; then the engine stops. If ctx
// ends first the remaining connections are dropped. Returns ctx's error
// in that case.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	var err error
	select {
	case <-time.After(s.cfg.DrainDelay):
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		err = s.closeWebSockets(ctx)
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// closeWebSockets sends 1001 to every WebSocket, each loop closing its
// share evenly over DrainDuration, and waits until they are gone.
func (s *Server) closeWebSockets(ctx context.Context) error {
	for _, l := range s.loopList() {
		_ = l.el.Execute(ctx, gnet.RunnableFunc(func(context.Context) error {
			l.goAway(s.cfg.DrainDuration)
			return nil
		}))
	}
	deadline := time.NewTicker(drainPollInterval)
	defer deadline.Stop()
	for {
		var open int64
		for _, l := range s.loopList() {
			open += l.stats.websockets.Load()
		}
		if open == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
		}
	}
}

func (s *Server) loopList() []*eventLoop { return *s.loops.Load() }

// registerLoops makes every event loop known before the first client
// comes: rooms are owned by loops, and a message published (or read back
// from the cluster log) before any client connected needs one. gnet
// shows a loop only through a connection on it, and each loop accepts on
// its own listener, which the kernel picks by a hash of the connection's
// addresses (SO_REUSEPORT); the loops' listeners appear after OnBoot.
// So the server connects to itself a few times per loop, waits until
// those connections were accepted, closes them, and does it again until
// every loop has seen one (counted as accepted connections, closed
// without a request).
func (s *Server) registerLoops() error {
	host := "127.0.0.1"
	if a, ok := s.addr.(*net.TCPAddr); ok && a.IP != nil && !a.IP.IsUnspecified() {
		host = a.IP.String()
	}
	port := 0
	if a, ok := s.addr.(*net.TCPAddr); ok {
		port = a.Port
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	deadline := time.Now().Add(registerLoopsTimeout)
	for len(s.loopList()) < s.nloops {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d event loops seen a connection within %s", len(s.loopList()), s.nloops, registerLoopsTimeout)
		}
		before := s.open.Load()
		var conns []net.Conn
		for range 2 * s.nloops {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				closeAll(conns)
				return fmt.Errorf("connecting to %s to register the event loops: %w", addr, err)
			}
			conns = append(conns, c)
		}
		// Until the loops opened them all (or a while: one of them may be
		// a loop still starting, whose listener got it).
		for round := time.Now().Add(registerRoundWait); s.open.Load()-before < int64(len(conns)) && time.Now().Before(round); {
			time.Sleep(time.Millisecond)
		}
		closeAll(conns)
	}
	return nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// loopFor returns the state of gnet loop el, creating it on first use.
// Called on el's goroutine; the lock is taken once per loop lifetime.
func (s *Server) loopFor(el gnet.EventLoop) *eventLoop {
	for _, l := range s.loopList() {
		if l.el == el {
			return l
		}
	}
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	old := s.loopList()
	l := newLoop(s, len(old), el)
	if l.idx >= s.nloops {
		panic("loopcast: more gnet event loops than configured")
	}
	next := append(append(make([]*eventLoop, 0, len(old)+1), old...), l)
	s.loops.Store(&next)
	return l
}

func (s *Server) ticksNow() int64 { return int64(time.Since(s.start) / s.tick) }

// gnetLogger sends gnet's own log lines to slog, and keeps the last
// error line for Server.Err.
type gnetLogger struct {
	l *slog.Logger
	s *Server
}

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Info(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Errorf(f string, a ...any) {
	msg := fmt.Sprintf(f, a...)
	if g.s != nil {
		g.s.engineErr.Store(&msg)
	}
	g.l.Error(msg, "component", "gnet")
}
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
